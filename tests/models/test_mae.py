import pytest
import torch
import torch.nn.functional as F

from maelab.config import ModelConfig, load_config
from maelab.errors import ConfigError
from maelab.masking import draw_mask, num_visible_per_sample
from maelab.models import PRESETS, build_mae, patchify, resolve_spec, unpatchify
from maelab.models.vit import Attention, scatter_rows, sincos_pos_embed


def micro(registers=0, **kw):
    torch.manual_seed(0)
    return build_mae(resolve_spec(ModelConfig(preset="micro", registers=registers)), **kw)


def forward(model, imgs, ratio, seed=0):
    """The model's forward on a mask drawn from ``seed``: (loss, pred [N, M, P], mask)."""
    mask = draw_mask(len(imgs), model.spec.num_patches, ratio, generator=torch.Generator().manual_seed(seed))
    loss, pred = model(imgs, mask)
    return loss, pred, mask


def in_patch_order(pred, mask):
    """pred [N, M, P] at mask.ids_masked -> [N, L, P], zeros elsewhere."""
    return scatter_rows(pred, mask.ids_masked, mask.binary.shape[1])


def test_patchify_round_trip_and_layout():
    imgs = torch.randn(2, 3, 32, 32)
    patches = patchify(imgs, 4)
    assert patches.shape == (2, 64, 48)
    assert torch.equal(unpatchify(patches, 4), imgs)
    # patch 1 is the second patch of the first row: pixels [0:4, 4:8], (py, px, c) order inside
    assert torch.equal(patches[0, 1].reshape(4, 4, 3), imgs[0, :, 0:4, 4:8].permute(1, 2, 0))


def test_forward_shapes_and_mask_count():
    model = micro()
    loss, pred, mask = forward(model, torch.randn(3, 3, 32, 32), 0.75)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (3, 48, 48)  # the 48 masked patches of 64, p*p*3 values each
    assert torch.equal(mask.binary.sum(1), torch.full((3,), 48.0))


@pytest.mark.parametrize("loss_type,norm_pix", [("mse", False), ("l1", False), ("mse", True)])
def test_the_loss_reads_the_masked_patches_only(loss_type, norm_pix):
    model = micro(loss=loss_type, norm_pix_loss=norm_pix)
    imgs = torch.randn(2, 3, 32, 32)
    loss, _, mask = forward(model, imgs, 0.75)
    target = model.target(imgs, patchify(imgs, 4))
    pred = model(imgs, mask).pred
    errors = model.patch_errors(pred, torch.gather(target, 1, mask.ids_masked.unsqueeze(-1).expand(-1, -1, 48)))
    assert loss.item() == pytest.approx(errors.mean().item() / 48, rel=1e-6)


def test_loss_is_mean_error_on_masked_patches():
    model = micro()
    imgs = torch.randn(2, 3, 32, 32)
    loss, pred, mask = forward(model, imgs, 0.5, seed=3)
    expected = ((in_patch_order(pred, mask) - patchify(imgs, 4)) ** 2).mean(-1)[mask.binary.bool()].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_every_parameter_gets_a_gradient():
    model = micro()
    loss, _, _ = forward(model, torch.randn(2, 3, 32, 32), 0.75)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_reconstruct_pastes_visible_patches_back():
    model = micro(norm_pix_loss=True)
    imgs = torch.randn(2, 3, 32, 32)
    _, pred, mask = forward(model, imgs, 0.75)
    recon = patchify(model.reconstruct(imgs, pred, mask), 4)
    target = patchify(imgs, 4)
    visible = mask.binary == 0
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


@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_matmul_softmax(masked):
    torch.manual_seed(0)
    attn = Attention(64, 4)
    x = torch.randn(2, 17, 64)
    keys = torch.rand(2, 17) > 0.4 if masked else None
    if keys is not None:
        keys[:, 0] = True
    q, k, v = attn.qkv(x).reshape(2, 17, 3, 4, 16).permute(2, 0, 3, 1, 4).unbind(0)
    scores = q @ k.transpose(-2, -1) / 4.0  # sqrt(16)
    if keys is not None:
        scores = scores.masked_fill(~keys[:, None, None, :], float("-inf"))
    ref = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 17, 64)
    assert torch.allclose(attn(x, keys), attn.proj(ref), atol=1e-5)


def test_embedding_only_the_visible_patches_is_the_conv_on_all_then_gathered():
    model = micro()
    imgs = torch.randn(3, 3, 32, 32)
    ids_keep = torch.argsort(torch.rand(3, 64, generator=torch.Generator().manual_seed(0)), dim=1)[:, :16]
    enc = model.encoder
    tokens = enc.patch_embed(imgs) + enc.pos_embed  # every patch through the conv, then the visible gathered
    gathered = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, 64))
    ref = enc._encode(gathered)
    assert torch.allclose(enc(imgs, ids_keep), ref, atol=1e-5)
    assert torch.allclose(enc(imgs, ids_keep, patches=patchify(imgs, 4)), ref, atol=1e-5)


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


def test_an_image_of_one_patch_is_refused_as_it_leaves_nothing_to_mask_or_to_see():
    with pytest.raises(ConfigError, match="gives 1 patch: an MAE needs at least 2"):
        resolve_spec(ModelConfig(preset="micro", patch_size=32))
    assert resolve_spec(ModelConfig(preset="micro", patch_size=16)).num_patches == 4


# ---- attention key mask and per-sample mask ratios --------------------------------------------------------------

def test_attention_key_mask_matches_sdpa_with_a_boolean_mask():
    """The CPU path (masked_fill -inf) and the CUDA path (SDPA attn_mask) hide the same keys."""
    torch.manual_seed(0)
    attn = Attention(64, 4)
    x = torch.randn(2, 9, 64)
    keys = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    qkv = attn.qkv(x).reshape(2, 9, 3, 4, 16).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(*qkv.unbind(0), attn_mask=keys[:, None, None, :])
    out = attn(x, keys)
    assert torch.allclose(out, attn.proj(ref.transpose(1, 2).reshape(2, 9, 64)), atol=1e-5)
    # the hidden keys really are ignored: changing them leaves the other tokens' outputs alone
    x2 = x.clone()
    x2[1, 5:] += 3.0
    assert torch.allclose(attn(x2, keys)[1, :5], out[1, :5], atol=1e-5)
    assert not torch.allclose(attn(x2)[1, :5], attn(x)[1, :5], atol=1e-3)


RATIOS = torch.tensor([0.1, 0.5, 0.75, 0.95])


def test_per_sample_ratios_mask_each_image_its_own_amount():
    model = micro()
    imgs = torch.randn(4, 3, 32, 32)
    loss, pred, mask = forward(model, imgs, RATIOS)
    assert pred.shape == (4, 61, 48)  # the most masked sample's 61 patches; others' visible rows weigh 0
    assert mask.binary.sum(1).tolist() == [6.0, 32.0, 48.0, 61.0]
    errors = ((in_patch_order(pred, mask) - patchify(imgs, 4)) ** 2).mean(-1)
    assert loss.item() == pytest.approx(errors[mask.binary.bool()].mean().item(), rel=1e-5)  # over masked patches


def test_padded_per_sample_batch_equals_each_sample_alone():
    """Padding + key mask changes nothing for the real tokens: each sample's latent and prediction are what
    encoding that sample alone, with no padding, gives."""
    model = micro(registers=2).eval()
    imgs = torch.randn(4, 3, 32, 32)
    mask = draw_mask(4, 64, RATIOS, generator=torch.Generator())
    valid = mask.keep_valid
    assert valid is not None and not valid.all()
    latent = model.encoder(imgs, mask.ids_keep, valid)
    pred = model.decoder(latent, mask.ids_restore, valid)
    for i, k in enumerate(num_visible_per_sample(64, RATIOS).tolist()):
        alone = model.encoder(imgs[i : i + 1], mask.ids_keep[i : i + 1, :k])
        assert torch.allclose(latent[i, : 1 + k], alone[0], atol=1e-5)
        pred_alone = model.decoder(alone, mask.ids_restore[i : i + 1])
        assert torch.allclose(pred[i], pred_alone[0], atol=1e-5)


def test_per_sample_forward_gives_every_parameter_a_gradient():
    model = micro(registers=2)
    loss, _, _ = forward(model, torch.randn(4, 3, 32, 32), RATIOS)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


# ---- register tokens --------------------------------------------------------------------------------------------

def test_registers_are_used_and_dropped_from_the_outputs():
    model = micro(registers=4)
    imgs = torch.randn(2, 3, 32, 32)
    assert model.encoder.registers.shape == (1, 4, 64)
    feats = model.encoder.forward_features(imgs)
    assert feats.shape == (2, 65, 64)  # cls + patches, no registers
    loss, pred, _ = forward(model, imgs, 0.75)
    assert pred.shape == (2, 48, 48)
    loss.backward()
    assert model.encoder.registers.grad is not None and model.encoder.registers.grad.abs().min() > 0
    with torch.no_grad():  # a random direction (a constant shift would be erased by the pre-norm LayerNorm)
        model.encoder.registers.add_(torch.randn(1, 4, 64, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(model.encoder.forward_features(imgs), feats, atol=1e-3)
    loss2, _, _ = forward(model, imgs, 0.75)
    assert loss2.item() != loss.item()


def test_registers_take_part_in_attention():
    model = micro(registers=1)
    seen = []
    handle = model.encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    model.encoder.forward_features(torch.randn(1, 3, 32, 32))
    handle.remove()
    assert seen == [1 + 1 + 64]  # cls, one register, 64 patches


def test_zero_registers_is_the_plain_vit():
    """Same seed, same weights and outputs as before registers existed (values recorded from that code)."""
    model = micro()
    assert model.encoder.registers is None
    assert not any("registers" in k for k in model.state_dict())
    torch.manual_seed(1)
    imgs = torch.randn(2, 3, 32, 32)
    loss, pred, mask = forward(model, imgs, 0.75)
    assert loss.item() == pytest.approx(2.14532470703125, rel=1e-4)
    first = in_patch_order(pred, mask)[0, 0, :4].tolist()  # patch 0 of image 0 is masked
    assert first == pytest.approx([0.65777433, 0.35345933, 2.63552189, 1.27106988], rel=1e-4)
    feats = model.encoder.forward_features(imgs)
    assert feats[:, 0, :2].flatten().tolist() == pytest.approx([1.83093607, -0.80683184, 2.01714897, -0.57333761],
                                                               rel=1e-4)
    # registers are drawn after every other weight: adding them leaves those weights as they were
    with_regs = micro(registers=3).state_dict()
    plain = model.state_dict()
    assert set(with_regs) - set(plain) == {"encoder.registers"}
    assert all(torch.equal(plain[k], with_regs[k]) for k in plain)


def test_registers_config():
    assert load_config(None, []).model.registers == 0
    assert resolve_spec(load_config(None, ["model.registers=4"]).model).registers == 4
    with pytest.raises(ConfigError, match="model.registers=-1"):
        load_config(None, ["model.registers=-1"])


def test_forward_decodes_the_masked_patches_only_with_the_full_decoders_loss_and_gradients():
    model = build_mae(resolve_spec(ModelConfig(preset="keras")), norm_pix_loss=True)
    imgs = torch.randn(4, 3, 48, 48)
    mask = draw_mask(4, model.spec.num_patches, 0.75, generator=torch.Generator().manual_seed(3))
    seen = {}
    model.decoder.blocks[-1].norm2.register_forward_hook(lambda m, i, o: seen.update(mlp=tuple(i[0].shape)) and None)
    model.decoder.norm.register_forward_hook(lambda m, i, o: seen.update(head=tuple(i[0].shape)) and None)

    def grads_of(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss, pred = model(imgs, mask)
    assert seen == {"mlp": (4, 48, 64), "head": (4, 48, 64)}  # 48 masked of 64 patches; no cls row
    grads = grads_of(loss)
    seen.clear()
    # the reference: facebookresearch/mae's decoder on every token, its loss over the masked patches
    dec = model.decoder
    x = dec.unshuffle(dec.embed(model.encoder(imgs, mask.ids_keep)), mask.ids_restore, None) + dec.pos_embed
    for block in dec.blocks:
        x = block(x)
    full_pred = dec.head(dec.norm(x))[:, 1:]  # every token through every layer, the cls token's prediction dropped
    assert seen == {"mlp": (4, 65, 64), "head": (4, 65, 64)}
    torch.testing.assert_close(dec(model.encoder(imgs, mask.ids_keep), mask.ids_restore), full_pred)  # all patches
    errors = ((full_pred - model.target(imgs)) ** 2).mean(-1)
    full_loss = (errors * mask.binary).sum() / mask.binary.sum()
    torch.testing.assert_close(loss, full_loss, rtol=1e-6, atol=1e-7)
    masked = mask.binary.bool()
    torch.testing.assert_close(in_patch_order(pred, mask)[masked], full_pred[masked], rtol=1e-5, atol=1e-6)
    full_grads = grads_of(full_loss)
    assert len(grads) == len(full_grads)
    for g, f in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(g, f, rtol=1e-4, atol=1e-6)


def test_forward_is_the_same_in_training_and_evaluation():
    model = micro()
    imgs = torch.randn(3, 3, 32, 32)
    mask = draw_mask(3, 64, 0.75, generator=torch.Generator().manual_seed(1))
    trained = model.train()(imgs, mask)
    with torch.no_grad():
        evaluated = model.eval()(imgs, mask)
    assert torch.equal(trained.loss.detach(), evaluated.loss) and torch.equal(trained.pred.detach(), evaluated.pred)
