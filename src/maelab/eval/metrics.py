"""Image-quality metrics in pixel space: PSNR, SSIM (Gaussian window, Wang et al. 2004), gradient sharpness."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(x: Tensor, y: Tensor, weight: Optional[Tensor] = None, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB: x, y [N, C, H, W]; ``weight`` [N, 1, H, W] restricts the MSE to where it is 1."""
    err = (x - y) ** 2
    if weight is None:
        mse = err.flatten(1).mean(1)
    else:
        w = weight.expand_as(err)
        mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-12))


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
    """Per-image mean SSIM: x, y [N, C, H, W]; ``weight`` [N, 1, H, W] keeps windows centred where it is 1."""
    smap = ssim_map(x, y, data_range).mean(1, keepdim=True)  # [N, 1, H', W']
    if weight is None:
        return smap.flatten(1).mean(1)
    r = (SSIM_WINDOW - 1) // 2
    w = weight[:, :, r:weight.shape[2] - r, r:weight.shape[3] - r]
    return (smap * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1)


def gradient_magnitude(x: Tensor) -> Tensor:
    """|dx| + |dy| forward differences averaged over channels: x [N, C, H, W] -> [N, 1, H, W] (0 at the far edges)."""
    dx = F.pad((x[..., :, 1:] - x[..., :, :-1]).abs(), (0, 1, 0, 0))
    dy = F.pad((x[..., 1:, :] - x[..., :-1, :]).abs(), (0, 0, 0, 1))
    return (dx + dy).mean(1, keepdim=True)
