"""Image-quality metrics in pixel space: PSNR, SSIM (Gaussian window, Wang et al. 2004), gradient sharpness; and
the classification accuracies every classifier reports (:func:`accuracies`: top-1, and top-5 where it means
something).

Per-image values follow IEEE arithmetic where the metric is not a finite number: +inf for the PSNR of an exact
reconstruction, NaN where a weight selects nothing to measure. The callers (``eval.recon``) turn those into
``null`` with a reason (``maelab.undefined``); nothing here clamps a denominator to invent a number.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from maelab.eval.knn import topk_accuracy
from maelab.undefined import set_undefined

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# |grad| below this (in [0, 1] pixel units) is float rounding, not an edge: resizing and de-normalising a
# single-colour image leaves about 2e-7, while one uint8 level in one channel is 1/255/3 = 1.3e-3
EDGE_TOLERANCE = 1e-5

PSNR_EMPTY = "the weight selects no pixel (no masked pixel)"
SSIM_EMPTY = "no 11x11 SSIM window is centred on a masked pixel (each lies within 5 pixels of the border)"


def psnr(x: Tensor, y: Tensor, weight: Optional[Tensor] = None, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR = 10 log10(data_range^2 / MSE) in dB: x, y [N, C, H, W] -> [N] (x's dtype).

    ``weight`` [N, 1, H, W] restricts the MSE to where it is 1. An image with zero MSE gets +inf (as
    scikit-image's ``peak_signal_noise_ratio``), one whose weight is all 0 gets NaN (``PSNR_EMPTY``).
    """
    err = (x - y) ** 2
    if weight is None:
        mse = err.flatten(1).mean(1)
    else:
        w = weight.expand_as(err)
        mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1)  # 0 / 0 = NaN: nothing weighted
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim_map(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM at every fully covered 11x11 Gaussian window ('valid'): x, y [N, C, H, W] -> [N, C, H-10, W-10].

    Same definition as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``, whose mean over the cropped map equals the mean of this map.
    """
    c = x.shape[1]
    win = _gaussian_window(c, x.device, x.dtype)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: Tensor, y: Tensor, weight: Optional[Tensor] = None, data_range: float = 1.0) -> Tensor:
    """Per-image mean SSIM: x, y [N, C, H, W] -> [N]; ``weight`` [N, 1, H, W] keeps windows centred where it is 1.

    NaN for an image whose weight leaves no window (``SSIM_EMPTY``). SSIM itself is always defined: the
    constants c1, c2 keep its denominators positive, even for constant images.
    """
    smap = ssim_map(x, y, data_range).mean(1, keepdim=True)  # [N, 1, H', W']
    if weight is None:
        return smap.flatten(1).mean(1)
    r = (SSIM_WINDOW - 1) // 2
    w = weight[:, :, r:weight.shape[2] - r, r:weight.shape[3] - r]
    return (smap * w).flatten(1).sum(1) / w.flatten(1).sum(1)  # 0 / 0 = NaN: no window left


def gradient_magnitude(x: Tensor) -> Tensor:
    """|dx| + |dy| forward differences averaged over channels: x [N, C, H, W] -> [N, 1, H, W] (0 at the far edges)."""
    dx = F.pad((x[..., :, 1:] - x[..., :, :-1]).abs(), (0, 1, 0, 0))
    dy = F.pad((x[..., 1:, :] - x[..., :-1, :]).abs(), (0, 0, 0, 1))
    return (dx + dy).mean(1, keepdim=True)


def masked_gradient(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image sum and max of :func:`gradient_magnitude` where ``weight`` [N, 1, H, W] is 1: x [N, C, H, W]
    -> ([N], [N]) float64, in [0, 1] pixel units (the sharpness ratio's numerator or denominator)."""
    g = (gradient_magnitude(x) * weight).flatten(1).double()
    return g.sum(1), g.max(1).values


TOP_K = 5


def trivial_top_k(k: int, num_classes: int) -> str:
    """Why top-``k`` is undefined on ``num_classes`` <= k classes ("" when it is defined)."""
    if num_classes > k:
        return ""
    return f"top-{k} of {num_classes} classes is 100% by construction (every class is among the top {k})"


def accuracies(scores: Tensor, labels: Tensor) -> dict[str, Any]:
    """``{"top1": %, "top5": %}`` of class scores [M, C] against labels [M] (in %).

    With C <= 5 classes every class is among the top 5, so top-5 is 100% whatever the classifier learned: it is
    ``null`` with that reason under ``"undefined"`` (:mod:`maelab.undefined`), not 100.0. Raises ValueError for no
    rows (:func:`maelab.eval.knn.topk_accuracy`).
    """
    result: dict[str, Any] = {"top1": 100 * topk_accuracy(scores, labels, 1)}
    why = trivial_top_k(TOP_K, scores.shape[1])
    if why:
        set_undefined(result, "top5", why)
    else:
        result["top5"] = 100 * topk_accuracy(scores, labels, TOP_K)
    return result
