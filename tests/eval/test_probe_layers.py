"""probe.layers / probe.pool / probe.optimizer on a tiny 4-block run: what each protocol sees and records."""

import json

import pytest
import torch
from torch import nn

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain
from maelab.eval.commands import run_probe
from maelab.eval.features import pool_tokens, prepare
from maelab.eval.knn import topk_accuracy
from maelab.eval.linear_probe import probe_head
from maelab.schedules import lr_at
from maelab.seeds import torch_generator
from tests.conftest import TINY

QUICK = ["probe.epochs=4", "probe.batch_size=64", "eval.batch_size=128"]
FIELDS = {"name", "layers", "norm", "pool", "dim", "optimizer", "lr", "weight_decay", "epochs", "batch_size",
          "augment", "train_images", "test_images", "top1", "top5"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "deep"
    return pretrain(load_config(None, [*TINY, "model.depth=4", "optim.epochs=1", "train.tensorboard=false",
                                       f"out_dir={out}"]))


def _probe_as_before_issue_13(run_dir, pool: str, epochs: int, batch_size: int) -> tuple[float, float]:
    """maelab's probe as it was before probe.layers existed (commit 5db9adb), written out: forward_features,
    pooled, then BN + Linear trained by SGD momentum 0.9 with a per-step cosine lr, seeded by train.seed (the
    batch order from the "probe-order" stream of maelab.seeds, which replaced seed * 1000 + epoch)."""
    run = load_run(run_dir)
    data, enc, cfg = run.dataset(), run.model.encoder, run.cfg
    with torch.no_grad():
        train, test = (torch.cat([pool_tokens(enc.forward_features(prepare(x[i:i + 128], run.model.spec.img_size,
                                                                           data.mean, data.std)), pool).float()
                                  for i in range(0, len(x), 128)]) for x in (data.x_train, data.x_test))
    seed, n = cfg.train.seed, len(train)
    torch.manual_seed(seed)
    head = probe_head(train.shape[1], data.num_classes)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.probe.lr, momentum=0.9, weight_decay=cfg.probe.weight_decay)
    spe = max(n // batch_size, 1)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch_generator(seed, "probe-order", epoch))
        for i in range(spe):
            idx = order[i * batch_size:(i + 1) * batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * spe + i, epochs * spe, 0, cfg.probe.lr)
            loss = nn.functional.cross_entropy(head(train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    with torch.no_grad():
        scores = head(test)
    return 100 * topk_accuracy(scores, data.y_test, 1), 100 * topk_accuracy(scores, data.y_test, 5)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_layers_last_is_exactly_the_probe_before_issue_13(run_dir, pool):
    _, result = run_probe(run_dir, [*QUICK, f"probe.pool={pool}"])
    assert (result["top1"], result["top5"]) == _probe_as_before_issue_13(run_dir, pool, 4, 64)
    assert list(result["protocols"]) == ["last"] and "best" not in result
    assert result["protocols"]["last"]["norm"] == "final" and result["protocols"]["last"]["layers"] == [4]


def test_layers_all_writes_every_block_and_concatenation_with_its_protocol(run_dir, capsys):
    assert main(["probe", str(run_dir), *QUICK, "probe.layers=all"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run_dir / "eval" / "probe.json").read_text())
    entries = result["protocols"]
    assert list(entries) == ["last", "block1", "block2", "block3", "block4", "last2", "last4"]
    assert all(FIELDS <= set(e) for e in entries.values())
    assert [entries[f"block{b}"]["layers"] for b in range(1, 5)] == [[1], [2], [3], [4]]
    assert (entries["last2"]["layers"], entries["last4"]["layers"]) == ([3, 4], [1, 2, 3, 4])
    assert {e["norm"] for name, e in entries.items() if name != "last"} == {"raw"}
    assert [entries[n]["dim"] for n in ("last", "block1", "last2", "last4")] == [64, 64, 128, 256]
    assert (result["top1"], result["top5"], result["protocol"]) == (entries["last"]["top1"],
                                                                    entries["last"]["top5"], "last")
    best = max(entries.values(), key=lambda e: e["top1"])
    assert result["best"]["top1"] == best["top1"] and "test set" in result["best"]["selected_on"]
    assert len({e["top1"] for e in entries.values()}) > 1 or len({e["top5"] for e in entries.values()}) > 1
    assert sum(line.startswith("  block") for line in out.splitlines()) == 4  # one line per protocol
    figure = run_dir / "figures" / "probe_by_depth.png"
    assert f"wrote {figure}" in out and result["figure"] == str(figure) and figure.stat().st_size > 10_000


def test_each_head_of_layers_all_is_what_probing_it_alone_gives(run_dir):
    _, every = run_probe(run_dir, [*QUICK, "probe.layers=all", "probe.pool=cls"])
    for layers, name in (("last", "last"), ("2", "block2"), ("last2", "last2"), ("[1,2,3,4]", "last4")):
        _, alone = run_probe(run_dir, [*QUICK, f"probe.layers={layers}", "probe.pool=cls"])
        assert alone["protocol"] == name
        assert alone["protocols"][name] == every["protocols"][name]


def test_pool_both_concatenates_mean_and_cls(run_dir):
    _, both = run_probe(run_dir, [*QUICK, "probe.pool=both", "probe.layers=3,4"])
    entry = both["protocols"]["last2"]
    assert (entry["pool"], entry["dim"], entry["layers"]) == ("both", 2 * 2 * 64, [3, 4])
    _, last = run_probe(run_dir, [*QUICK, "probe.pool=both"])
    assert last["protocols"]["last"]["dim"] == 2 * 64


def test_adamw_records_its_protocol(run_dir):
    _, result = run_probe(run_dir, [*QUICK, "probe.optimizer=adamw", "probe.lr=1e-3", "probe.weight_decay=1e-4"])
    entry = result["protocols"]["last"]
    assert (entry["optimizer"], entry["lr"], entry["weight_decay"]) == ("adamw", 1e-3, 1e-4)
    _, sgd = run_probe(run_dir, [*QUICK, "probe.lr=1e-3", "probe.weight_decay=1e-4"])
    assert (result["top1"], result["top5"]) != (sgd["top1"], sgd["top5"])


@pytest.mark.parametrize("layers,message", [
    ("[2,5]", "names block 5 but the model has 4 blocks (model.depth=4)"),
    ("last6", "needs 6 blocks but the model has 4 (model.depth=4)"),
    ("0", "is not valid"),
])
def test_a_block_out_of_range_is_one_clear_line(run_dir, capsys, layers, message):
    assert main(["probe", str(run_dir), f"probe.layers={layers}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maelab: error: probe.layers=") and message in err and len(err.strip().splitlines()) == 1
