"""Reconstruction quality of a pretrained MAE on the test set, at a fixed ratio and mask seed."""

from __future__ import annotations

import torch
from torch import Tensor

from maelab.config import ReconConfig
from maelab.data import Dataset, balanced_subset
from maelab.eval.features import prepare
from maelab.eval.metrics import gradient_magnitude, psnr, ssim
from maelab.models import MAE, unpatchify


def pixel_mask(mask: Tensor, patch_size: int) -> Tensor:
    """Patch mask [N, L] (1 = masked) -> pixel mask [N, 1, H, W]."""
    p = patch_size
    return unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p).contiguous(), p, channels=1)


def to_pixels(imgs: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Undo the per-channel standardisation: [N, 3, H, W] -> pixels in [0, 1] (clamped)."""
    m = torch.tensor(mean, device=imgs.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=imgs.device).view(1, 3, 1, 1)
    return (imgs * s + m).clamp(0, 1)


class _Sums:
    """Running sums of per-image metrics and of the gradient energies for the sharpness ratio."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.count = 0

    def add(self, name: str, per_image: Tensor) -> None:
        self.values[name] = self.values.get(name, 0.0) + float(per_image.double().sum())

    def mean(self, name: str) -> float:
        return self.values[name] / max(self.count, 1)


@torch.no_grad()
def evaluate_reconstruction(model: MAE, data: Dataset, cfg: ReconConfig, batch_size: int = 500) -> dict[str, float]:
    """PSNR/SSIM on masked patches and on the whole image (visible patches pasted back), sharpness ratio.

    Pixels are de-normalised to [0, 1]; with norm_pix_loss the prediction is de-normalised with each target
    patch's mean and std (``MAE.reconstruct``). ``*_zero_pred`` is the same metric for a prediction of zeros
    (the dataset mean, or each patch's own mean under norm_pix_loss): the floor to read PSNR against.
    """
    x, _ = (data.x_test, data.y_test) if cfg.limit is None else balanced_subset(
        data.x_test, data.y_test, cfg.limit, 0, key="recon.limit", split="test set")
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(cfg.mask_seed)
    sums, sharp = _Sums(), [0.0, 0.0]
    for start in range(0, len(x), batch_size):
        imgs = prepare(x[start:start + batch_size], model.spec.img_size, data.mean, data.std)
        _, pred, mask = model(imgs, cfg.ratio, generator=gen)
        original = to_pixels(imgs, data.mean, data.std)
        m = pixel_mask(mask, model.spec.patch_size)
        for tag, p in (("", pred), ("_zero_pred", torch.zeros_like(pred))):
            recon = to_pixels(model.reconstruct(imgs, p, mask), data.mean, data.std)
            sums.add("psnr_masked" + tag, psnr(recon, original, m))
            sums.add("psnr_full" + tag, psnr(recon, original))
            sums.add("ssim_masked" + tag, ssim(recon, original, m))
            sums.add("ssim_full" + tag, ssim(recon, original))
            if not tag:
                sharp[0] += float((gradient_magnitude(recon) * m).sum())
                sharp[1] += float((gradient_magnitude(original) * m).sum())
        sums.count += len(imgs)
    result = {name: sums.mean(name) for name in sums.values}
    result["sharpness_ratio"] = sharp[0] / max(sharp[1], 1e-12)
    result.update({"ratio": cfg.ratio, "mask_seed": cfg.mask_seed, "images": int(sums.count)})
    return result
