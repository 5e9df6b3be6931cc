import pytest
import torch

from maelab.config import ModelConfig, ReconConfig
from maelab.data import load_dataset
from maelab.eval.recon import evaluate_reconstruction, pixel_mask
from maelab.masking import random_masking
from maelab.models import build_mae, resolve_spec


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

    def forward(self, imgs, ratio, generator=None):
        _, mask, _ = random_masking(len(imgs), self.spec.num_patches, ratio, imgs.device, generator)
        return torch.zeros(()), self.inner.target(imgs), mask

    def reconstruct(self, imgs, pred, mask):
        return self.inner.reconstruct(imgs, pred, mask)


def test_pixel_mask_covers_masked_patches():
    mask = torch.zeros(1, 4)
    mask[0, 1] = 1  # top-right patch of a 2x2 grid
    pm = pixel_mask(mask, 2)
    assert pm.shape == (1, 1, 4, 4)
    assert pm[0, 0, :2, 2:].eq(1).all() and pm.sum() == 4


@pytest.mark.parametrize("norm_pix", [False, True])
def test_a_perfect_reconstruction_scores_perfectly(data, norm_pix):
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro")), norm_pix_loss=norm_pix)
    result = evaluate_reconstruction(PerfectMAE(model), data, ReconConfig(), batch_size=16)
    assert result["psnr_masked"] > 60 and result["ssim_full"] == pytest.approx(1.0, abs=1e-4)
    assert result["sharpness_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert result["psnr_masked_zero_pred"] < 30
    assert result["images"] == 40


def test_same_mask_seed_gives_the_same_numbers_and_random_weights_score_below_perfect(data):
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset="micro")))
    a = evaluate_reconstruction(model, data, ReconConfig(mask_seed=3), batch_size=16)
    b = evaluate_reconstruction(model, data, ReconConfig(mask_seed=3), batch_size=16)
    c = evaluate_reconstruction(model, data, ReconConfig(mask_seed=4), batch_size=16)
    assert a == b
    assert a["psnr_masked"] != c["psnr_masked"]
    assert a["psnr_masked"] < 30
