"""Does pretraining teach the encoder anything? Measured against chance and the random-init floor."""

from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from maelab.eval.commands import run_probe

SYNTHETIC = ["data.name=synthetic", "data.synthetic_train=2000", "data.synthetic_test=500", "model.preset=micro",
             "optim.batch_size=50", "optim.lr=2e-3", "aug.preset=none", "train.progress=false",
             "train.tensorboard=false"]


def test_pretraining_on_the_synthetic_set_beats_chance_and_the_random_init_floor(tmp_path):
    # A very brief run sits BELOW the floor here (3 epochs: 16% against 24%, as the DESIGN notes warn for
    # CIFAR-10); after 30 epochs of batch 50 (60k images, 1,200 steps, about 50 s on one thread of the 2-core AMD
    # EPYC) it measured 32.2% against 25.8% (60 epochs of batch 100: 35.4% against 28.2%, twice the time).
    run_dir = pretrain(load_config(None, [*SYNTHETIC, "optim.epochs=30", f"out_dir={tmp_path / 'run'}"]))
    probe = ["probe.epochs=100"]
    trained = run_probe(run_dir, probe)[1]["top1"]
    floor = run_probe(run_dir, probe, random_init=True)[1]["top1"]
    print(f"probe top-1: pretrained {trained:.1f}%, random init {floor:.1f}%")
    assert trained > 25.0  # chance is 10%
    assert trained > floor + 2.0
