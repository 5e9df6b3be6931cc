import pytest
import torch

from maelab.errors import ConfigError
from maelab.gan.discriminator import PatchDiscriminator, build_discriminator


@pytest.mark.parametrize(("size", "channels", "depth", "grid"), [(48, 3, 3, 6), (32, 3, 2, 8), (32, 6, 1, 16)])
def test_one_logit_per_region(size, channels, depth, grid):
    disc = build_discriminator(size, channels, width=8, depth=depth)
    assert disc(torch.randn(2, channels, size, size)).shape == (2, 1, grid, grid)


def test_outputs_are_logits_and_do_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    disc = PatchDiscriminator(3, width=8, depth=2)
    assert not any(isinstance(m, (torch.nn.Sigmoid, torch.nn.BatchNorm2d)) for m in disc.modules())
    x = torch.randn(4, 3, 32, 32) * 5
    out = disc(x)
    assert torch.allclose(out[:1], disc(x[:1]), atol=1e-6)
    with torch.no_grad():
        disc.net[-1].bias.fill_(2.0)
    out = disc(x)
    assert out.max() > 1  # no squashing into (0, 1)


def test_every_parameter_gets_a_gradient():
    disc = PatchDiscriminator(6, width=4, depth=3)
    disc(torch.randn(2, 6, 32, 32)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_channels_double_and_cap_at_eight_times_the_width():
    disc = PatchDiscriminator(3, width=2, depth=5)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 4, 8, 16, 16, 1]


def test_spectral_norm_bounds_each_layer():
    torch.manual_seed(0)
    disc = PatchDiscriminator(3, width=8, depth=2, spectral_norm=True)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    for _ in range(20):  # power iteration converges in training mode
        disc(torch.randn(1, 3, 32, 32))
    disc.eval()
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.reshape(conv.weight.shape[0], -1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)
    plain = PatchDiscriminator(3, width=8, depth=2)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_too_deep_for_the_image_is_a_config_error():
    with pytest.raises(ConfigError, match="gan.depth=6 halves a 32 px image below 1 px: use gan.depth <= 5"):
        build_discriminator(32, 3, width=8, depth=6)
    build_discriminator(32, 3, width=8, depth=5)
