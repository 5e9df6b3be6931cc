from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from maelab.ablate import load_suite
from maelab.config import load_config
from maelab.errors import ConfigError, DataError
from tests.ablate.conftest import write_suite
from tests.conftest import REPO


@pytest.mark.parametrize(("changes", "message"), [
    ({"baseline": "nope"}, "baseline 'nope' is not a variant"),
    ({"evals": ["probe", "lin"]}, "evaluation 'lin' is not known"),
    ({"variants": {"baseline": {"overrides": ["optim.lrr=1"]}, "linear": {}}},
     "variant 'baseline': unknown config key 'optim.lrr'"),
    ({"variants": {"baseline": {}, "linear": {"overrides": ["mask.ratio=1.5"]}}}, "outside [0, 1]"),
    ({"claims": [{"text": "t", "variant": "ghost"}]}, "names variant 'ghost'"),
    ({"claims": [{"text": "t", "variant": "linear", "kind": "worse"}]}, "claim kind 'worse'"),
    ({"variants": {}}, "has no variants"),
    ({"seeds": "three"}, "seeds"),
    ({"overrides": ["train.stop_after_epochs=1"]}, "train.stop_after_epochs stops a run before optim.epochs"),
])
def test_bad_suites_are_one_clear_error(tmp_path, changes, message):
    path = write_suite(tmp_path, **changes)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_suite(path)


def test_seeds_option_replaces_the_suites_count(tmp_path):
    path = write_suite(tmp_path)
    assert load_suite(path).seeds == [0, 1]
    assert load_suite(path, seeds=4).seeds == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="at least one seed"):
        load_suite(path, seeds=0)


def test_run_config_applies_base_variant_seed_and_folder_in_order(tmp_path):
    suite = load_suite(write_suite(tmp_path, overrides=["optim.epochs=3", "mask.ratio=0.6"]))
    cfg = suite.run_config("linear", 1, tmp_path / "run")
    assert (cfg.optim.epochs, cfg.mask.schedule, cfg.mask.ratio, cfg.train.seed) == (3, "linear", 0.6, 1)
    assert cfg.out_dir == str(tmp_path / "run") and cfg.model.preset == "micro" and not cfg.train.progress


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "suites").glob("*.yaml")))
def test_the_shipped_suites_load(name):
    suite = load_suite(REPO / "configs" / "suites" / name)
    assert suite.spec.baseline in suite.spec.variants and len(suite.seeds) >= 3
    for variant in suite.variant_names():
        suite.run_config(variant, 0, Path("x"))


def test_the_cpu_suite_runs_the_reports_variants_with_their_features_on():
    suite = load_suite(REPO / "configs" / "suites" / "seed_cifar10_cpu.yaml")
    cfgs = {v: suite.run_config(v, 0, Path("x")) for v in suite.variant_names()}
    assert set(cfgs) == {"baseline", "aug3", "aug5", "mask_random", "mask_linear", "gan"}
    assert (cfgs["aug3"].aug.preset, cfgs["aug5"].aug.preset) == ("seed3", "seed5")
    assert (cfgs["mask_random"].mask.schedule, cfgs["mask_linear"].mask.schedule) == ("random", "linear")
    assert cfgs["gan"].gan.enabled and not cfgs["baseline"].gan.enabled
    recipe = load_config(REPO / "configs" / "cifar10_cpu25.yaml")  # every variant on the CPU recipe's model
    assert {(c.data.limit_train, c.optim.epochs) for c in cfgs.values()} == {(None, 6)}  # all 50k images, 6 epochs
    assert all(c.model == recipe.model for c in cfgs.values())
    assert cfgs["baseline"].optim == replace(recipe.optim, epochs=6)


def test_a_claim_can_set_fine_tuning_against_the_same_model_trained_from_scratch(tmp_path):
    from maelab.ablate.judge import judge
    from maelab.ablate.results import Row

    claim = {"text": "pretraining helps classification", "variant": "baseline", "metric": "finetune_top1",
             "reference": "scratch", "reference_metric": "scratch_top1", "kind": "better"}
    suite = load_suite(write_suite(tmp_path, evals=["probe", "finetune", "scratch"], claims=[claim]))
    rows = [Row("baseline", k, "finetune_top1", v) for k, v in enumerate([70.0, 72.0, 71.0])]
    rows += [Row("scratch", k, "scratch_top1", v) for k, v in enumerate([60.0, 61.0, 61.5])]
    j = judge(suite.spec.claims[0], suite.spec, rows)
    assert j.reference == "scratch" and j.comparison.test == "paired" and j.comparison.n == 3
    assert j.comparison.used.diff == pytest.approx((10 + 11 + 9.5) / 3) and j.verdict == "held"
    with pytest.raises(ConfigError, match="names variant 'scratch'"):  # scratch must be one of the evaluations
        load_suite(write_suite(tmp_path / "no_scratch", evals=["probe", "finetune"], claims=[claim]))


def test_a_suite_on_an_unlabeled_folder_refuses_labelled_evaluations_before_running(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(4):
        Image.new("RGB", (8, 8), (k, 2 * k, 3 * k)).save(photos / f"{k}.png")
    data = ["data.name=folder", f"data.root={photos}"]
    with pytest.raises(DataError, match=r"variant 'baseline': each of the evaluations probe, knn needs labels; .* "
                                        r"or give a labelled data.root in its eval_overrides$"):
        load_suite(write_suite(tmp_path / "a", overrides=data))
    with pytest.raises(DataError, match=r"the k-NN monitor \(eval.knn_every=1\) needs labels; .* set eval.knn_every=0"):
        load_suite(write_suite(tmp_path / "b", overrides=[*data, "eval.knn_every=1"], evals=["recon"]))
    with pytest.raises(DataError, match="the evaluation scratch needs labels"):
        load_suite(write_suite(tmp_path / "c", overrides=data, evals=["recon", "scratch"], claims=[]))
    assert load_suite(write_suite(tmp_path / "d", overrides=data, evals=["recon"], claims=[])).spec.evals == ["recon"]


@pytest.mark.parametrize("name", ["scratch", "random_init", "zero_prediction"])
def test_a_variant_named_like_the_suites_own_runs_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=f"variant name '{name}' is reserved .*: rename the variant"):
        load_suite(write_suite(tmp_path, variants={"baseline": {}, name: {}}))


def _cifar_suite(tmp_path: Path, url: str, md5: str = "ab" * 16) -> Path:
    data = ["data.name=cifar10", f"data.url={url}", f"data.md5={md5}", f"data.cache_dir={tmp_path / 'cache'}"]
    return write_suite(tmp_path / "s", overrides=data, evals=["recon"], claims=[])


def test_a_suite_on_cifar10_found_nowhere_is_one_error_before_any_run(tmp_path, monkeypatch, capsys):
    from maelab.cli import main

    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
    path = _cifar_suite(tmp_path, (tmp_path / "nowhere.tar.gz").as_uri())
    assert main(["ablate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("maelab: downloading")]
    assert len(err) == 1 and "CIFAR-10 not found" in err[0] and "download of" in err[0]
    assert "variant 'baseline' pretrains on it: nothing was run" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_suite_downloads_its_dataset_once_before_its_runs_start(tmp_path, monkeypatch, capsys):
    from maelab.ablate.suite import check_data_found
    from tests.data.conftest import make_archive, make_fake_cifar

    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    md5 = make_archive(archive, make_fake_cifar(tmp_path / "source"))
    suite = load_suite(_cifar_suite(tmp_path, archive.as_uri(), md5))  # 2 variants, pretrained and evaluated
    check_data_found(suite)
    assert capsys.readouterr().err.count("maelab: downloading") == 1
    assert (tmp_path / "cache" / "cifar-10-batches-py" / "data_batch_1").is_file()
    check_data_found(suite)  # found in the cache now
    assert "downloading" not in capsys.readouterr().err


def test_a_suite_that_extends_another_replaces_only_the_keys_it_gives(tmp_path):
    parent = load_suite(write_suite(tmp_path))
    (tmp_path / "longer.yaml").write_text("extends: suite.yaml\nname: tiny_longer\noverrides: [optim.epochs=3]\n")
    child = load_suite(tmp_path / "longer.yaml")
    assert (child.name, child.spec.overrides) == ("tiny_longer", ["optim.epochs=3"])
    assert child.spec.claims == parent.spec.claims and child.spec.variants == parent.spec.variants
    assert child.run_config("linear", 0, tmp_path / "r").optim.epochs == 3  # the parent's base, read from its folder


@pytest.mark.parametrize(("extends", "message"), [
    ("../elsewhere/suite.yaml", "is not a suite file of the same folder"),
    ("loop.yaml", "leads back to itself"),
    ("nope.yaml", "no such file beside it"),
    ("''", "is not a file name"),
    ("bad.yaml", "suite file .*bad.yaml: bad or unknown key 'seedz'"),  # named where it is, not in the child
])
def test_an_extends_outside_the_folder_or_in_a_loop_is_one_clear_error(tmp_path, extends, message):
    write_suite(tmp_path / "elsewhere")
    (tmp_path / "s" / "loop.yaml").parent.mkdir()
    (tmp_path / "s" / "loop.yaml").write_text("extends: child.yaml\n")
    (tmp_path / "s" / "bad.yaml").write_text("seedz: 3\n")
    (tmp_path / "s" / "child.yaml").write_text(f"extends: {extends}\nname: child\n")
    with pytest.raises(ConfigError, match=message):
        load_suite(tmp_path / "s" / "child.yaml")


def test_a_suite_that_extends_another_needs_a_name_of_its_own(tmp_path):
    write_suite(tmp_path)
    (tmp_path / "child.yaml").write_text("extends: suite.yaml\noverrides: [optim.epochs=3]\n")
    with pytest.raises(ConfigError, match="without a name of its own: add 'name:'"):
        load_suite(tmp_path / "child.yaml")


def test_the_gpu_suite_at_6_epochs_is_the_gpu_suite_but_for_its_epochs():
    gpu, short = (load_suite(REPO / "configs" / "suites" / f"{name}.yaml")
                  for name in ("seed_cifar10_gpu", "seed_cifar10_gpu_6ep"))
    assert short.spec.claims == gpu.spec.claims and short.name != gpu.name  # its claims pair with the GPU suite's
    for variant in gpu.variant_names():
        long_cfg, short_cfg = (s.run_config(variant, 0, Path("x")) for s in (gpu, short))
        assert (long_cfg.optim.epochs, short_cfg.optim.epochs) == (100, 6)
        assert replace(short_cfg, optim=replace(short_cfg.optim, epochs=100), name=long_cfg.name) == long_cfg
