"""Evaluations of a model whose weights or outputs are not finite: their numbers are null with the reason, never
what argmax, cosine similarity or BatchNorm make of NaN (a k-NN on the NaN features of a NaN checkpoint scored
10.0% on CIFAR-10: chance, reported as a result)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from maelab.data import Dataset
from maelab.engine.numerics import non_finite_tensors
from maelab.eval.protocols import Protocol
from maelab.undefined import set_undefined


def non_finite_cause(model: torch.nn.Module) -> str:
    """Why a model's outputs are not finite, in words: the NaN/inf weights its checkpoint holds (named), or, when
    every weight is finite, an overflow."""
    bad = non_finite_tensors(model.state_dict())
    if not bad:
        return "its weights are finite: an overflow inside the model"
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"the checkpoint holds NaN/inf weights ({shown})"


def features_undefined(encoder: torch.nn.Module, *feats: Tensor) -> Optional[str]:
    """Why a metric of these features [N, D] is undefined, or None when every value is finite: a NaN or an infinity
    makes cosine similarities, BatchNorm and so every accuracy meaningless (NaN features scored 10% on CIFAR-10:
    chance, not a measurement)."""
    bad = sum(int((~torch.isfinite(f)).any(dim=1).sum()) for f in feats)
    if not bad:
        return None
    return (f"the encoder's features are not finite ({bad} of {sum(len(f) for f in feats)} images): "
            f"{non_finite_cause(encoder)}")


def undefined_protocols(summary: dict[str, Any], chosen: list[Protocol], bad: dict[str, str]) -> dict[str, Any]:
    """``summary`` (:func:`probe_summary` given -1 as the accuracies of the protocols in ``bad``, so that none of
    them is the best unless all are) with those accuracies null and ``bad``'s reason (features not finite) for
    them: in their entries, at the top when the requested protocol is one of them, and as the best when every one
    is."""
    for name, why in bad.items():
        entry = summary["protocols"][name]
        for key in ("top1", "top5"):
            set_undefined(entry, key, why)
    if chosen[0].name in bad:
        for key in ("top1", "top5"):
            set_undefined(summary, key, bad[chosen[0].name])
    if "best" in summary and summary["best"]["name"] in bad:
        why = bad[summary["best"]["name"]]
        summary["best"].update(name=None)
        for key in ("top1", "top5"):
            set_undefined(summary["best"], key, f"no protocol has a result: {why}")
    return summary


def undefined_finetune(encoder: torch.nn.Module, data: Dataset, epochs: int) -> dict[str, Any]:
    """finetune.json's fields for an encoder whose weights are not finite: no step is trained, the accuracies are
    null with the reason (they came out at chance before: 10% on CIFAR-10)."""
    result: dict[str, Any] = {"test_images": len(data.x_test), "epochs": epochs, "steps": 0,
                              "seconds": 0.0}
    why = f"the encoder's weights are not finite, nothing to fine-tune: {non_finite_cause(encoder)}"
    for key in ("top1", "top5"):
        set_undefined(result, key, why)
    return result
