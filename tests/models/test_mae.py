import pytest
import torch
import torch.nn.functional as F

from maelab.config import ModelConfig
from maelab.errors import ConfigError
from maelab.models import PRESETS, build_mae, patchify, resolve_spec, unpatchify
from maelab.models.vit import Attention, sincos_pos_embed


def micro(**kw):
    torch.manual_seed(0)
    return build_mae(resolve_spec(ModelConfig(preset="micro")), **kw)


def test_patchify_round_trip_and_layout():
    imgs = torch.randn(2, 3, 32, 32)
    patches = patchify(imgs, 4)
    assert patches.shape == (2, 64, 48)
    assert torch.equal(unpatchify(patches, 4), imgs)
    # patch 1 is the second patch of the first row: pixels [0:4, 4:8], (py, px, c) order inside
    assert torch.equal(patches[0, 1].reshape(4, 4, 3), imgs[0, :, 0:4, 4:8].permute(1, 2, 0))


def test_forward_shapes_and_mask_count():
    model = micro()
    loss, pred, mask = model(torch.randn(3, 3, 32, 32), 0.75, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (3, 64, 48)
    assert mask.shape == (3, 64) and torch.equal(mask.sum(1), torch.full((3,), 48.0))


@pytest.mark.parametrize("loss_type,norm_pix", [("mse", False), ("l1", False), ("mse", True)])
def test_loss_counts_only_masked_patches(loss_type, norm_pix):
    model = micro(loss=loss_type, norm_pix_loss=norm_pix)
    imgs = torch.randn(2, 3, 32, 32)
    _, pred, mask = model(imgs, 0.75, generator=torch.Generator().manual_seed(0))
    base = model.forward_loss(imgs, pred, mask)
    changed_visible = pred.clone()
    changed_visible[mask == 0] += 10.0
    assert torch.equal(model.forward_loss(imgs, changed_visible, mask), base)
    changed_masked = pred.clone()
    changed_masked[mask == 1] += 10.0
    assert model.forward_loss(imgs, changed_masked, mask) > base + 1.0


def test_loss_is_mean_error_on_masked_patches():
    model = micro()
    imgs = torch.randn(2, 3, 32, 32)
    _, pred, mask = model(imgs, 0.5, generator=torch.Generator().manual_seed(3))
    target = patchify(imgs, 4)
    expected = ((pred - target) ** 2).mean(-1)[mask.bool()].mean()
    assert model.forward_loss(imgs, pred, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def test_every_parameter_gets_a_gradient():
    model = micro()
    loss, _, _ = model(torch.randn(2, 3, 32, 32), 0.75, generator=torch.Generator().manual_seed(0))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_reconstruct_pastes_visible_patches_back():
    model = micro(norm_pix_loss=True)
    imgs = torch.randn(2, 3, 32, 32)
    _, pred, mask = model(imgs, 0.75, generator=torch.Generator().manual_seed(0))
    recon = patchify(model.reconstruct(imgs, pred, mask), 4)
    target = patchify(imgs, 4)
    visible = mask == 0
    assert torch.allclose(recon[visible], target[visible])
    # masked patches are de-normalised predictions, not the target
    assert not torch.allclose(recon[~visible], target[~visible])


def test_encoder_runs_unmasked_for_features():
    model = micro()
    feats = model.encoder.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 65, 64)


def test_sincos_positions_are_distinct_and_bounded():
    pe = sincos_pos_embed(64, 8)
    assert pe.shape == (64, 64)
    assert pe.abs().max() <= 1.0
    assert torch.cdist(pe, pe).add(torch.eye(64)).min() > 0.1


def test_manual_attention_matches_sdpa():
    torch.manual_seed(0)
    attn = Attention(64, 4)
    x = torch.randn(2, 17, 64)
    qkv = attn.qkv(x).reshape(2, 17, 3, 4, 16).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(*qkv.unbind(0)).transpose(1, 2).reshape(2, 17, 64)
    assert torch.allclose(attn(x), attn.proj(ref), atol=1e-5)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build(name):
    spec = resolve_spec(ModelConfig(preset=name))
    assert spec.img_size % spec.patch_size == 0


def test_keras_preset_sizes():
    spec = resolve_spec(ModelConfig(preset="keras"))
    assert (spec.img_size, spec.patch_size, spec.num_patches) == (48, 6, 64)
    assert (spec.embed_dim, spec.depth, spec.num_heads, spec.mlp_dim) == (128, 6, 4, 256)
    assert (spec.decoder_embed_dim, spec.decoder_depth) == (64, 2)


def test_image_size_not_divisible_by_patch_is_a_clear_error():
    with pytest.raises(ConfigError, match="not divisible by the patch size"):
        resolve_spec(ModelConfig(preset="micro", img_size=30))
