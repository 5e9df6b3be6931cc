"""Reconstruction quality of a pretrained MAE on the test set, at a fixed ratio and mask seed."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from maelab.config import ReconConfig
from maelab.data import Dataset, balanced_subset
from maelab.data.normalize import Normalizer
from maelab.eval.features import prepare
from maelab.eval.metrics import EDGE_TOLERANCE, PSNR_EMPTY, SSIM_EMPTY, SSIM_WINDOW, masked_gradient, psnr, ssim
from maelab.eval.non_finite import non_finite_cause
from maelab.masking import draw_mask
from maelab.models import MAE, unpatchify
from maelab.undefined import LEFT_OUT, set_left_out, set_undefined


def pixel_mask(mask: Tensor, patch_size: int) -> Tensor:
    """Patch mask [N, L] (1 = masked) -> pixel mask [N, 1, H, W]."""
    p = patch_size
    return unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p).contiguous(), p, channels=1)


class _PerImage:
    """Per-image values of each metric (float64, on the host), aggregated once at the end: N floats a metric."""

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = {}

    def add(self, name: str, per_image: Tensor) -> None:
        self.values.setdefault(name, []).append(per_image.detach().double().cpu())

    def all(self, name: str) -> Tensor:
        return torch.cat(self.values[name])


# why a per-image value is NaN (``psnr_full`` / ``ssim_full`` never are; ``*_zero_pred`` share their metric's reason)
NAN_REASONS = {"psnr_masked": PSNR_EMPTY, "ssim_masked": SSIM_EMPTY}
SHARPNESS_UNDEFINED = ("the targets have no edges: no masked pixel of the {n} {split} images has a gradient magnitude "
                       f"above {EDGE_TOLERANCE:g} (single-colour or flat images)")


def mean_over_images(result: dict[str, Any], name: str, values: Tensor, nan_reason: str) -> None:
    """``result[name]`` = the mean of the per-image ``values`` [N] (float64) where they are defined.

    NaN (the metric is undefined for that image) is left out and counted under ``result["left_out"]``; null
    with a reason when every image is NaN. +inf (the PSNR of an exact reconstruction) makes the mean infinite,
    which JSON cannot hold: null with the count of exact images in the reason.
    """
    n = len(values)
    exact = int(torch.isposinf(values).sum())
    if exact:
        set_undefined(result, name, f"{exact} of {n} images are reconstructed exactly (zero MSE): their PSNR is "
                                    "infinite, and so is the mean")
        return
    defined = values[~values.isnan()]
    if len(defined) == 0:
        set_undefined(result, name, f"undefined for each of the {n} images: {nan_reason}")
        return
    result[name] = float(defined.mean())
    if len(defined) < n:
        set_left_out(result, name, n - len(defined), n, nan_reason)


class Sharpness:
    """The sharpness ratio: sum |grad recon| / sum |grad original| over every masked pixel of the set.

    A set-level ratio of the two mean gradient magnitudes (not a mean of per-image ratios): an edge-less image
    takes part without making it undefined. Undefined when no masked target pixel of the set has an edge
    (|grad| <= ``EDGE_TOLERANCE``: the denominator is 0 up to float rounding).
    """

    def __init__(self) -> None:
        self.recon, self.original, self.original_max, self.images = 0.0, 0.0, 0.0, 0

    def add(self, recon: Tensor, original: Tensor, weight: Tensor) -> None:
        """recon, original [N, 3, H, W] pixels in [0, 1]; weight [N, 1, H, W] (1 = masked)."""
        (r_sum, _), (o_sum, o_max) = masked_gradient(recon, weight), masked_gradient(original, weight)
        self.recon += float(r_sum.sum())
        self.original += float(o_sum.sum())
        self.original_max = max(self.original_max, float(o_max.max()))
        self.images += len(recon)

    def write(self, result: dict[str, Any], split: str = "test") -> None:
        """``result["sharpness_ratio"]``, or null with the reason (naming the images' ``split``: test | train)."""
        if self.original_max <= EDGE_TOLERANCE:
            words = "training" if split == "train" else split
            set_undefined(result, "sharpness_ratio", SHARPNESS_UNDEFINED.format(n=self.images, split=words))
        else:
            result["sharpness_ratio"] = self.recon / self.original


def undefined_predictions(result: dict[str, Any], why: str) -> None:
    """Every metric of the model's prediction in ``result`` null with ``why`` (the zero-prediction floors, which do
    not use it, stay): a NaN reconstruction was counted as an image with nothing to measure, and the mean of the
    others reported."""
    for name in [k for k in result if k.startswith(("psnr_", "ssim_")) and not k.endswith("_zero_pred")]:
        set_undefined(result, name, why)
        result.get(LEFT_OUT, {}).pop(name, None)
    set_undefined(result, "sharpness_ratio", why)
    if not result.get(LEFT_OUT, True):
        del result[LEFT_OUT]


@torch.no_grad()
def evaluate_reconstruction(model: MAE, data: Dataset, cfg: ReconConfig, batch_size: int = 500) -> dict[str, Any]:
    """PSNR/SSIM on masked patches and on the whole image (visible patches pasted back), sharpness ratio.

    Pixels are de-normalised to [0, 1]; with norm_pix_loss the prediction is de-normalised with each target
    patch's mean and std (``MAE.reconstruct``). ``*_zero_pred`` is the same metric for a prediction of zeros
    (the dataset mean, or each patch's own mean under norm_pix_loss): the floor to read PSNR against. PSNR and
    SSIM are means of per-image values (:func:`mean_over_images`); a value that is undefined is None with its
    reason under ``"undefined"`` (``maelab.undefined``).

    The images are the test split, or, for a set without one (an unlabeled image folder), the training images
    (``Dataset.eval_images``; ``recon.limit`` then takes a seeded random subset); ``result["split"]`` says which.
    """
    x, y, split = data.eval_images()
    if cfg.limit is not None:
        x, _ = balanced_subset(x, y, cfg.limit, 0, key="recon.limit", split=f"{split} set")
    model.eval()
    device = next(model.parameters()).device  # memory-mapped images stay on the CPU: moved a batch at a time
    gen = torch.Generator(device=device).manual_seed(cfg.mask_seed)
    per_image, sharp, norm = _PerImage(), Sharpness(), Normalizer(data.mean, data.std, device)
    not_finite = 0  # images whose prediction holds a NaN or an infinity
    size = model.spec.img_size
    small = f"the images ({size} px) are smaller than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window" \
        if size < SSIM_WINDOW else None
    for start in range(0, len(x), batch_size):
        imgs = prepare(x[start:start + batch_size].to(device), model.spec.img_size, data.mean, data.std)
        mask = draw_mask(len(imgs), model.spec.num_patches, cfg.ratio, imgs.device, gen)
        _, pred = model(imgs, mask)
        not_finite += int((~torch.isfinite(pred)).flatten(1).any(1).sum())
        original = norm.inverse(imgs)
        m = pixel_mask(mask.binary, model.spec.patch_size)
        for tag, p in (("", pred), ("_zero_pred", torch.zeros_like(pred))):
            recon = norm.inverse(model.reconstruct(imgs, p, mask))
            per_image.add("psnr_masked" + tag, psnr(recon, original, m))
            per_image.add("psnr_full" + tag, psnr(recon, original))
            if small is None:
                per_image.add("ssim_masked" + tag, ssim(recon, original, m))
                per_image.add("ssim_full" + tag, ssim(recon, original))
            if not tag:
                sharp.add(recon, original, m)
    result: dict[str, Any] = {}
    for name in per_image.values:
        mean_over_images(result, name, per_image.all(name), NAN_REASONS.get(name.removesuffix("_zero_pred"), ""))
    sharp.write(result, split)
    if not_finite:
        undefined_predictions(result, f"the model's reconstructions are not finite ({not_finite} of {len(x)} "
                                      f"images): {non_finite_cause(model)}")
    for name in ("ssim_masked", "ssim_full", "ssim_masked_zero_pred", "ssim_full_zero_pred") if small else ():
        set_undefined(result, name, small)
    result.update({"ratio": cfg.ratio, "mask_seed": cfg.mask_seed, "images": len(x), "split": split})
    return result
