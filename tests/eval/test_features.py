"""Features of several layers from one forward pass: each equals the pooled output of its block."""

import torch

from maelab.eval.features import extract_features, extract_layers, pool_tokens, prepare
from maelab.eval.protocols import Protocol, assemble
from maelab.models.vit import ViTEncoder

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _encoder() -> ViTEncoder:
    torch.manual_seed(0)
    encoder = ViTEncoder(16, 4, 32, 3, 2, 64)
    for p in encoder.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return encoder


def test_every_layer_comes_from_one_pass_and_equals_its_pooled_block_output():
    encoder, x = _encoder(), torch.randint(0, 256, (10, 16, 16, 3), dtype=torch.uint8)
    calls = []
    for block in encoder.blocks:
        block.register_forward_hook(lambda *_: calls.append(1))
    wanted = [("block1", "mean"), ("block3", "cls"), ("final", "mean"), ("final", "cls")]
    got = extract_layers(encoder, x, 16, MEAN, STD, wanted, batch_size=4)
    assert len(calls) == 3 * 3  # 3 batches (4 + 4 + 2 images), each through the 3 blocks once
    imgs = prepare(x, 16, MEAN, STD)
    with torch.no_grad():
        block1, block3 = encoder.forward_intermediates(imgs, [0, 2])
        final = encoder.forward_features(imgs)
    torch.testing.assert_close(got[("block1", "mean")], pool_tokens(block1, "mean"))
    torch.testing.assert_close(got[("block3", "cls")], pool_tokens(block3, "cls"))
    torch.testing.assert_close(got[("final", "mean")], pool_tokens(final, "mean"))
    assert torch.equal(got[("final", "cls")], extract_features(encoder, x, 16, MEAN, STD, "cls", batch_size=4))
    assert not torch.allclose(got[("block3", "cls")], got[("final", "cls")])  # raw, not final-normed
    assert encoder.training  # the encoder's mode is given back


def test_pool_both_is_mean_then_cls_of_each_block():
    feats = {("block1", "mean"): torch.ones(2, 3), ("block1", "cls"): torch.zeros(2, 3),
             ("block2", "mean"): torch.full((2, 3), 2.0), ("block2", "cls"): torch.full((2, 3), 3.0)}
    both = assemble(Protocol("last2", (1, 2), "raw", "both"), feats)
    assert both.shape == (2, 12)
    assert both[0].tolist() == [1.0] * 3 + [0.0] * 3 + [2.0] * 3 + [3.0] * 3


def test_prepare_builds_the_normalisation_once_per_dataset_and_device():
    from maelab.eval import features

    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    first = features.prepare(x, 32, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    hits = features._normalizer.cache_info().hits
    again = features.prepare(x, 32, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    assert features._normalizer.cache_info().hits == hits + 1  # the same mean/std tensors: no copy per batch
    assert torch.equal(first, again)
    assert torch.allclose(first[:, 1], (x[..., 1].float() / 255 - 0.5) / 0.25, atol=1e-6)
