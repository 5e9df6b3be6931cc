from maelab.config import load_config
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain
from maelab.eval.monitors import KnnMonitor, epoch_hooks


def test_the_knn_monitor_is_logged_every_n_epochs(tmp_path, tiny):
    cfg = load_config(None, [*tiny, "optim.epochs=3", "eval.knn_every=2", "train.tensorboard=false",
                             f"out_dir={tmp_path / 'k'}"])
    run_dir = pretrain(cfg, monitors=epoch_hooks)
    epochs = [m for m in read_metrics(run_dir) if m["kind"] == "epoch"]
    assert ["knn_top1" in m for m in epochs] == [False, True, False]
    assert 0 <= epochs[1]["knn_top1"] <= 100
    assert epochs[1]["knn_data"]["name"] == "synthetic" and epochs[1]["knn_data"]["test_images"] == 64
    assert epochs[1]["knn_data"]["tag"] is None  # the run's own data


def test_a_config_gets_the_monitors_it_asks_for():
    assert epoch_hooks(load_config(None, ["eval.knn_every=0"])) == []
    assert epoch_hooks(load_config(None, ["eval.knn_every=3"])) == [KnnMonitor(3)]
