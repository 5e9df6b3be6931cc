"""README.md's *Your own images* runs as written (issue 31): its commands and its suite are parsed out of the README,
given overrides that keep them to seconds (the micro model, one epoch, a few dozen images), and run on folders made
here; each exits 0 and writes what the README says it writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from PIL import Image

from maelab.cli import main
from tests.conftest import REPO

SECTION = "## Your own images"
MAELAB = ".venv/bin/maelab"
# what each command gets on top of the README's words, to run in seconds
FAST_PRETRAIN = ["model.preset=micro", "data.image_size=32", "optim.epochs=1", "optim.batch_size=16",
                 "train.tensorboard=false", "train.progress=false"]
FAST_EVAL = ["probe.epochs=2"]
EXTRA = {"pretrain": FAST_PRETRAIN, "eval": FAST_EVAL, "ablate": ["--seeds", "1"]}
UNLABELED, CLASSES, TRAIN, TEST = 48, 3, 6, 3


def section() -> str:
    text = (REPO / "README.md").read_text()
    assert text.index(SECTION) < text.index("## The two commands"), "the section opens the README, after the intro"
    return text.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def commands(text: str) -> list[list[str]]:
    """The maelab commands of the section's bash block, comments left out, continuation lines joined."""
    (bash,) = blocks(text, "bash")
    joined = re.sub(r"\\\n\s*", " ", bash)
    lines = [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert all(line.startswith(f"{MAELAB} ") for line in lines), lines
    return [shlex.split(line)[1:] for line in lines]


def value(args: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{key}="))


def make_folders(unlabeled: Path, labelled: Path) -> None:
    """A few dozen images at two depths (and hidden files, which are skipped), and 3 classes of solid colours."""
    for i in range(UNLABELED):
        path = unlabeled / ("trip" if i % 2 else "") / f"IMG_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(path)
    (unlabeled / ".DS_Store").write_bytes(b"not an image")
    (unlabeled / ".ipynb_checkpoints").mkdir()
    (unlabeled / ".ipynb_checkpoints" / "IMG_0000-checkpoint.jpg").write_bytes(b"not an image either")
    for split, n in (("train", TRAIN), ("test", TEST)):
        for c in range(CLASSES):
            folder = labelled / split / f"class_{c}"
            folder.mkdir(parents=True)
            for k in range(n):
                colour = tuple(200 if j == c else 20 + 10 * k for j in range(3))
                Image.new("RGB", (20, 20), colour).save(folder / f"{k}.png")


def test_the_section_is_three_rules_and_at_most_six_commands():
    text = section()
    rules = blocks(text, "")[0].strip().splitlines()
    assert len(rules) == 3 and "train/CLASS/" in rules[1] and "test/CLASS/" in rules[1]
    assert "hidden" in rules[2] and "EXIF" in rules[2]
    names = [c[0] for c in commands(text)]
    assert len(names) <= 6 and names == ["pretrain", "eval", "ablate", "export", "figures"]


def test_the_readme_commands_run_on_a_folder_and_write_what_they_say(tmp_path, monkeypatch, capsys):
    text = section()
    cmds = {c[0]: c for c in commands(text)}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")  # the README's paths are relative to the repository
    unlabeled, labelled = Path(value(cmds["pretrain"], "data.root")), Path(value(cmds["eval"], "data.root"))
    make_folders(unlabeled, labelled)
    (suite_yaml,) = blocks(text, "yaml")
    suite = yaml.safe_load(suite_yaml)
    assert suite["seeds"] == 2 and {"baseline", "gan"} <= set(suite["variants"])
    suite["overrides"] += FAST_PRETRAIN
    suite["eval_overrides"] = suite.get("eval_overrides", []) + FAST_EVAL
    suite_file = next(a for a in cmds["ablate"][1:] if a.endswith(".yaml"))
    Path(suite_file).write_text(yaml.safe_dump(suite, sort_keys=False))

    done = {}
    for name, args in cmds.items():
        code = main([*args, *EXTRA.get(name, [])])
        out, err = capsys.readouterr()
        assert code == 0, f"{name}: {err[-2000:]}"
        done[name] = (out, err)
    run = Path(value(cmds["pretrain"], "out_dir"))

    err = done["pretrain"][1]
    assert f"{UNLABELED} train (no test split) images" in err  # every image at any depth, the hidden files skipped
    assert "warning: only 3 optimizer steps" in err and "almost nothing to work with" in err  # 48 images / 16
    assert (run / "checkpoints" / "last.pt").is_file()

    table = done["eval"][0]
    assert "pretrained" in table and "random init" in table and "probe top-1 %" in table
    assert list((run / "eval").glob(f"eval@{labelled.name}-*.json"))  # tagged by the labelled folder it ran on

    report = (Path(cmds["ablate"][cmds["ablate"].index("--out") + 1]) / "report.md").read_text()
    assert "## Results (mean ± std over seeds)" in report and "random-init encoder (floor)" in report
    for variant in suite["variants"]:
        assert f"| {variant} |" in report
    assert "report's" not in report  # a suite of one's own: no claims of the report's
    assert "Reconstructions of the same masked training images" in report  # pretrained on the unlabeled folder

    hf = run / "export" / "hf"
    assert (hf / "config.json").is_file() and (hf / "model.safetensors").is_file()
    for name in ("masked_inputs.png", "reconstructions.png", "attention.png", "curves.png"):
        assert (run / "figures" / name).stat().st_size > 1000


@pytest.mark.parametrize("folder", ["unlabeled", "labelled"])
def test_the_recipe_reads_a_folder_given_on_the_command_line(tmp_path, folder):
    from maelab.config import load_config

    cfg = load_config(REPO / "configs" / "own_images_cpu.yaml", [f"data.root={tmp_path / folder}"])
    assert (cfg.data.name, cfg.data.image_size, cfg.model.norm_pix_loss) == ("folder", 48, True)
    assert cfg.optim.batch_size == 128 and cfg.optim.lr == 5e-3 and cfg.optim.epochs * (3000 // 128) >= 2000
