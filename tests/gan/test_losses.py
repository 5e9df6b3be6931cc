import math

import pytest
import torch

from maelab.gan.losses import GAN_LOSSES, MAX_ADAPTIVE_WEIGHT, adaptive_weight, d_loss, g_loss, r1_penalty

REAL = torch.tensor([[2.0, -1.0]])
FAKE = torch.tensor([[0.5, -3.0]])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# (kind, D loss, G loss) computed by hand from REAL = [2, -1] and FAKE = [0.5, -3]
HAND = [
    ("vanilla", 0.5 * (mean([softplus(-2.0), softplus(1.0)]) + mean([softplus(0.5), softplus(-3.0)])),
     -mean([softplus(0.5), softplus(-3.0)])),
    ("nonsat", 0.5 * (mean([softplus(-2.0), softplus(1.0)]) + mean([softplus(0.5), softplus(-3.0)])),
     mean([softplus(-0.5), softplus(3.0)])),
    ("hinge", 0.5 * (mean([0.0, 2.0]) + mean([1.5, 0.0])), -mean([0.5, -3.0])),
    ("lsgan", 0.5 * (mean([1.0, 4.0]) + mean([0.25, 9.0])), mean([0.25, 16.0])),
]


@pytest.mark.parametrize(("kind", "d_expected", "g_expected"), HAND)
def test_losses_match_hand_computed_values(kind, d_expected, g_expected):
    assert d_loss(kind, REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    assert g_loss(kind, FAKE).item() == pytest.approx(g_expected, rel=1e-6)


def test_vanilla_is_bce_with_logits():
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected_d = 0.5 * (bce(REAL, torch.ones_like(REAL)) + bce(FAKE, torch.zeros_like(FAKE)))
    assert torch.allclose(d_loss("vanilla", REAL, FAKE), expected_d)
    assert torch.allclose(g_loss("vanilla", FAKE), -bce(FAKE, torch.zeros_like(FAKE)))
    assert torch.allclose(g_loss("nonsat", FAKE), bce(FAKE, torch.ones_like(FAKE)))


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_losses_take_patch_logits_and_prefer_the_right_side(kind):
    good_real, good_fake = torch.full((2, 1, 3, 3), 3.0), torch.full((2, 1, 3, 3), -3.0)
    # D's loss is lower when it tells real from fake; G's loss is lower when D believes the fakes
    assert d_loss(kind, good_real, good_fake) < d_loss(kind, good_fake, good_real)
    assert g_loss(kind, good_real) < g_loss(kind, good_fake)


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'"):
        d_loss("wgan", REAL, FAKE)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        g_loss("wgan", FAKE)


def test_adaptive_weight_is_the_gradient_norm_ratio():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    rec = (w**2).sum()  # grad 2w = [2, 4], norm sqrt(20)
    adv = 3.0 * w[0]  # grad [3, 0], norm 3
    weight = adaptive_weight(rec, adv, w)
    assert weight.item() == pytest.approx(math.sqrt(20) / (3 + 1e-4), rel=1e-6)
    assert not weight.requires_grad
    # a loss scale (fp16) changes nothing
    assert adaptive_weight(rec, adv, w, scale=torch.tensor(1024.0)).item() == pytest.approx(weight.item(), rel=1e-6)
    # the graphs are kept for the backward pass that follows
    (rec + weight * adv).backward()
    assert torch.allclose(w.grad, torch.tensor([2.0 + 3 * weight.item(), 4.0]))


def test_adaptive_weight_is_clamped():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    assert adaptive_weight((w**2).sum(), 0.0 * w.sum(), w).item() == MAX_ADAPTIVE_WEIGHT


def test_r1_penalty_hand_computed_and_differentiable():
    a = torch.tensor(3.0, requires_grad=True)
    x = torch.randn(2, 1, 2, 2, requires_grad=True)
    logits = a * x.sum(dim=[1, 2, 3])  # grad_x = a everywhere: |grad|^2 = 4 a^2 per image
    penalty = r1_penalty(logits, x)
    assert penalty.item() == pytest.approx(0.5 * 4 * 9.0)
    penalty.backward()
    assert a.grad.item() == pytest.approx(4 * 3.0)  # d/da (2 a^2)
