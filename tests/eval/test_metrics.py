import math

import pytest
import torch

from maelab.eval.knn import knn_predict, topk_accuracy
from maelab.eval.metrics import SSIM_K1, SSIM_K2, gradient_magnitude, masked_gradient, psnr, ssim


def test_psnr_hand_computed():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.full((2, 3, 8, 8), 0.1)  # mse 0.01 -> 20 dB
    assert psnr(x, y).tolist() == pytest.approx([20.0, 20.0])
    weight = torch.zeros(2, 1, 8, 8)
    weight[:, :, :4] = 1
    y2 = y.clone()
    y2[:, :, 4:] = 0.5  # outside the weight: ignored
    assert psnr(x, y2, weight).tolist() == pytest.approx([20.0, 20.0])


def test_psnr_of_identical_images_is_infinite_and_of_an_empty_weight_is_nan():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[1] += 0.1  # mse 0.01 -> 20 dB
    assert psnr(x, y).tolist() == [math.inf, pytest.approx(20.0, abs=1e-4)]  # as scikit-image: inf, not a cap
    weight = torch.zeros(2, 1, 8, 8)
    weight[1, :, :4] = 1  # image 0 has nothing weighted: its masked MSE is 0 / 0
    got = psnr(x, y, weight)
    assert math.isnan(got[0]) and got[1].item() == pytest.approx(20.0, abs=1e-4)


def test_masked_ssim_is_nan_when_no_window_is_centred_on_a_masked_pixel():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    weight = torch.zeros(2, 1, 16, 16)
    weight[0, :, :4, :4] = 1  # a corner patch: every pixel within 5 of the border, no 'valid' window centred there
    weight[1, :, 6:10, 6:10] = 1
    got = ssim(x, y, weight)
    assert math.isnan(got[0]) and -1 <= got[1].item() <= 1


def test_ssim_of_identical_images_is_one_and_of_constants_is_the_luminance_term():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    a, b = 0.2, 0.6
    c1 = SSIM_K1**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances and covariance are 0: the structure term is 1
    got = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)).item()
    assert got == pytest.approx(expected, rel=1e-4)
    assert SSIM_K2 == 0.03


def test_ssim_matches_a_direct_computation_at_one_window():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 1, 11, 11, generator=g), torch.rand(1, 1, 11, 11, generator=g)
    coords = torch.arange(11.0) - 5
    w = torch.exp(-(coords**2) / (2 * 1.5**2))
    w = (w[:, None] * w[None, :]) / (w.sum() ** 2)
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cov = (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(x, y).item() == pytest.approx(expected.item(), rel=1e-4)


def test_gradient_magnitude_of_a_step_edge():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 2:] = 1.0
    g = gradient_magnitude(x)
    assert g[0, 0, :, 1].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert g.sum().item() == 4.0


def test_masked_gradient_sums_and_maxes_over_the_weight():
    x = torch.zeros(2, 1, 4, 4)
    x[0, ..., 2:] = 1.0  # a step edge: |grad| 1 in column 1, 0 elsewhere
    weight = torch.zeros(2, 1, 4, 4)
    weight[:, :, :2] = 1  # the top two rows
    total, peak = masked_gradient(x, weight)
    assert total.tolist() == [2.0, 0.0] and peak.tolist() == [1.0, 0.0] and total.dtype == torch.float64


def test_knn_on_a_hand_built_bank():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0], [-1.0, 0.1]])
    scores = knn_predict(bank, labels, queries, num_classes=3, k=2, temperature=0.1)
    assert scores.argmax(1).tolist() == [0, 1, 2]
    # hand-computed vote of the first query: its two nearest are bank rows 0 and 1, both class 0, each weighted
    # exp(sim / T) scaled by exp(-top sim / T) (the same for the whole row)
    q = queries[0] / queries[0].norm()
    sims = (torch.nn.functional.normalize(bank[:2], dim=1) @ q).tolist()
    assert scores[0, 0].item() == pytest.approx(sum(math.exp((s - max(sims)) / 0.1) for s in sims), rel=1e-5)
    assert scores[0, 1].item() == 0.0 and scores[0, 2].item() == 0.0
    assert topk_accuracy(scores, torch.tensor([0, 1, 0]), 1) == pytest.approx(2 / 3)


def test_knn_votes_stay_finite_and_rank_right_at_a_tiny_temperature():
    """exp(sim / 0.005) overflows float32 for sim > 0.44: both classes' votes were inf and the tie went to class 0."""
    bank = torch.tensor([[1.0, 0.30], [1.0, 0.32]])
    labels = torch.tensor([0, 1])
    query = torch.tensor([[1.0, 0.33]])  # nearest to class 1; both similarities are above 0.99
    scores = knn_predict(bank, labels, query, num_classes=2, k=2, temperature=0.005)
    assert torch.isfinite(scores).all() and scores.argmax(1).tolist() == [1]
    s0, s1 = (torch.nn.functional.normalize(bank, dim=1) @ torch.nn.functional.normalize(query, dim=1).T).flatten()
    assert scores[0].tolist() == pytest.approx([math.exp((s0 - s1).item() / 0.005), 1.0], rel=1e-3)


def test_accuracy_over_no_samples_is_an_error_not_nan():
    with pytest.raises(ValueError, match="undefined"):
        topk_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
