"""PatchGAN-style discriminator: a few strided convolutions, one logit per image region (no sigmoid)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from maelab.errors import ConfigError


class PatchDiscriminator(nn.Module):
    """imgs [N, C, H, W] -> logits [N, 1, H / 2**depth, W / 2**depth].

    ``depth`` convolutions of kernel 4, stride 2 (pix2pix's NLayerDiscriminator without its normalisation
    layers), channels ``width · 2**i`` capped at ``8 · width``, LeakyReLU(0.2), then a 3×3 convolution to
    one logit per region. There is no BatchNorm, so D's output for an image does not depend on the rest of
    the batch and a forward pass changes no buffer (except spectral norm's power-iteration vectors).
    With 48 px inputs and depth 2 each logit sees an 18 px window (3 × 3 patches of 6 px).
    """

    def __init__(self, in_channels: int = 3, width: int = 32, depth: int = 2, spectral_norm: bool = False) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ConfigError(f"gan.depth={depth} and gan.width={width} must both be >= 1")
        wrap = _spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            out = width * min(2**i, 8)
            layers += [wrap(nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(wrap(nn.Conv2d(channels, 1, kernel_size=3, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)
        self.depth = depth

    def forward(self, imgs: Tensor) -> Tensor:
        return self.net(imgs)


def build_discriminator(img_size: int, in_channels: int, width: int, depth: int,
                        spectral_norm: bool = False) -> PatchDiscriminator:
    """A PatchGAN for ``img_size`` px inputs; a depth that would shrink the image below 1 px is a ConfigError."""
    if img_size // 2**depth < 1:
        raise ConfigError(
            f"gan.depth={depth} halves a {img_size} px image below 1 px: use gan.depth <= {img_size.bit_length() - 1}"
        )
    return PatchDiscriminator(in_channels, width, depth, spectral_norm)


__all__ = ["PatchDiscriminator", "build_discriminator"]
