"""Probe protocols: which features a linear probe sees (blocks, final norm or raw outputs, pooling).

``probe.layers`` names them (see :func:`maelab.config.probe_layers`); :func:`protocols` checks them against the
model's depth and lists one :class:`Protocol` per head to train. A protocol's features are pooled vectors of
layers, each layer either ``final`` (the encoder's output after its final LayerNorm: what ``forward_features``
gives, the only features maelab probed before issue 13) or ``blockK`` (the raw output of block K, 1-based, before
the final norm, as timm's ``forward_intermediates(norm=False)`` and I-JEPA's / MAE's probes of several blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from maelab.config import ProbeConfig
from maelab.errors import ConfigError
from maelab.undefined import UNDEFINED

FINAL = "final"
POOLS = {"mean": ("mean",), "cls": ("cls",), "both": ("mean", "cls")}  # both: mean then cls, concatenated
CONCATENATIONS = (2, 4)  # probe.layers=all: the last 2 and last 4 blocks concatenated (and all of them)

Feature = tuple[str, str]  # (layer, pool): layer "final" or "blockK"; pool "mean" | "cls"


@dataclass(frozen=True)
class Protocol:
    """One probe head's input: the pooled features of ``blocks`` (1-based), concatenated in block order.

    ``norm`` is ``final`` (the final-normed output; ``blocks`` is then the last block) or ``raw`` (block outputs
    before the final norm). ``pool`` is mean (of the patch tokens), cls, or both (mean then cls: 2 x D per block).
    """

    name: str  # last | blockK | lastK | blocksA,B,...
    blocks: tuple[int, ...]
    norm: str
    pool: str

    @property
    def features(self) -> list[Feature]:
        """The pooled vectors this protocol concatenates, in order."""
        layers = [FINAL] if self.norm == "final" else [f"block{b}" for b in self.blocks]
        return [(layer, pool) for layer in layers for pool in POOLS[self.pool]]

    def describe(self) -> dict:
        """The protocol's fields as probe.json records them."""
        return {"name": self.name, "layers": list(self.blocks), "norm": self.norm, "pool": self.pool}


def protocols(layers: str, pool: str, depth: int) -> list[Protocol]:
    """The protocols ``probe.layers`` asks for on an encoder of ``depth`` blocks; the requested one first.

    ``layers`` is in :func:`maelab.config.probe_layers`' form. ``all`` gives ``last`` first (the number comparable
    across runs), then every block alone, then the last 2, last 4 and all blocks concatenated (those that exist,
    without repeats). Raises ConfigError, naming the depth, for a block the model does not have.
    """
    if layers == "last":
        return [Protocol("last", (depth,), "final", pool)]
    if layers == "all":
        tails = sorted({k for k in (*CONCATENATIONS, depth) if 2 <= k <= depth})
        return [Protocol("last", (depth,), "final", pool),
                *(_raw((b,), pool, depth) for b in range(1, depth + 1)),
                *(_raw(tuple(range(depth - k + 1, depth + 1)), pool, depth) for k in tails)]
    if layers.startswith("last"):
        k = int(layers[4:])
        if k > depth:
            raise ConfigError(f"probe.layers={layers} needs {k} blocks but the model has {depth} "
                              f"(model.depth={depth}): use last1 .. last{depth}, or all")
        return [_raw(tuple(range(depth - k + 1, depth + 1)), pool, depth)]
    blocks = tuple(int(b) for b in layers.split(","))
    if blocks[-1] > depth:
        raise ConfigError(f"probe.layers=[{layers}] names block {blocks[-1]} but the model has {depth} blocks "
                          f"(model.depth={depth}): use block numbers 1 .. {depth}")
    return [_raw(blocks, pool, depth)]


def _raw(blocks: tuple[int, ...], pool: str, depth: int) -> Protocol:
    """A protocol of raw block outputs, named blockK (one block), lastK (the last K) or blocksA,B,..."""
    if len(blocks) == 1:
        name = f"block{blocks[0]}"
    elif blocks == tuple(range(depth - len(blocks) + 1, depth + 1)):
        name = f"last{len(blocks)}"
    else:
        name = "blocks" + ",".join(map(str, blocks))
    return Protocol(name, blocks, "raw", pool)


def needed_features(chosen: list[Protocol]) -> list[Feature]:
    """Every pooled vector the protocols use, each once, in first-use order."""
    return list(dict.fromkeys(f for p in chosen for f in p.features))


def assemble(protocol: Protocol, feats: dict[Feature, Tensor]) -> Tensor:
    """The protocol's input [N, D_p]: its pooled vectors [N, D] concatenated (the tensor itself when one)."""
    parts = [feats[f] for f in protocol.features]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def probe_summary(chosen: list[Protocol], metrics: dict[str, dict[str, Any]], dims: dict[str, int],
                  cfg: ProbeConfig, train_images: int, test_images: int) -> dict[str, Any]:
    """probe.json's accuracy fields: top-level ``top1``/``top5`` of the requested protocol (``chosen[0]``; for
    layers=all the final-normed ``last``), ``protocols`` (name -> its exact protocol and result) and, with several,
    ``best`` (the highest top-1: a choice made on the test set, so an optimistic number)."""
    head = {"optimizer": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "augment": cfg.augment, "train_images": train_images,
            "test_images": test_images}
    entries = {p.name: {**p.describe(), "dim": dims[p.name], **head, **metrics[p.name]} for p in chosen}
    main = chosen[0].name
    summary = {"top1": metrics[main]["top1"], "top5": metrics[main]["top5"], "protocol": main, "protocols": entries,
               **_reasons(metrics[main])}
    if len(chosen) > 1:
        best = max(chosen, key=lambda p: metrics[p.name]["top1"]).name
        summary["best"] = {"name": best, "top1": metrics[best]["top1"], "top5": metrics[best]["top5"],
                           "selected_on": "test set (the highest of these top-1s: optimistic, not held out)",
                           **_reasons(metrics[best])}
    return summary


def _reasons(metrics: dict[str, Any]) -> dict[str, Any]:
    """A head's ``undefined`` map (why its top-5 is null on 5 classes or fewer), to carry beside its numbers."""
    return {UNDEFINED: dict(metrics[UNDEFINED])} if metrics.get(UNDEFINED) else {}
