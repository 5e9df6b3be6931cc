import torch

from maelab.data.normalize import Normalizer


def test_normalising_is_the_per_channel_standardisation_and_inverse_undoes_it():
    norm = Normalizer((0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    pixels = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = norm(pixels)
    assert torch.allclose(x[:, 2], (pixels[:, 2] - 0.3) / 0.1)
    assert torch.allclose(norm.inverse(x), pixels, atol=1e-6)
    assert norm.inverse(torch.full((1, 3, 1, 1), 100.0)).max() == 1.0  # clamped to [0, 1] for display


def test_a_normaliser_follows_the_dtype_of_its_input():
    x = Normalizer((0.5,) * 3, (0.5,) * 3)(torch.ones(1, 3, 2, 2, dtype=torch.float64))
    assert x.dtype == torch.float64 and torch.equal(x, torch.ones_like(x))
