import pytest

from maelab.seeds import derive_seed, numpy_rng, torch_generator


def test_a_derived_seed_is_a_pure_function_of_seed_stream_and_index():
    assert derive_seed(3, "mask", 7) == derive_seed(3, "mask", 7)
    assert 0 <= derive_seed(3, "mask", 7) < 2**63
    assert torch_generator(3, "mask", 7).initial_seed() == derive_seed(3, "mask", 7)
    assert numpy_rng(3, "mask", 7).random() == numpy_rng(3, "mask", 7).random()


@pytest.mark.parametrize(("a", "b"), [
    ((3, "mask", 7), (3, "augment", 7)),  # another stream
    ((3, "mask", 7), (4, "mask", 7)),  # another seed
    ((3, "mask", 7), (3, "mask", 8)),  # another step
    ((3, "probe", 1, 2), (3, "probe", 12)),  # the indices are kept apart, not concatenated
    ((1, "mask", 1), (1, "mask1")),
])
def test_streams_seeds_and_indices_never_share_a_seed(a, b):
    assert derive_seed(*a) != derive_seed(*b)
