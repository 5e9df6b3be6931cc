"""Paired seeds: within a suite, seed k gives every variant the same initial weights, the same batches in the
same order, and (where the variant does not change them) the same augmentation and mask draws."""

from __future__ import annotations

import pytest
import torch

import maelab.masking
from maelab.ablate import load_suite
from maelab.engine import run as run_module
from maelab.engine import step as step_module
from maelab.engine.pretrain import pretrain

VARIANTS = ("baseline", "aug3", "aug5", "mask_random", "mask_linear", "gan")
TINY = ["data.name=synthetic", "data.limit_train=null", "data.synthetic_train=64", "data.synthetic_test=16",
        "optim.batch_size=32", "optim.epochs=1", "train.log_every=1", "train.tensorboard=false", "eval.knn_every=0"]


def trace_run(suite, variant: str, seed: int, folder, monkeypatch) -> dict[str, list]:
    """Pretrain one variant × seed of ``suite`` for 2 steps; record its initial weights and, at each step, the
    batch it was given, the augmentation generator's state, and the mask noise it drew."""
    seen: dict[str, list] = {"weights": [], "batch": [], "before": [], "noise": []}
    build, augment, noise = run_module.build_mae, step_module.augment, maelab.masking.mask_noise

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        seen["weights"] = [t.clone() for t in model.state_dict().values()]
        return model

    def recording_augment(imgs, cfg, size, generator, *args):
        seen["batch"].append(imgs.clone())
        seen["before"].append(generator.get_state())
        return augment(imgs, cfg, size, generator, *args)

    def recording_noise(*args, **kwargs):
        seen["noise"].append(noise(*args, **kwargs))
        return seen["noise"][-1]

    monkeypatch.setattr(run_module, "build_mae", recording_build)
    monkeypatch.setattr(step_module, "augment", recording_augment)
    monkeypatch.setattr(maelab.masking, "mask_noise", recording_noise)
    pretrain(suite.run_config(variant, seed, folder / f"{variant}{seed}", TINY))
    monkeypatch.undo()
    return seen


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) > 0 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    suite = load_suite("configs/suites/seed_cifar10_cpu.yaml")
    folder = tmp_path_factory.mktemp("pairing")
    with pytest.MonkeyPatch.context() as monkeypatch:
        runs = {(v, 0): trace_run(suite, v, 0, folder, monkeypatch) for v in VARIANTS}
        runs["baseline", 1] = trace_run(suite, "baseline", 1, folder, monkeypatch)
    return runs


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_every_variant_of_a_seed_starts_from_the_baselines_weights_and_sees_its_batches(traces, variant):
    base, other = traces["baseline", 0], traces[variant, 0]
    assert same(other["weights"], base["weights"])
    assert len(base["batch"]) == 2 and same(other["batch"], base["batch"])
    assert same(other["before"], base["before"])  # each step's random draws start from the same state


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_the_mask_draws_are_common_whatever_the_variant_changes(traces, variant):
    # masks draw from their own stream, so extra augmentation ops (which draw more numbers) leave the mask noise
    # as the baseline's; a schedule changes how many of the lowest-noise patches stay visible, not the noise
    base, other = traces["baseline", 0], traces[variant, 0]
    assert same(other["noise"][:2], base["noise"][:2])


def test_another_seed_gives_other_weights_batches_and_masks(traces):
    base, seed1 = traces["baseline", 0], traces["baseline", 1]
    assert not same(seed1["weights"], base["weights"])
    assert not same(seed1["batch"], base["batch"])
    assert not same(seed1["noise"][:2], base["noise"][:2])
