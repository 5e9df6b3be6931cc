import dataclasses
import math

import pytest
import torch

from maelab.config import ModelConfig, ReconConfig
from maelab.data import load_dataset
from maelab.eval.metrics import SSIM_EMPTY
from maelab.eval.recon import evaluate_reconstruction, mean_over_images, pixel_mask
from maelab.models import build_mae, resolve_spec
from maelab.undefined import dumps


@pytest.fixture(scope="module")
def data():
    from maelab.config import DataConfig

    return load_dataset(DataConfig(name="synthetic", synthetic_train=50, synthetic_test=40), seed=0)


class PerfectMAE(torch.nn.Module):
    """Predicts exactly the target of every patch: the metrics must say 'perfect'."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.spec = model.spec

    def forward(self, imgs, mask):
        target = self.inner.target(imgs)
        return torch.zeros(()), torch.gather(target, 1, mask.ids_masked.unsqueeze(-1).expand(-1, -1, target.shape[-1]))

    def reconstruct(self, imgs, pred, mask):
        return self.inner.reconstruct(imgs, pred, mask)


class RecordingMAE(PerfectMAE):
    """The real model's predictions, with every mask it drew kept in ``masks``."""

    def __init__(self, model):
        super().__init__(model)
        self.masks = []

    def forward(self, imgs, mask):
        self.masks.append(mask.binary)
        return self.inner(imgs, mask)


def single_colour(data, size):
    """``data`` with a test set of single-colour ``size`` x ``size`` images (seeded colours): no edges anywhere."""
    n = len(data.x_test)
    colours = torch.randint(0, 256, (n, 1, 1, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return dataclasses.replace(data, x_test=colours.expand(n, size, size, 3).contiguous())


def test_pixel_mask_covers_masked_patches():
    mask = torch.zeros(1, 4)
    mask[0, 1] = 1  # top-right patch of a 2x2 grid
    pm = pixel_mask(mask, 2)
    assert pm.shape == (1, 1, 4, 4)
    assert pm[0, 0, :2, 2:].eq(1).all() and pm.sum() == 4


def test_a_perfect_reconstruction_has_an_infinite_psnr_reported_as_null_with_the_reason(data):
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro")))
    result = evaluate_reconstruction(PerfectMAE(model), data, ReconConfig(), batch_size=16)
    for key in ("psnr_masked", "psnr_full"):  # zero MSE: +inf per image, so the mean is +inf, which JSON cannot hold
        assert result[key] is None
        assert result["undefined"][key] == ("40 of 40 images are reconstructed exactly (zero MSE): their PSNR is "
                                            "infinite, and so is the mean")
    assert result["ssim_full"] == pytest.approx(1.0, abs=1e-4)
    assert result["sharpness_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert result["psnr_masked_zero_pred"] < 30
    assert result["images"] == 40 and "left_out" not in result


def test_a_perfect_norm_pix_reconstruction_is_exact_up_to_float_rounding(data):
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro")), norm_pix_loss=True)
    result = evaluate_reconstruction(PerfectMAE(model), data, ReconConfig(), batch_size=16)
    assert 60 < result["psnr_masked"] < math.inf and result["ssim_full"] == pytest.approx(1.0, abs=1e-4)
    assert result["sharpness_ratio"] == pytest.approx(1.0, abs=1e-4) and "undefined" not in result


@pytest.mark.parametrize("size", [32, 24])  # 24: resized to the model's 32 px, which leaves float rounding noise
def test_single_colour_images_have_no_sharpness_ratio_only_a_reason(data, size):
    """The issue: targets without edges gave sharpness_ratio ~1.9e16 (a denominator floored at 1e-12)."""
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro")))
    result = evaluate_reconstruction(model, single_colour(data, size), ReconConfig(), batch_size=16)
    assert result["sharpness_ratio"] is None
    assert result["undefined"] == {"sharpness_ratio": "the targets have no edges: no masked pixel of the 40 test "
                                   "images has a gradient magnitude above 1e-05 (single-colour or flat images)"}
    for key in ("psnr_masked", "psnr_full", "ssim_masked", "ssim_full"):  # these stay defined
        assert 0 < result[key] < 40 if key.startswith("psnr") else -1 <= result[key] <= 1
    assert '"sharpness_ratio": null' in dumps(result)


def test_the_mean_over_images_leaves_out_the_undefined_and_says_how_many():
    result = {}
    mean_over_images(result, "m", torch.tensor([1.0, math.nan, 3.0], dtype=torch.float64), "why")
    assert result == {"m": 2.0, "left_out": {"m": {"count": 1, "of": 3, "reason": "why"}}}
    none = {}
    mean_over_images(none, "m", torch.tensor([math.nan, math.nan], dtype=torch.float64), "why")
    assert none == {"m": None, "undefined": {"m": "undefined for each of the 2 images: why"}}
    exact = {}
    mean_over_images(exact, "psnr", torch.tensor([20.0, math.inf, 30.0], dtype=torch.float64), "why")
    assert exact["psnr"] is None and exact["undefined"]["psnr"].startswith("1 of 3 images are reconstructed exactly")


def test_masked_ssim_leaves_out_the_images_whose_masked_patch_lies_at_the_border(data):
    """At ratio 0 one patch a image is masked; on the 8x8 grid's outer ring no 11x11 window is centred on it."""
    torch.manual_seed(0)
    model = RecordingMAE(build_mae(resolve_spec(ModelConfig(preset="micro"))))
    result = evaluate_reconstruction(model, data, ReconConfig(ratio=0.0), batch_size=16)
    where = torch.cat(model.masks).argmax(1)  # the masked patch of each image
    row, col = where // 8, where % 8
    at_border = int(((row == 0) | (row == 7) | (col == 0) | (col == 7)).sum())
    assert 0 < at_border < 40
    assert result["left_out"]["ssim_masked"] == {"count": at_border, "of": 40, "reason": SSIM_EMPTY}
    assert -1 <= result["ssim_masked"] <= 1 and result["psnr_masked"] is not None


def test_same_mask_seed_gives_the_same_numbers_and_random_weights_score_below_perfect(data):
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro")))
    a = evaluate_reconstruction(model, data, ReconConfig(mask_seed=3), batch_size=16)
    b = evaluate_reconstruction(model, data, ReconConfig(mask_seed=3), batch_size=16)
    c = evaluate_reconstruction(model, data, ReconConfig(mask_seed=4), batch_size=16)
    assert a == b
    assert a["psnr_masked"] != c["psnr_masked"]
    assert a["psnr_masked"] < 30


def test_images_smaller_than_the_ssim_window_have_no_ssim_only_a_reason_and_keep_psnr(data):
    """A model at 8 px made recon crash inside conv2d (an 11 x 11 window on an 8 x 8 image)."""
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro", img_size=8, patch_size=4)))
    result = evaluate_reconstruction(model, data, ReconConfig(), batch_size=16)
    reason = "the images (8 px) are smaller than SSIM's 11x11 window"
    for key in ("ssim_masked", "ssim_full", "ssim_masked_zero_pred", "ssim_full_zero_pred"):
        assert result[key] is None and result["undefined"][key] == reason
    assert 0 < result["psnr_masked"] < 40 and result["sharpness_ratio"] > 0
