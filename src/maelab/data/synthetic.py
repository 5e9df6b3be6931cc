"""A procedural 10-class image set for fast tests: coloured shapes on a noisy, textured background.

Every image draws its class's shape with a random colour, size and position over a random
background colour with smooth low-frequency texture and pixel noise. Everything comes from one
``torch.Generator``, so the set is a pure function of ``(n, seed, size)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CLASSES = ["circle", "square", "triangle", "ring", "cross", "h_stripes", "v_stripes", "diagonal", "checker", "two_dots"]


def make_synthetic(n: int, seed: int, size: int = 32) -> tuple[Tensor, Tensor]:
    """Draw ``n`` labelled images.

    Returns ``x: [n, size, size, 3] uint8`` and ``y: [n] int64`` with balanced classes
    (``i % 10`` shuffled). Deterministic in ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % len(CLASSES))[torch.randperm(n, generator=g)]
    p = _draw_params(n, size, g)
    img = _background(n, size, p["bg"], g)
    u, v = _offsets(p["cx"], p["cy"], size)
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    for c in range(len(CLASSES)):
        idx = (y == c).nonzero().squeeze(1)
        if len(idx):
            mask[idx] = _SHAPES[c](u[idx], v[idx], {k: t[idx].view(-1, 1, 1) for k, t in p.items()})
    img = torch.where(mask.unsqueeze(-1), p["fg"].view(n, 1, 1, 3), img)
    img += 0.14 * (torch.rand(n, size, size, 3, generator=g) - 0.5)  # pixel noise
    return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8).contiguous(), y


def _draw_params(n: int, size: int, g: torch.Generator) -> dict[str, Tensor]:
    """Per-image shape parameters, in pixels (``r``: half-extent of the shape)."""
    bg = torch.rand(n, 3, generator=g)
    fg = (bg + 0.35 + 0.3 * torch.rand(n, 3, generator=g)) % 1.0  # every channel differs from bg by >= 0.35
    return {
        "bg": bg,
        "fg": fg,
        "r": size * (0.2 + 0.12 * torch.rand(n, generator=g)),
        "cx": size * (0.35 + 0.3 * torch.rand(n, generator=g)),
        "cy": size * (0.35 + 0.3 * torch.rand(n, generator=g)),
        "period": size * (0.12 + 0.06 * torch.rand(n, generator=g)),
        "phase": 2 * math.pi * torch.rand(n, generator=g),
    }


def _background(n: int, size: int, bg: Tensor, g: torch.Generator) -> Tensor:
    """``[n, size, size, 3]`` float: background colour + smooth texture (4x4 noise, upsampled)."""
    coarse = 0.25 * (torch.rand(n, 3, 4, 4, generator=g) - 0.5)
    texture = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return bg.view(n, 1, 1, 3) + texture.permute(0, 2, 3, 1)


def _offsets(cx: Tensor, cy: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre offsets from each image's shape centre: ``u, v: [n, size, size]`` (u right, v down)."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    u = coords.view(1, 1, size) - cx.view(-1, 1, 1)
    v = coords.view(1, size, 1) - cy.view(-1, 1, 1)
    return u.expand(-1, size, -1), v.expand(-1, -1, size)


def _box(u: Tensor, v: Tensor, half: Tensor) -> Tensor:
    return (u.abs() <= half) & (v.abs() <= half)


def _circle(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    return u**2 + v**2 <= p["r"] ** 2


def _square(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _box(u, v, 0.8 * p["r"])


def _triangle(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    r = p["r"]
    return (v <= 0.8 * r) & (u.abs() <= 0.55 * (v + r))


def _ring(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    d2 = u**2 + v**2
    return (d2 <= p["r"] ** 2) & (d2 >= (0.55 * p["r"]) ** 2)


def _cross(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    r, w = p["r"], 0.3 * p["r"]
    return ((u.abs() <= w) & (v.abs() <= r)) | ((v.abs() <= w) & (u.abs() <= r))


def _stripes(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return torch.sin(2 * math.pi * t / p["period"] + p["phase"]) > 0


def _h_stripes(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _box(u, v, 1.2 * p["r"]) & _stripes(v, p)


def _v_stripes(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _box(u, v, 1.2 * p["r"]) & _stripes(u, p)


def _diagonal(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    return ((u - v).abs() <= 0.35 * p["r"]) & ((u + v).abs() <= 2.2 * p["r"])


def _checker(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    cell = 0.5 * p["period"] + 1.0
    parity = (torch.floor(u / cell) + torch.floor(v / cell)) % 2 == 0
    return _box(u, v, 1.1 * p["r"]) & parity


def _two_dots(u: Tensor, v: Tensor, p: dict[str, Tensor]) -> Tensor:
    r, d = 0.4 * p["r"], 0.75 * p["r"]
    return ((u - d) ** 2 + v**2 <= r**2) | ((u + d) ** 2 + v**2 <= r**2)


_SHAPES = [_circle, _square, _triangle, _ring, _cross, _h_stripes, _v_stripes, _diagonal, _checker, _two_dots]
