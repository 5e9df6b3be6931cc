"""``train.compile_scope=step``: the whole pretraining step under torch.compile, behind the interface of
:func:`maelab.engine.step.train_step` (chosen once, in :func:`maelab.engine.pretrain.step_function`).

What makes the step capturable (issue 16; docs/performance.md has the figures):

- every random number of the step (the augmentation's boxes, flips and extras; the mask noise) is drawn before the
  compiled region, from the step's two generators exactly as the eager step draws them, and handed in as tensors;
- the visible-token count K is the length of a tensor handed in, symbolic from the first call under a mask
  schedule (a constant ratio keeps it a static size, the kernels specialised to it). Without CUDA graphs it is
  unbacked (``mark_unbacked``: never specialised to 0 or 1), so a schedule over any ratios in [0, 1] compiles the
  step once. Inductor does not replay a graph with unbacked sizes as a CUDA graph, so under CUDA graphs K is a
  backed symbol compiled size-obliviously (``backed_size_oblivious``): once for K in [2, L - 1], and once more
  for K = 1 if the schedule reaches it (ratios above 1 - 1.5 / L: a reshape in the backward guards on it); inductor
  records one CUDA graph per distinct K it meets;
- the learning rate is a 0-d tensor on the device, held by the optimizer's parameter groups and written before each
  step (``fill_``, no sync): a new lr recompiles nothing, and the fused AdamW update is captured with the rest;
- ``loss.backward()`` is traced into the graph (dynamo's ``trace_autograd_ops``), so augmentation through the
  backward is one graph. ``torch.optim`` breaks the graph around every ``Optimizer.step`` (its no-grad boundary,
  pytorch/pytorch#104053): clipping and the optimizer's bookkeeping are a second graph, and the fused AdamW kernel
  runs as it is (dynamo does not trace into torch's fused optimizers), one launch per parameter group. With
  ``train.compile_mode=reduce-overhead`` inductor replays the graphs as CUDA graphs.

On CUDA this is the default wherever the config allows it, replayed as CUDA graphs (``maelab.engine.compile_plan``);
the CPU trains eager (inductor's C++ build takes minutes there and is not faster). What the plain step adds and this
one cannot hold (the GAN, gradient accumulation, per-sample ratios, fp16's GradScaler, ``train.on_nan=skip``) is
refused by the config when asked for, and makes the default fall back to the model's compile; so do torchrun and
any add-on the run builds (:mod:`maelab.addons`: the compile plan is made again with their names).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional

import torch
import torch._dynamo.config as dynamo_config
import torch.fx.experimental._config as fx_config
from torch import Tensor

from maelab.data.augment import apply_augment
from maelab.data.augment_draws import AugUniforms, augment_from, draw_uniforms
from maelab.engine.step import StepGenerators
from maelab.masking import MaskRatio, mask_from_noise, mask_noise, round_ratio
from maelab.precision import autocast
from maelab.update_paths import plain_update, with_grads


class CompiledStep:
    """One optimizer step as one compiled function; called as :func:`maelab.engine.step.train_step` is.

    Built after the run's checkpoint is restored: it puts its lr tensor into the optimizer's parameter groups.
    The run's compile plan (``run.compile``) has checked that it can run here: one process, a torch that traces it.
    """

    def __init__(self, run: Any) -> None:
        self.lr = torch.zeros((), device=run.device)  # float32, as the fused AdamW kernel reads it
        for group in run.optimizer.param_groups:
            group["lr"] = self.lr
        self.cuda_graphs = run.compile.cuda_graphs
        # K's carrier: views [:K] of one buffer (the values are never read), their length symbolic under a schedule:
        # "unbacked", or "backed" under CUDA graphs (which inductor does not record with unbacked sizes)
        num_patches = run.model.spec.num_patches
        self.sizes = torch.zeros(num_patches, device=run.device)
        self.k_size = None if run.cfg.mask.schedule == "constant" else "backed" if self.cuda_graphs else "unbacked"
        self.unbacked = unbacked_options(num_patches) if self.k_size == "unbacked" else {}
        self.update: Callable[..., Tensor] = torch.compile(self.eager_update, **run.compile.options())

    def __call__(self, run: Any, imgs_u8: Tensor, lr: float, ratio: MaskRatio | float, generators: StepGenerators,
                 logs: Optional[dict[str, Tensor]] = None) -> Tensor:
        """One step on a uint8 batch [B, H, W, 3] at ``lr`` and mask ``ratio`` (one ratio, rounded or not): the
        random numbers drawn here, then the compiled update. Returns the loss (0-d device tensor, no host sync);
        ``logs`` stays empty (no add-on runs under this step)."""
        spec = run.model.spec
        _, h, w, _ = imgs_u8.shape
        # the random numbers only (4-6 launches); the boxes, flips and extras they make are computed in the graph
        draws = draw_uniforms(len(imgs_u8), run.cfg.aug, spec.img_size, generators.augment, imgs_u8.device)
        noise = mask_noise(len(imgs_u8), spec.num_patches, imgs_u8.device, generators.mask)
        self.lr.fill_(lr)
        run.updater.zero_grad()
        if self.cuda_graphs:  # a new iteration: the last step's graph outputs (read by now) may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        visible = self.visible(round_ratio(spec.num_patches, ratio).visible)
        oblivious = self.k_size == "backed"
        with dynamo_config.patch(trace_autograd_ops=True), fx_config.patch(backed_size_oblivious=oblivious):
            loss = self.update(run, imgs_u8, draws, noise, visible)
        return loss  # train.on_nan=stop (skip is refused): the loop checks the loss where it reads it

    def visible(self, keep: int) -> Tensor:
        """A tensor of length ``keep``: under a mask schedule its length is traced as a symbol (no recompile for a
        new K), under a constant ratio as the constant it is."""
        carrier = self.sizes[:keep]
        if self.k_size == "unbacked":
            torch._dynamo.decorators.mark_unbacked(carrier, 0, **self.unbacked)
        elif self.k_size == "backed":
            torch._dynamo.mark_dynamic(carrier, 0)
        return carrier

    @staticmethod
    def eager_update(run: Any, imgs_u8: Tensor, draws: Optional[AugUniforms], noise: Tensor,
                     visible: Tensor) -> Tensor:
        """What is compiled: augment with ``draws``, normalise, mask with ``noise`` [B, L] keeping ``len(visible)``
        patches, forward and loss (in autocast), backward, clip and step. Returns the loss (0-d, detached)."""
        _, h, w, _ = imgs_u8.shape
        size, aug = run.model.spec.img_size, run.cfg.aug
        params = None if draws is None else augment_from(draws, h, w, aug, size)
        imgs = run.normalize(apply_augment(imgs_u8, params, aug, size))
        mask = mask_from_noise(noise, visible.shape[0])
        with autocast(run.device, run.precision):
            loss, _ = run.forward(imgs, mask)
        value = loss.detach()  # the graph must not return a tensor whose backward it consumed
        loss.backward()
        # train.on_nan=stop without a scaler (the config refuses the rest): the eager path minus the gradients' watch
        plain_update(run.optimizer, None, with_grads(run.updater.params), run.updater.grad_clip)
        return value


def unbacked_options(num_patches: int) -> dict[str, int]:
    """``mark_unbacked``'s keyword arguments for K, where the installed torch takes them: K's range [1, L - 1], and
    a size hint for inductor's autotuning (L // 4, MAE's 75% masking) in place of its default of 8192."""
    wanted = {"min": 1, "max": num_patches - 1, "hint_override": max(num_patches // 4, 1)}
    accepted = inspect.signature(torch._dynamo.decorators.mark_unbacked).parameters
    return {k: v for k, v in wanted.items() if k in accepted}
