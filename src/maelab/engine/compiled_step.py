"""``train.compile_scope=step``: the whole pretraining step under torch.compile, behind the interface of
:func:`maelab.engine.step.train_step` (chosen once, in :func:`maelab.engine.run.build_run`).

What makes the step capturable (issue 16; docs/performance.md has the figures):

- every random number of the step (the augmentation's boxes, flips and extras; the mask noise) is drawn before the
  compiled region, from the step's two generators exactly as the eager step draws them, and handed in as tensors;
- the visible-token count K is a Python int (a static shape per mask ratio). Dynamo's automatic dynamic shapes make
  K symbolic at the second distinct value, so a mask schedule over any number of ratios compiles at most twice;
- the learning rate is a 0-d tensor on the device, held by the optimizer's parameter groups and written before each
  step (``fill_``, no sync): a new lr recompiles nothing, and the fused AdamW update is captured with the rest;
- ``loss.backward()`` is traced into the graph (dynamo's ``trace_autograd_ops``), so forward, backward and gradient
  clipping are one graph. The fused AdamW update is a second graph: ``torch.optim`` itself breaks the graph around
  every ``Optimizer.step`` (its no-grad boundary, pytorch/pytorch#104053). With ``train.compile_mode=reduce-overhead``
  inductor replays each of the two as a CUDA graph.

The eager step stays the default (and the CPU's choice: inductor's C++ build takes minutes there). What the plain
step adds and this one cannot hold (the GAN, gradient accumulation, per-sample ratios, fp16's GradScaler,
``train.on_nan=skip``) is refused by the config; torchrun is refused here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import torch
import torch._dynamo.config as dynamo_config
from torch import Tensor

from maelab.data.augment import AugDraws, apply_augment, draw_augment
from maelab.engine.device import autocast, compile_options
from maelab.engine.numerics import optimizer_step
from maelab.engine.step import StepGenerators
from maelab.errors import ConfigError
from maelab.masking import mask_from_noise, mask_noise, num_visible


class CompiledStep:
    """One optimizer step as one compiled function; called as :func:`maelab.engine.step.train_step` is.

    Built after the run's checkpoint is restored: it puts its lr tensor into the optimizer's parameter groups.
    Raises ConfigError under torchrun (DDP's gradient hooks are not traced here).
    """

    def __init__(self, run: Any) -> None:
        if run.dist.enabled:
            raise ConfigError("train.compile_scope=step runs in one process: under torchrun use "
                              "train.compile_scope=model")
        self.lr = torch.zeros((), device=run.device)  # float32, as the fused AdamW kernel reads it
        for group in run.optimizer.param_groups:
            group["lr"] = self.lr
        mode = run.cfg.train.compile_mode
        self.cuda_graphs = mode in ("reduce-overhead", "max-autotune") and run.device.type == "cuda"
        self.update: Callable[..., Tensor] = torch.compile(self.eager_update, **compile_options(run.cfg.train))

    def __call__(self, run: Any, imgs_u8: Tensor, lr: float, ratio: float | Tensor, generators: StepGenerators,
                 logs: Optional[dict[str, Tensor]] = None) -> Tensor:
        """One step on a uint8 batch [B, H, W, 3] at ``lr`` and mask ``ratio`` (one float): the random numbers
        drawn here, then the compiled update. Returns the loss (0-d device tensor, no host sync); ``logs`` stays
        empty (no add-on runs under this step)."""
        spec = run.model.spec
        _, h, w, _ = imgs_u8.shape
        draws = draw_augment(len(imgs_u8), h, w, run.cfg.aug, spec.img_size, generators.augment, imgs_u8.device)
        noise = mask_noise(len(imgs_u8), spec.num_patches, imgs_u8.device, generators.mask)
        keep = num_visible(spec.num_patches, float(ratio))
        self.lr.fill_(lr)
        run.updater.zero_grad()
        if self.cuda_graphs:  # a new iteration: the last step's graph outputs (read by now) may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with dynamo_config.patch(trace_autograd_ops=True):
            loss = self.update(run, imgs_u8, draws, noise, keep)
        run.nan.add(loss, None, run.step)  # train.on_nan=stop (skip is refused): remembered, checked at a sync
        return loss

    @staticmethod
    def eager_update(run: Any, imgs_u8: Tensor, draws: Optional[AugDraws], noise: Tensor,
                     keep: int) -> Tensor:
        """What is compiled: augment with ``draws``, normalise, mask with ``noise`` [B, L] keeping ``keep``
        patches, forward and loss (in autocast), backward, clip and step. Returns the loss (0-d, detached)."""
        imgs = run.normalize(apply_augment(imgs_u8, draws, run.cfg.aug, run.model.spec.img_size))
        mask = mask_from_noise(noise, keep)
        with autocast(run.device, run.precision):
            loss, _ = run.forward(imgs, mask)
        value = loss.detach()  # the graph must not return a tensor whose backward it consumed
        loss.backward()
        optimizer_step(run.optimizer, None, run.updater.params, run.updater.grad_clip)
        return value
