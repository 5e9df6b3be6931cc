import pytest

from maelab.config import Config, load_config, save_config
from maelab.errors import ConfigError


def test_defaults_and_dotted_overrides():
    cfg = load_config(None, ["optim.epochs=3", "mask.ratio=0.6", "data.name=synthetic", "optim.lr=1e-3"])
    assert isinstance(cfg, Config)
    assert (cfg.optim.epochs, cfg.mask.ratio, cfg.data.name, cfg.optim.lr) == (3, 0.6, "synthetic", 1e-3)


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  epochs: 7\n  batch_size: 64\nmodel:\n  preset: keras\n")
    cfg = load_config(path, ["optim.epochs=2"])
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.model.preset) == (2, 64, "keras")


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(None, ["optim.epochs=3", "model.preset=keras", "data.limit_train=100"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("override,fragment", [
    ("optim.lrr=1", "did you mean 'optim.lr'"),
    ("optim.epoch=1", "did you mean 'optim.epochs'"),
    ("mask.ration=0.5", "did you mean 'mask.ratio'"),
    ("norm_pix=true", "did you mean 'model.norm_pix_loss'"),
])
def test_unknown_key_names_the_nearest_valid_key(override, fragment):
    with pytest.raises(ConfigError, match="unknown config key") as info:
        load_config(None, [override])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override,fragment", [
    ("optim.epochs=two", "optim.epochs"),
    ("optim.batch_size=2.5", "optim.batch_size"),
    ("mask.ratio=1.5", "outside [0, 1]"),
    ("mask.ratio=-0.1", "outside [0, 1]"),
    ("data.name=imagenet", "use one of cifar10, synthetic"),
    ("model.preset=huge", "use one of"),
    ("optim.epochs=0", "must be > 0"),
    ("optim.warmup_epochs=40", "never leave warm-up"),
    ("optim.warmup_fraction=1.0", "must be in [0, 1)"),
    ("optim.lr", "not key=value"),
])
def test_bad_values_are_one_clear_error(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override, "optim.epochs=30"] if "warmup" in override else [override])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("typed", ["configs/own_image_cpu.yaml", "configs/own_images_cpu.yml", "own_images_cpu"])
def test_a_mistyped_config_file_is_answered_with_the_nearest_one(typed):
    with pytest.raises(ConfigError, match=r"does not exist: did you mean configs/own_images_cpu\.yaml\? "):
        load_config(typed)


def test_a_config_file_like_none_there_gets_no_guess(tmp_path):
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "zzz.yaml")
    assert "did you mean" not in str(info.value)
    with pytest.raises(ConfigError, match=f"did you mean {tmp_path / 'mine.yaml'}"):
        load_config(tmp_path / "mien.yaml")


def test_a_config_extends_its_base(tmp_path):
    cfg = load_config("configs/seed/aug3.yaml", ["optim.epochs=2"])
    keras = load_config("configs/cifar10_keras.yaml")
    assert cfg.aug.preset == "seed3" and cfg.name == "seed_aug3" and cfg.optim.epochs == 2
    assert cfg.model == keras.model and cfg.optim.lr == keras.optim.lr


@pytest.mark.parametrize("variant", ["baseline", "aug3", "aug5", "mask_random", "mask_linear", "gan"])
def test_seed_variants_differ_from_the_baseline_only_where_they_say(variant):
    base = load_config("configs/seed/baseline.yaml")
    cfg = load_config(f"configs/seed/{variant}.yaml")
    changed = {section for section in ("data", "aug", "model", "mask", "optim", "train", "gan")
               if getattr(cfg, section) != getattr(base, section)}
    expected = {"baseline": set(), "aug3": {"aug"}, "aug5": {"aug"}, "mask_random": {"mask"},
                "mask_linear": {"mask"}, "gan": {"gan"}}[variant]
    assert changed == expected


def test_a_base_cycle_is_a_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("override", ["optim.lr=nan", "optim.lr=inf", "optim.weight_decay=nan", "gan.weight=-inf",
                                      "optim.grad_clip=nan", "finetune.min_lr=inf"])
def test_a_nan_or_infinite_setting_is_refused_naming_its_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=.* is not a finite number: give a finite number"):
        load_config(None, [override])


@pytest.mark.parametrize("value,written", [
    ("last", "last"), ("all", "all"), ("last4", "last4"), ("[4,5,6]", "4,5,6"), ("4,5,6", "4,5,6"),
    ("6,4", "4,6"), ("3", "3"), ("[2]", "2"),
])
def test_probe_layers_takes_a_name_a_list_or_comma_separated_blocks(value, written):
    assert load_config(None, [f"probe.layers={value}"]).probe.layers == written


def test_probe_layers_from_yaml_and_saved_back(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("probe:\n  layers: [5, 6]\n  pool: both\n  optimizer: adamw\n")
    cfg = load_config(path)
    assert (cfg.probe.layers, cfg.probe.pool, cfg.probe.optimizer) == ("5,6", "both", "adamw")
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").probe == cfg.probe


@pytest.mark.parametrize("override", ["probe.layers=0", "probe.layers=last0", "probe.layers=first",
                                      "probe.layers=[1,x]", "probe.layers=null", "probe.layers={a: 1}",
                                      "probe.layers=true", "probe.layers=1.5", "probe.pool=max",
                                      "probe.optimizer=lars", "knn.pool=both"])
def test_bad_probe_settings_are_one_clear_line(override):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(override.split("=")[0]) and "\n" not in str(err.value)


def test_an_override_inside_a_value_that_is_not_a_section_names_it():
    """Found by the property test: OmegaConf raised a bare ValueError for these two overrides."""
    with pytest.raises(ConfigError, match=r"override 'gan.enabled=0' cannot follow 'gan=\[1,2\]'"):
        load_config(None, ["gan=[1,2]", "gan.enabled=0"])


def test_the_cpu25_recipe_is_the_keras_recipe_with_norm_pix_a_smaller_encoder_and_its_epochs():
    from dataclasses import replace

    keras = load_config("configs/cifar10_keras.yaml")
    cfg = load_config("configs/cifar10_cpu25.yaml")
    assert cfg.model.norm_pix_loss and cfg.model.depth == 4 and cfg.optim.epochs == 32
    assert replace(cfg.model, norm_pix_loss=False, depth=keras.model.depth) == keras.model
    assert (cfg.aug, cfg.mask, cfg.data) == (keras.aug, keras.mask, keras.data)
    assert replace(cfg.optim, epochs=keras.optim.epochs) == keras.optim
