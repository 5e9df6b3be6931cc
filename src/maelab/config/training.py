"""The config sections of a pretraining run: model, mask, optimizer, training, GAN (data and augmentation: data.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from maelab.config.checks import _choice, _positive
from maelab.errors import ConfigError
from maelab.presets import PRESETS

GAN_LOSSES = ("vanilla", "nonsat", "hinge", "lsgan")  # gan.loss: the formulas are in maelab.gan.losses
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile(mode=...)


@dataclass
class ModelConfig:
    """The MAE's architecture: a named preset, with any field overridable."""

    preset: str = "micro"  # micro | keras | vit_tiny_p4 | vit_small_p4
    img_size: Optional[int] = None
    patch_size: Optional[int] = None
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_dim: Optional[int] = None
    decoder_embed_dim: Optional[int] = None
    decoder_depth: Optional[int] = None
    decoder_num_heads: Optional[int] = None
    decoder_mlp_dim: Optional[int] = None
    norm_pix_loss: bool = False
    loss: str = "mse"  # mse | l1, on masked patches only
    registers: int = 0  # learnable register tokens in the encoder (Darcet et al. 2023); dropped from the outputs
    pos_embed_order: Optional[str] = None  # hw (maelab's) | wh (facebookresearch/mae's, HF's, timm's): presets.py
    norm_eps: Optional[float] = None  # the LayerNorms' epsilon (default 1e-6)
    # an HF ViTMAE (or ViT) folder to start pretraining from: its config.json sets the architecture (any model.*
    # size set here must agree), its model.safetensors the weights (a ViT folder: the encoder; the decoder fresh)
    init_from: Optional[str] = None

    def __post_init__(self) -> None:
        _choice("model.preset", self.preset, tuple(PRESETS))
        _choice("model.loss", self.loss, ("mse", "l1"))
        if self.pos_embed_order is not None:
            _choice("model.pos_embed_order", self.pos_embed_order, ("hw", "wh"))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool):
                _positive(f"model.{f.name}", value, allow_zero=f.name == "registers")


@dataclass
class MaskConfig:
    """How much of each image is hidden from the encoder, and how that ratio changes (docs/masking.md).

    ``constant`` uses ``ratio``; the other schedules move between ``min`` and ``max``: ``random`` draws uniformly,
    ``linear`` and ``cosine`` ramp from ``min`` at the first epoch to ``max`` at the last (progress = epoch /
    (epochs - 1), or step / (total steps - 1)), ``step`` climbs in ``steps`` equal stages from ``min`` to ``max``.
    The defaults [0, 1] are the report's range; the value is rounded to whole patches and clamped so that at least
    one patch is visible and one masked. ``per_sample`` gives every image its own ratio, uniform in [min, max].
    """

    schedule: str = "constant"  # constant | random | linear | cosine | step
    ratio: float = 0.75  # the constant schedule's ratio
    min: float = 0.0  # lower end for random | linear | cosine | step (the report: 0)
    max: float = 1.0  # upper end (the report: 1; clamped to leave one patch visible)
    steps: int = 4  # number of equal stages of the step schedule (>= 2: min ... max)
    granularity: str = "epoch"  # epoch (a new ratio every epoch, as the report) | step (every step, as MAGE)
    per_sample: bool = False  # each image its own ratio, uniform in [min, max] per step (needs schedule=random)

    def __post_init__(self) -> None:
        _choice("mask.schedule", self.schedule, ("constant", "random", "linear", "cosine", "step"))
        _choice("mask.granularity", self.granularity, ("epoch", "step"))
        for name in ("ratio", "min", "max"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"mask.{name}={value} is outside [0, 1]: use a fraction of the patches, e.g. 0.75")
        if self.min > self.max:
            raise ConfigError(f"mask.min={self.min} is larger than mask.max={self.max}: swap them")
        if self.steps < 2:
            raise ConfigError(f"mask.steps={self.steps} must be >= 2 (the stages run from mask.min to mask.max)")
        if self.per_sample and self.schedule != "random":
            raise ConfigError(
                f"mask.per_sample=true draws each image's ratio uniformly in [mask.min, mask.max], "
                f"which mask.schedule={self.schedule} does not do: set mask.schedule=random"
            )


@dataclass
class OptimConfig:
    """AdamW with per-iteration linear warm-up then cosine decay."""

    epochs: int = 100
    batch_size: int = 256
    base_lr: float = 1.5e-4  # peak lr = base_lr * batch_size / 256 (MAE's rule) ...
    lr: Optional[float] = None  # ... unless the absolute peak lr is given here
    min_lr: float = 0.0
    warmup_fraction: float = 0.05  # linear warm-up over this fraction of the run (Keras: 0.15) ...
    warmup_epochs: Optional[float] = None  # ... unless a warm-up length in epochs is given here (MAE: 40 of 800)
    weight_decay: float = 0.05  # not applied to norms, biases and the pos/cls/mask tokens
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: Optional[float] = None  # max global grad norm; None = no clipping
    # gradient accumulation (facebookresearch/mae's --accum_iter): each optimizer step sums the gradients of this
    # many micro-batches of batch_size images, the update of one batch_size x accum_steps batch (its masks and
    # augmentation drawn for that whole batch); lr, warm-up and steps per epoch follow the effective batch
    accum_steps: int = 1

    @property
    def step_batch(self) -> int:
        """Images per optimizer step on one process: accum_steps micro-batches of batch_size."""
        return self.batch_size * self.accum_steps

    def __post_init__(self) -> None:
        _positive("optim.epochs", self.epochs)
        _positive("optim.batch_size", self.batch_size)
        _positive("optim.accum_steps", self.accum_steps)
        _positive("optim.base_lr", self.base_lr)
        _positive("optim.lr", self.lr)
        _positive("optim.min_lr", self.min_lr, allow_zero=True)
        _positive("optim.warmup_epochs", self.warmup_epochs, allow_zero=True)
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"optim.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.grad_clip", self.grad_clip)
        if self.warmup_epochs is not None and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"optim.warmup_epochs={self.warmup_epochs} is not shorter than optim.epochs={self.epochs}: "
                "the run would never leave warm-up; lower it or use optim.warmup_fraction=0.15"
            )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optim.{name}={getattr(self, name)} must be in [0, 1)")


@dataclass
class TrainConfig:
    """Where and how the training runs."""

    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 on a CUDA card that has it (Ampere and later), else fp16 with a loss scaler; fp32 on the CPU
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    # torch.compile. null (auto): on CUDA the whole step replayed as CUDA graphs where the config allows it (else
    # the model's forward compiled; the run says which and why at start), eager on the CPU (inductor's C++ build
    # takes minutes there and is not faster: docs/performance.md). false: eager everywhere; true: compiled anywhere
    compile: Optional[bool] = None
    # what train.compile compiles: model (the MAE's forward, and its backward through AOT autograd) | step (the
    # whole step: augmentation, mask, forward, loss, backward, clipping and the fused AdamW update, every random
    # number drawn before it and the lr a device tensor; one process, no GAN, no accumulation: docs/performance.md).
    # null (auto): step on CUDA where the config allows it, else model
    compile_scope: Optional[str] = None
    # torch.compile's backend: inductor (the default, generated kernels), aot_eager (the same graph capture and
    # autograd tracing, eager kernels: what the CPU tests compare with eager), cudagraphs, eager
    compile_backend: str = "inductor"
    # torch.compile's mode (inductor only): default | reduce-overhead (CUDA graphs) | max-autotune |
    # max-autotune-no-cudagraphs. null (auto): reduce-overhead for the whole step on CUDA, else default
    compile_mode: Optional[str] = None
    # a file of inductor's compiled artifacts (torch.compiler.save_cache_artifacts): loaded before the first step
    # when it exists, written after the first step and when training ends; carried between machines, a warm start
    # compiles in seconds. Only for a run that compiles. null: inductor's own on-disk cache only
    compile_cache: Optional[str] = None
    # CUDA: fp32 matmuls and convolutions on the tensor cores in TF32 (10-bit mantissa; the probe, k-NN and fp32
    # runs). No effect on the CPU or on bf16/fp16 autocast
    tf32: bool = True
    # deterministic algorithms (torch.use_deterministic_algorithms; cuBLAS's fixed workspace): the same run twice
    # on the same CUDA card gives the same weights, at a cost in speed (docs/performance.md, "What is bit-exact")
    deterministic: bool = False
    seed: int = 0
    log_every: int = 20  # steps between metrics lines (and host syncs)
    threads: Optional[int] = None  # torch CPU threads; None = torch's default
    progress: bool = True  # show progress: a bar on a terminal, else a plain line at most every 30 s (maelab.progress)
    tensorboard: bool = True  # write TensorBoard events to RUN_DIR/tensorboard
    # a Weights & Biases project to log to as well (the wandb extra; WANDB_MODE=offline: no network), or None
    wandb: Optional[str] = None
    # epochs between reconstructions of fixed test images logged to TensorBoard and W&B (0: none)
    log_images_every: int = 0
    # stop (with a checkpoint) after this many epochs; resume later. A setting of one invocation: the run's
    # config.yaml and checkpoints keep null (see persisted), so a resume trains to optim.epochs unless it is given again
    stop_after_epochs: Optional[int] = None
    # epochs between checkpoints (the last epoch and a stop signal always write one); a resume after a crash
    # repeats at most save_every - 1 epochs (plus, where checkpoints were deferred, the epochs one write took). The
    # default stays 1: a checkpoint costs the training only a copy of the state to CPU memory (tens of ms for
    # 76 MB), the write runs on a thread during the next epoch, and one that comes due while the previous write
    # still runs (a GPU's sub-second epochs) is deferred to the next epoch's end instead of waited for
    save_every: int = 1
    # seconds after which an epoch's end writes a checkpoint (last.pt only) even when save_every has not come round,
    # counted from the last checkpoint or the start of the invocation; null: by epochs only
    save_every_seconds: Optional[float] = None
    # epoch checkpoints kept besides last.pt (checkpoints/epoch_0010.pt, written at the save_every cadence and
    # after the run's last epoch; evaluations take --checkpoint epoch:10): 0 = none, K = the K most recent
    # (older ones deleted once a new one is written), -1 = every one
    keep_checkpoints: int = 0
    # a step whose loss or gradients are NaN/inf: stop (the run ends naming the step; the last good checkpoint
    # is kept) | skip (the step changes no weight and no optimizer state; counted as skipped_steps in metrics)
    on_nan: str = "stop"
    max_skipped_steps: int = 10  # on_nan=skip: more consecutive skipped steps than this stop the run

    def __post_init__(self) -> None:
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _choice("train.precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _choice("train.compile_backend", self.compile_backend, ("inductor", "aot_eager", "cudagraphs", "eager"))
        if self.compile_scope is not None:
            _choice("train.compile_scope", self.compile_scope, ("model", "step"))
        if self.compile_mode is not None:
            _choice("train.compile_mode", self.compile_mode, COMPILE_MODES)
        if self.compile is False:  # a run's config from before 2026-12-07 holds the old defaults: they meant nothing
            self.compile_scope = None if self.compile_scope == "model" else self.compile_scope
            self.compile_mode = None if self.compile_mode == "default" else self.compile_mode
            for key, value in (("compile_scope", self.compile_scope), ("compile_mode", self.compile_mode)):
                if value is not None:
                    raise ConfigError(f"train.{key}={value} has no effect with train.compile=false: drop one of the "
                                      "two")
        if self.compile_mode not in (None, "default") and self.compile_backend != "inductor":
            raise ConfigError(f"train.compile_mode={self.compile_mode} is a mode of the inductor backend, not of "
                              f"train.compile_backend={self.compile_backend}: drop one of the two")
        _choice("train.on_nan", self.on_nan, ("stop", "skip"))
        _positive("train.max_skipped_steps", self.max_skipped_steps, allow_zero=True)
        _positive("train.log_every", self.log_every)
        _positive("train.threads", self.threads)
        _positive("train.stop_after_epochs", self.stop_after_epochs)
        _positive("train.save_every", self.save_every)
        _positive("train.save_every_seconds", self.save_every_seconds)
        _positive("train.log_images_every", self.log_images_every, allow_zero=True)
        if self.keep_checkpoints < -1:
            raise ConfigError(f"train.keep_checkpoints={self.keep_checkpoints} is not valid: use 0 (only last.pt), "
                              "K > 0 (the K most recent epoch checkpoints) or -1 (every one)")


@dataclass
class GanConfig:
    """The adversarial loss: the MAE decoder is the generator, a discriminator judges real vs reconstructed.

    Real = the (augmented, normalised) image; fake = the reconstruction with the visible patches pasted
    back, in the same normalised pixel space. G's loss = L_rec + λ·L_adv, λ = ``weight`` (fixed), or
    ``weight`` × ‖∇L_rec‖ / ‖∇L_adv‖ at the decoder's last layer (``adaptive``, VQGAN).
    """

    enabled: bool = False
    loss: str = "vanilla"  # vanilla (minimax) | nonsat (the report's code: BCE on "real" labels) | hinge | lsgan
    weight: float = 0.01  # λ on the adversarial term (the report's 100:1), or the factor on the adaptive λ
    adaptive: bool = False  # λ = weight * ||grad L_rec|| / ||grad L_adv|| at decoder.head.weight, clamped [0, 1e4]
    start_epoch: int = 0  # no adversarial term and no D step before this epoch
    r1: float = 0.0  # weight γ of the R1 penalty γ/2 ||grad_x D(x)||^2 on real images (0 = off)
    conditional: bool = False  # D also sees the masked input (masked patches zeroed) as 3 more channels
    width: int = 16  # D's base channels (doubled per layer, capped at 8x)
    depth: int = 3  # D's stride-2 4x4 convolutions (48 px -> 6 x 6 logits at depth 3)
    spectral_norm: bool = False  # spectral normalisation on D's convolutions
    lr: float = 2e-4  # D's Adam learning rate (constant)
    beta1: float = 0.5
    beta2: float = 0.999
    # collapse warning: D's loss below collapse_loss at collapse_steps consecutive logged steps (0 = never warn)
    collapse_loss: float = 0.01
    collapse_steps: int = 10

    def __post_init__(self) -> None:
        _choice("gan.loss", self.loss, GAN_LOSSES)
        _positive("gan.weight", self.weight, allow_zero=True)
        _positive("gan.r1", self.r1, allow_zero=True)
        _positive("gan.start_epoch", self.start_epoch, allow_zero=True)
        _positive("gan.width", self.width)
        _positive("gan.depth", self.depth)
        _positive("gan.lr", self.lr)
        _positive("gan.collapse_loss", self.collapse_loss, allow_zero=True)
        _positive("gan.collapse_steps", self.collapse_steps, allow_zero=True)
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"gan.{name}={getattr(self, name)} must be in [0, 1)")
