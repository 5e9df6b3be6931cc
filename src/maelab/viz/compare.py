"""Several runs' reconstructions of the same masked images (report Fig. 7), each run labelled by what tells it apart
from the others, written as ``compare_<label>_vs_<label>.png``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from maelab.data.normalize import Normalizer
from maelab.engine.loading import LoadedRun, load_run
from maelab.engine.numerics import non_finite_tensors
from maelab.errors import UserError
from maelab.run_layout import RunLayout
from maelab.viz.image_names import short_name
from maelab.viz.plots import compare_figure
from maelab.viz.run_figures import (
    FIGURE_SEED,
    _check_ratio,
    _data_note,
    _norm_pix_note,
    _out_dir,
    _ratio_text,
    _run_ratio,
    _save,
)
from maelab.viz.samples import pick_samples, reconstruct, to_numpy

# An ablation keeps each run in OUT/runs/<variant>/seed<k> beside OUT/suite.yaml (maelab.ablate.results.run_dir_of;
# viz sits below ablate and does not import it: tests/test_viz.py holds the two to the same layout)
SUITE_FILE, RUNS_FOLDER, SEED_FOLDER = "suite.yaml", "runs", re.compile(r"seed\d+")
LABEL_CHARS = 18  # a row label's width (1.5 in of margin)
FILE_CHARS = 120  # a longer compare_<labels>.png is named compare.png (the labels are in its title)


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """One label per run that tells it apart from the others: an ablation's run ``OUT/runs/<variant>/seed<k>`` is
    ``<variant>/seed<k>``, any other run its folder's name; each with as many parent folders as it takes to tell
    runs of the same name apart (``a/seed0``, ``b/seed0``); the same folder twice is numbered ("run (2)")."""
    parts = [_parts(Path(d)) for d in run_dirs]
    least = [2 if _in_ablation(Path(d)) else 1 for d in run_dirs]
    labels = [p[-1] for p in parts]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-max(depth, k):]) for p, k in zip(parts, least, strict=True)]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label} ({i + 1})" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def compare_file_name(labels: Sequence[str]) -> str:
    """``compare_<label>_vs_<label>.png`` (characters other than letters, digits, ``_``, ``.``, ``-`` and ``+``
    become ``-``: ``base/seed0`` is ``base-seed0``); ``compare.png`` when that would be too long."""
    slugs = [re.sub(r"[^\w.+-]+", "-", label, flags=re.ASCII).strip("-") or "run" for label in labels]
    name = f"compare_{'_vs_'.join(slugs)}.png"
    return name if len(name) <= FILE_CHARS else "compare.png"


def write_compare(run_a: str | Path, run_b: str | Path, out: Optional[str | Path] = None,
                  ratio: Optional[float] = None, n_images: int = 10, seed: int = FIGURE_SEED,
                  labels: Optional[Sequence[str]] = None, overrides: Sequence[str] = ()) -> Path:
    """Run A's and run B's reconstructions of the same masked test images (run A's), one row each.

    Written to ``out`` (default ``RUN_A/figures``) as :func:`compare_file_name` of the rows' labels (``labels``, or
    :func:`run_labels`). Each model sees the images normalised with its own run's statistics; both use the same
    mask (same seed, ratio and patch grid).
    """
    labels = _checked_labels([run_a, run_b], labels)
    out_dir = Path(out) if out is not None else RunLayout(run_a).figures
    return write_compare_runs([run_a, run_b], labels, out_dir / compare_file_name(labels), ratio, n_images, seed,
                              overrides)


def write_compare_runs(run_dirs: Sequence[str | Path], labels: Optional[Sequence[str]], path: str | Path,
                       ratio: Optional[float] = None, n_images: int = 10, seed: int = FIGURE_SEED,
                       overrides: Sequence[str] = ()) -> Path:
    """Report Fig. 7 for any number of runs: the first run's test images, masked, then each run's reconstruction
    of them, one row per run labelled ``labels[i]`` (default :func:`run_labels`) and its step, written to
    ``path``. ``overrides`` apply to every run (other data: ``data.name=folder data.root=DIR``). All runs need
    the same image and patch size."""
    labels = _checked_labels(run_dirs, labels)
    runs = [load_run(d, device="cpu", overrides=list(overrides)) for d in run_dirs]
    first = runs[0]
    for other in runs[1:]:
        _check_same_grid(first, other)
    data = first.dataset()
    ratio = _check_ratio(_run_ratio(first.cfg) if ratio is None else ratio)
    samples = pick_samples(data, first.model.spec.img_size, n_images, seed)
    recons, shown = [], None
    for label, run in zip(labels, runs, strict=True):
        run_data = data if _same_data(first, run) else run.dataset()
        rec = reconstruct(run.model, samples.original, Normalizer(run_data.mean, run_data.std), ratio, seed)
        shown = shown or rec
        broken = "\n(NaN/inf weights: blank)" if non_finite_tensors(run.model.state_dict()) else ""
        recons.append((f"{short_name(label, LABEL_CHARS)}{broken}\n(step {run.step})", to_numpy(rec.recon)))
    fig = compare_figure(to_numpy(shown.original), to_numpy(shown.masked), recons, samples.names,
                         _ratio_text(shown.mask), f"Reconstructions of the same masked images: {' vs '.join(labels)}"
                         f"{_data_note(data, overrides)}{_norm_pix_note(*runs)}")
    path = Path(path)
    return _save(fig, _out_dir(path.parent, path.parent) / path.name)


def _checked_labels(run_dirs: Sequence[str | Path], labels: Optional[Sequence[str]]) -> list[str]:
    """``labels`` (one per run, told apart) or :func:`run_labels`; a UserError for the wrong number or a repeat."""
    if labels is None:
        return run_labels(run_dirs)
    if len(labels) != len(run_dirs) or len(set(labels)) != len(labels) or not all(str(x).strip() for x in labels):
        raise UserError(f"--labels takes one different, non-empty label per run ({len(run_dirs)} runs, labels "
                        f"{' '.join(map(repr, labels))}): e.g. --labels baseline gan")
    return [str(x) for x in labels]


def _parts(run_dir: Path) -> list[str]:
    """The folder names of ``run_dir`` from the root down; an ablation's ``runs`` folder left out."""
    parts = list(run_dir.resolve().parts[1:]) or [str(run_dir)]
    if _in_ablation(run_dir):
        del parts[-3]
    return parts


def _in_ablation(run_dir: Path) -> bool:
    """True for an ablation's run folder: OUT/runs/<variant>/seed<k> with OUT/suite.yaml."""
    path = run_dir.resolve()
    return (SEED_FOLDER.fullmatch(path.name) is not None and len(path.parents) > 3
            and path.parents[1].name == RUNS_FOLDER and (path.parents[2] / SUITE_FILE).is_file())


def _check_same_grid(a: LoadedRun, b: LoadedRun) -> None:
    sa, sb = a.model.spec, b.model.spec
    if (sa.img_size, sa.patch_size) != (sb.img_size, sb.patch_size):
        raise UserError(
            f"cannot compare {a.run_dir} ({sa.img_size} px, patch {sa.patch_size}) with {b.run_dir} "
            f"({sb.img_size} px, patch {sb.patch_size}): the same masks need the same image and patch size"
        )


def _same_data(a: LoadedRun, b: LoadedRun) -> bool:
    return a.cfg.data == b.cfg.data and a.cfg.train.seed == b.cfg.train.seed and a.data_source == b.data_source


__all__ = ["compare_file_name", "run_labels", "write_compare", "write_compare_runs"]
