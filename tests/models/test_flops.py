import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from maelab.eval.finetune import Classifier
from maelab.masking import draw_mask
from maelab.models import PRESETS, ModelSpec, build_mae
from maelab.models.flops import block_flops, classifier_flops, features_flops, mae_forward_flops, train_flops

SMALL = ModelSpec(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,  # 16 patches: quick,
                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)  # every part present


def counted(fn, grad: bool = False) -> int:
    """FLOPs of ``fn()``'s forward as torch counts them (math attention, so that the counter sees the matmuls)."""
    with torch.set_grad_enabled(grad), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("spec", [SMALL, PRESETS["keras"], PRESETS["micro"]], ids=["small", "keras", "micro"])
@pytest.mark.parametrize("ratio", [0.75, 0.5])
@pytest.mark.parametrize("grad", [False, True], ids=["eval", "train"])
def test_mae_forward_flops_match_torchs_count(spec, ratio, grad):
    torch.manual_seed(0)
    model = build_mae(spec)
    imgs = torch.randn(2, 3, spec.img_size, spec.img_size)
    mask = draw_mask(2, spec.num_patches, ratio)
    # one behaviour: the decoder's last block (after attention) and the head on the masked patches only
    assert counted(lambda: model(imgs, mask), grad=grad) == 2 * mae_forward_flops(spec, ratio)["total"]


def test_features_and_classifier_flops_match_torchs_count():
    model = Classifier(SMALL, 10)
    imgs = torch.randn(3, 3, 32, 32)
    assert counted(lambda: model.encoder.forward_features(imgs)) == 3 * features_flops(SMALL)
    assert counted(lambda: model(imgs)) == 3 * classifier_flops(SMALL, 10)


def test_reference_layout_embeds_every_patch_and_predicts_the_cls_token():
    ours, ref = mae_forward_flops(SMALL, 0.75), mae_forward_flops(SMALL, 0.75, reference=True)
    assert ref["patch_embed"] == 4 * ours["patch_embed"]  # 16 patches against 4 visible
    assert ref["head"] == ours["head"] * 17 // 12  # every token against the 12 masked patches
    assert ref["decoder"] > ours["decoder"]  # its last block's projection and MLP on every token
    assert (ref["encoder"], ref["decoder_embed"]) == (ours["encoder"], ours["decoder_embed"])


def test_keras_sizes_by_hand():
    # 17 encoder tokens (cls + 16 visible of 64) of width 128, MLP 256: 6 blocks
    per_token = 2 * 128 * 384 + 2 * 128 * 128 + 2 * 2 * 128 * 256 + 4 * 17 * 128
    assert block_flops(17, 128, 256) == 17 * per_token
    parts = mae_forward_flops(PRESETS["keras"], 0.75)
    assert parts["encoder"] == 6 * 17 * per_token
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert train_flops(parts["total"]) == 3 * parts["total"]
