"""Supervised fine-tuning of the encoder with a linear head (and the from-scratch baseline), MAE's recipe:
AdamW, layer-wise lr decay, drop path, label smoothing, mixup/cutmix, warm-up + cosine per step."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maelab.config import AugConfig, FinetuneConfig
from maelab.data import Dataset, epoch_batches, steps_per_epoch
from maelab.engine.device import autocast
from maelab.engine.distributed import Dist
from maelab.eval.features import pool_tokens, prepare
from maelab.eval.metrics import accuracies
from maelab.models.cpu import kernels_for, use_kernels
from maelab.models.cpu.choice import Choice, encoder_workload
from maelab.models.vit import ViTEncoder
from maelab.presets import ModelSpec
from maelab.schedules import LRSchedule
from maelab.seeds import derive_seed, numpy_rng


class Classifier(nn.Module):
    """ViT encoder + pooling + (LayerNorm for mean pooling) + linear head: imgs [N, 3, H, W] -> logits [N, C]."""

    def __init__(self, spec: ModelSpec, num_classes: int, pool: str = "mean", drop_path: float = 0.0,
                 kernels: Optional[Choice] = None) -> None:
        super().__init__()
        self.pool = pool
        self.encoder = use_kernels(ViTEncoder.from_spec(spec, drop_path), kernels)  # the CPU's fast paths, if any
        self.fc_norm = nn.LayerNorm(spec.embed_dim, eps=1e-6) if pool == "mean" else nn.Identity()
        self.head = nn.Linear(spec.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, imgs: Tensor) -> Tensor:
        return self.head(self.fc_norm(pool_tokens(self.encoder.forward_features(imgs), self.pool)))


def layer_id(name: str, depth: int) -> int:
    """Depth index of a parameter for layer-wise lr decay: embeddings 0, block i -> i + 1, the rest depth + 1."""
    if name.startswith(("encoder.cls_token", "encoder.registers", "encoder.pos_embed", "encoder.patch_embed")):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def param_groups_lrd(model: Classifier, weight_decay: float, layer_decay: float, depth: int) -> list[dict]:
    """AdamW groups with lr scale layer_decay ** (depth + 1 - layer); no decay on norms, biases, tokens."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        no_decay = param.ndim <= 1 or name.endswith(("cls_token", "registers", "pos_embed"))
        lid = layer_id(name, depth)
        key = (lid, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                           "lr_scale": layer_decay ** (depth + 1 - lid)}
        groups[key]["params"].append(param)
    return list(groups.values())


def mix_batch(imgs: Tensor, targets: Tensor, cfg: FinetuneConfig, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Mixup or cutmix with the batch reversed: imgs [N, 3, H, W], soft targets [N, C] -> mixed."""
    choices = [name for name, alpha in (("mixup", cfg.mixup), ("cutmix", cfg.cutmix)) if alpha > 0]
    if not choices:
        return imgs, targets
    kind = choices[int(rng.integers(len(choices)))]
    lam = float(rng.beta(getattr(cfg, kind), getattr(cfg, kind)))
    other = imgs.flip(0)
    if kind == "mixup":
        imgs = lam * imgs + (1 - lam) * other
    else:
        h, w = imgs.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        imgs = imgs.clone()
        imgs[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return imgs, lam * targets + (1 - lam) * targets.flip(0)


def finetune_optimizer(model: Classifier, cfg: FinetuneConfig, depth: int, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups_lrd` (fused on CUDA and the CPU); the lr is set every step."""
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    groups = param_groups_lrd(model, cfg.weight_decay, cfg.layer_decay, depth)
    return torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999), **fused)


def classifier_step(model: nn.Module, opt: torch.optim.Optimizer, imgs: Tensor, targets: Tensor, lr: float,
                    cfg: FinetuneConfig, device: torch.device, precision: str = "fp32") -> Tensor:
    """One optimizer step on a prepared batch: imgs [N, 3, H, W] (normalised, mixed), soft targets [N, C].

    ``model`` is the :class:`Classifier` or its DistributedDataParallel wrapper. Each group's lr is ``lr``
    times its layer-decay scale. Returns the loss as a detached device tensor.
    """
    for group in opt.param_groups:
        group["lr"] = lr * group["lr_scale"]
    with autocast(device, precision):
        logits = model(imgs)
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.detach()


@torch.no_grad()
def evaluate_classifier(model: Classifier, data: Dataset, img_size: int, batch_size: int = 500) -> dict[str, Any]:
    """Top-1 / top-5 (%) on the test set, centre (un-augmented) images, and how many (``test_images``: one image is
    100 / test_images points); top-5 is null with its reason on 5 classes or fewer (:func:`accuracies`)."""
    model.eval()
    device = next(model.parameters()).device  # memory-mapped test images stay on the CPU: moved a batch at a time
    scores = torch.cat([
        model(prepare(data.x_test[i:i + batch_size].to(device), img_size, data.mean, data.std)).float()
        for i in range(0, len(data.x_test), batch_size)
    ])
    return {**accuracies(scores, data.y_test), "test_images": len(data.y_test)}


def finetune(spec: ModelSpec, encoder_state: Optional[dict], data: Dataset, cfg: FinetuneConfig,
             base_aug: AugConfig, seed: int, device: torch.device, precision: str = "fp32",
             log: Optional[Callable[[dict], None]] = None, dist: Optional[Dist] = None) -> dict[str, Any]:
    """Train encoder + head with labels; ``encoder_state`` None trains from scratch. Returns test metrics.

    Under torchrun (``dist``) the classifier trains in DistributedDataParallel on each rank's shard of the
    global batch (finetune.batch_size per rank; the lr follows the global batch); rank 0 evaluates and every
    rank returns its metrics. Mixup/cutmix pair images within a rank's shard.
    """
    dist = dist or Dist()
    torch.manual_seed(seed)
    model = Classifier(spec, data.num_classes, cfg.pool, cfg.drop_path,
                       kernels_for(device, precision, encoder_workload(spec, cfg.batch_size, training=True)))
    if encoder_state is not None:
        model.encoder.load_state_dict(encoder_state)
    model.to(device)
    opt = finetune_optimizer(model, cfg, spec.depth, device)
    net = dist.wrap(model)
    aug = dataclasses.replace(base_aug, preset=cfg.aug)
    spe = steps_per_epoch(len(data.x_train), cfg.batch_size, dist.world_size, key="finetune.batch_size")
    lr_at = LRSchedule.for_finetuning(cfg, spe, dist.world_size)
    gen = torch.Generator(device=device)
    step, start = 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        # the epoch's indices moved to the data's device in one copy: no host-to-device copy per step
        for idx in epoch_batches(len(data.x_train), cfg.batch_size, seed, epoch, dist.rank, dist.world_size,
                                 data.x_train.device):
            gen.manual_seed(derive_seed(seed, "finetune-augment", step))
            rng = numpy_rng(seed, "finetune-mix", step)
            imgs = prepare(data.x_train[idx].to(device, non_blocking=True), spec.img_size, data.mean, data.std, aug,
                           gen, dist.shard)
            targets = F.one_hot(data.y_train[idx], data.num_classes).float()
            imgs, targets = mix_batch(imgs, targets, cfg, rng)
            lr = lr_at(step)
            loss = classifier_step(net, opt, imgs, targets, lr, cfg, device, precision)
            step += 1
        if log is not None:
            log({"epoch": epoch, "step": step, "loss": float(dist.mean(loss.detach()).item()), "lr": lr})
    result = dist.main_only(evaluate_classifier, model, data, spec.img_size)
    result.update({"epochs": cfg.epochs, "steps": step, "seconds": time.perf_counter() - start})
    return result
