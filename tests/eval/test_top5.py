"""Top-5 on 5 classes or fewer is 100% by construction: null with that reason, in the eval JSON and the results
(issue 29), for the probe, fine-tuning and the from-scratch baseline (the same function); a number from 6 on."""

import pytest
import torch

from maelab.ablate.results import UNDEFINED, eval_rows
from maelab.config import AugConfig, FinetuneConfig, ModelConfig, ProbeConfig
from maelab.data import Dataset
from maelab.eval.commands import write_result
from maelab.eval.finetune import finetune
from maelab.eval.linear_probe import train_probe
from maelab.eval.metrics import accuracies
from maelab.eval.protocols import probe_summary, protocols
from maelab.models import resolve_spec

TWO = "top-5 of 2 classes is 100% by construction (every class is among the top 5)"


def test_top5_of_five_classes_or_fewer_is_null_with_its_reason_and_a_number_from_six():
    g = torch.Generator().manual_seed(0)
    for classes in (2, 5):
        result = accuracies(torch.randn(20, classes, generator=g), torch.randint(0, classes, (20,), generator=g))
        assert result["top5"] is None and 0 <= result["top1"] <= 100
        assert result["undefined"] == {"top5": f"top-5 of {classes} classes is 100% by construction (every class is "
                                                "among the top 5)"}
    sign = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0])[:, None]  # the true class first, or last of 6
    six = accuracies(sign * torch.eye(6), torch.arange(6))
    assert six == {"top1": pytest.approx(100 * 4 / 6), "top5": pytest.approx(100 * 4 / 6)} and "undefined" not in six


def _two_class_features(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    return torch.randn(n, 8, generator=g) + 2.0 * labels[:, None], labels


def test_a_probe_on_two_classes_writes_a_null_top5_with_its_reason_and_the_results_read_it_as_undefined(tmp_path):
    (x, y), (xt, yt) = _two_class_features(64, 0), _two_class_features(40, 1)
    cfg = ProbeConfig(epochs=2, batch_size=16)
    metrics = train_probe(x, y, xt, yt, 2, cfg)
    assert metrics["top5"] is None and metrics["undefined"]["top5"] == TWO and metrics["top1"] > 50
    chosen = protocols("last", "mean", 2)
    summary = probe_summary(chosen, {"last": metrics}, {"last": 8}, cfg, 64, 40)
    assert (summary["top5"], summary["undefined"]) == (None, {"top5": TWO})
    write_result(tmp_path, "probe", {**summary, "test_images": 40})
    rows = {r.metric: r for r in eval_rows("base", 0, tmp_path)}
    assert (rows["probe_top5"].value, rows["probe_top5"].status, rows["probe_top5"].reason) == (None, UNDEFINED, TWO)
    assert rows["probe_top1"].value == metrics["top1"]


def test_fine_tuning_and_the_scratch_baseline_on_two_classes_give_a_null_top5_and_their_test_images():
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8, generator=g), torch.arange(16) % 2,
                   torch.randint(0, 256, (10, 32, 32, 3), dtype=torch.uint8, generator=g), torch.arange(10) % 2,
                   ["a", "b"], "two", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    spec = resolve_spec(ModelConfig(preset="micro"))
    result = finetune(spec, None, data, FinetuneConfig(epochs=1, batch_size=8), AugConfig(), 0,
                      torch.device("cpu"))  # encoder_state None: what `maelab scratch` trains
    assert result["top5"] is None and result["undefined"] == {"top5": TWO}
    assert result["test_images"] == 10 and 0 <= result["top1"] <= 100
