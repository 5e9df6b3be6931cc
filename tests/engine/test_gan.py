import copy

import pytest
import torch

from maelab.config import GAN_LOSSES, load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain, resume
from maelab.engine.run import build_run, checkpoint_state, restore
from maelab.engine.step import step_generators, train_step
from maelab.errors import ConfigError
from maelab.gan.losses import g_loss
from maelab.gan.phases import adversarial_term, discriminator_step, frozen, masked_input
from maelab.gan.state import CollapseWatch
from maelab.masking import draw_mask
from maelab.models.patches import patchify

GAN_KEYS = {"d_loss", "g_adv", "gan_weight", "d_real", "d_fake"}


def make_run(tmp_path, tiny, *overrides):
    cfg = load_config(None, [*tiny, "train.tensorboard=false", "gan.width=4", "gan.depth=2", *overrides])
    return build_run(cfg, tmp_path)


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def forward(run, seed=0):
    """The engine's G-phase inputs: (imgs, rec loss, fake, mask) for the first batch."""
    gen = torch.Generator().manual_seed(seed)
    imgs = run.data.x_train[:16].permute(0, 3, 1, 2).float() / 255
    imgs = run.normalize(imgs)
    mask = draw_mask(len(imgs), run.model.spec.num_patches, 0.75, generator=gen)
    loss, pred = run.model(imgs, mask)
    return imgs, loss, run.model.reconstruct(imgs, pred, mask), mask.binary


def step(run, logs=None):
    loss = train_step(run, run.data.x_train[:64], 1e-3, 0.75, step_generators(0, run.step), logs)
    run.step += 1
    return loss


def test_generator_step_leaves_d_unchanged(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "gan.adaptive=true")
    d_before, g_before = params(run.addon("gan").disc), params(run.model)
    imgs, loss, fake, _ = forward(run)
    with frozen(run.addon("gan").disc):
        assert not any(p.requires_grad for p in run.addon("gan").disc.parameters())
        term, logs = adversarial_term(run.addon("gan"), fake, None, loss, run.model.decoder.head.weight)
        objective = loss + term
        objective.backward()
    assert all(p.requires_grad for p in run.addon("gan").disc.parameters())
    assert all(p.grad is None for p in run.addon("gan").disc.parameters())
    for group in run.optimizer.param_groups:
        group["lr"] = 1e-3
    run.optimizer.step()
    assert same(d_before, params(run.addon("gan").disc))
    assert not same(g_before, params(run.model))
    assert set(logs) == {"g_adv", "gan_weight"} and all(not v.requires_grad for v in logs.values())


def test_discriminator_step_leaves_the_mae_unchanged(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "gan.r1=1.0")
    imgs, _, fake, _ = forward(run)
    d_before, g_before = params(run.addon("gan").disc), params(run.model)
    with pytest.raises(ValueError, match="fake.detach"):
        discriminator_step(run.addon("gan"), imgs, fake, None)
    _, logs = discriminator_step(run.addon("gan"), imgs, fake.detach(), None)
    assert same(g_before, params(run.model))
    assert all(p.grad is None for p in run.model.parameters())
    assert not same(d_before, params(run.addon("gan").disc))
    assert set(logs) == GAN_KEYS - {"g_adv", "gan_weight"} | {"r1"}


def test_d_step_logs_mean_logits_and_its_loss(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "gan.loss=hinge")
    imgs, _, fake, _ = forward(run)
    with torch.no_grad():
        real_logits, fake_logits = run.addon("gan").disc(imgs), run.addon("gan").disc(fake)
    total, logs = discriminator_step(run.addon("gan"), imgs, fake.detach(), None)
    assert torch.allclose(logs["d_real"], real_logits.mean(), atol=1e-6)
    assert torch.allclose(logs["d_fake"], fake_logits.mean(), atol=1e-6)
    expected = 0.5 * (torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean())
    assert torch.allclose(logs["d_loss"], expected, atol=1e-6) and torch.equal(total, logs["d_loss"])


def test_fixed_weight_is_the_configured_lambda(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "gan.weight=0.25")
    _, loss, fake, _ = forward(run)
    with frozen(run.addon("gan").disc):
        term, logs = adversarial_term(run.addon("gan"), fake, None, loss, run.model.decoder.head.weight)
        objective = loss + term
    assert logs["gan_weight"].item() == 0.25
    assert torch.equal(objective, loss + 0.25 * logs["g_adv"])
    assert logs["g_adv"].item() != 0


def test_adaptive_weight_is_the_gradient_ratio_at_the_decoder_head(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "gan.adaptive=true", "gan.weight=0.5")
    head = run.model.decoder.head.weight
    _, loss, fake, _ = forward(run)
    with frozen(run.addon("gan").disc):
        term, logs = adversarial_term(run.addon("gan"), fake, None, loss, head)
        objective = loss + term
        adv = g_loss("vanilla", run.addon("gan").disc(fake))
    g_rec = torch.autograd.grad(loss, head, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, head, retain_graph=True)[0]
    weight = logs["gan_weight"]
    assert weight.item() == pytest.approx(0.5 * (g_rec.norm() / (g_adv.norm() + 1e-4)).item(), rel=1e-5)
    assert weight.item() != pytest.approx(0.5, rel=0.1)
    assert torch.equal(logs["g_adv"], adv.detach())
    # the generator's gradient at the head is g_rec + λ g_adv, λ held constant
    assert torch.allclose(torch.autograd.grad(objective, head)[0], g_rec + weight * g_adv, atol=1e-7)


def test_start_epoch_gates_the_adversarial_term_and_the_d_step(tmp_path, tiny):
    plain = make_run(tmp_path / "p", tiny)
    gated = make_run(tmp_path / "g", tiny, "gan.enabled=true", "gan.start_epoch=1")
    assert plain.addon("gan") is None and gated.addon("gan") is not None
    d_before = params(gated.addon("gan").disc)
    logs = {}
    assert torch.equal(step(plain), step(gated, logs))
    assert logs == {}
    assert same(params(plain.model), params(gated.model))  # G's loss was the reconstruction loss exactly
    assert same(d_before, params(gated.addon("gan").disc))  # and D did not step
    gated.step = gated.steps_per_epoch  # epoch 1
    step(gated, logs)
    assert set(logs) == GAN_KEYS
    assert not same(d_before, params(gated.addon("gan").disc))


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_every_loss_trains_both_networks(tmp_path, tiny, kind):
    run = make_run(tmp_path, tiny, "gan.enabled=true", f"gan.loss={kind}", "gan.conditional=true",
                   "gan.spectral_norm=true")
    d_before, g_before = params(run.addon("gan").disc), params(run.model)
    logs = {}
    loss = step(run, logs)
    assert torch.isfinite(loss) and set(logs) == GAN_KEYS
    assert all(torch.isfinite(v) for v in logs.values())
    assert not same(d_before, params(run.addon("gan").disc)) and not same(g_before, params(run.model))


def test_the_adversarial_term_changes_the_mae_update(tmp_path, tiny):
    plain = make_run(tmp_path / "p", tiny)
    gan = make_run(tmp_path / "g", tiny, "gan.enabled=true", "gan.weight=1.0")
    assert torch.equal(step(plain), step(gan))  # same reconstruction loss before the updates ...
    assert not same(params(plain.model), params(gan.model))  # ... but another gradient


def test_masked_input_zeroes_the_masked_patches():
    imgs = torch.randn(2, 3, 8, 8)
    mask = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0]])
    out = patchify(masked_input(imgs, mask, 4), 4)
    ref = patchify(imgs, 4)
    assert torch.equal(out[0, 0], torch.zeros(48)) and torch.equal(out[0, 3], torch.zeros(48))
    assert torch.equal(out[0, 1:3], ref[0, 1:3]) and torch.equal(out[1], ref[1])


def test_conditional_d_reads_six_channels(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "gan.conditional=true")
    assert run.addon("gan").disc.net[0].in_channels == 6


def test_d_has_its_own_adam(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true")
    opt = run.addon("gan").optimizer
    assert type(opt) is torch.optim.Adam and opt is not run.optimizer
    assert opt.param_groups[0]["lr"] == 2e-4 and opt.param_groups[0]["betas"] == (0.5, 0.999)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in run.addon("gan").disc.parameters()}
    assert not {id(p) for p in run.addon("gan").disc.parameters()} & {id(p) for g in run.optimizer.param_groups
                                                              for p in g["params"]}


def test_gan_off_builds_no_discriminator(tmp_path, tiny):
    run_dir = pretrain(load_config(None, [*tiny, "optim.epochs=1", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'off'}"]))
    state = load_checkpoint(checkpoint_path(run_dir))
    assert "gan" not in state
    assert not any("disc" in k for k in state["model"])
    assert not any(k in m for m in read_metrics(run_dir) for k in GAN_KEYS)


def test_a_short_run_with_the_gan_logs_and_trains_d(tmp_path, tiny):
    args = [*tiny, "optim.epochs=2", "train.tensorboard=false", "gan.enabled=true", "gan.width=4", "gan.depth=2",
            f"out_dir={tmp_path / 'on'}"]
    run_dir = pretrain(load_config(None, args))
    records = read_metrics(run_dir)
    assert {r["kind"] for r in records} == {"step", "epoch"}
    assert all(GAN_KEYS <= set(r) for r in records)
    state = load_checkpoint(checkpoint_path(run_dir))
    assert set(state["gan"]) == {"disc", "optimizer"}  # fp32: no scaler
    fresh = build_run(load_config(None, args[:-1]), tmp_path / "fresh").addon("gan").disc.state_dict()
    assert not all(torch.equal(fresh[k], state["gan"]["disc"][k]) for k in fresh)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]


def test_resume_with_the_gan_is_bit_exact(tmp_path, tiny):
    common = [*tiny, "optim.epochs=2", "train.tensorboard=false", "gan.enabled=true", "gan.width=4", "gan.depth=2",
              "gan.adaptive=true", "gan.r1=0.1"]
    straight = pretrain(load_config(None, [*common, f"out_dir={tmp_path / 'straight'}"]))
    split = pretrain(load_config(None, [*common, "train.stop_after_epochs=1", f"out_dir={tmp_path / 'split'}"]))
    resume(split, ["train.stop_after_epochs=null"])
    a, b = load_checkpoint(checkpoint_path(straight)), load_checkpoint(checkpoint_path(split))
    for part in (a["model"], a["gan"]["disc"]):
        other = b["model"] if part is a["model"] else b["gan"]["disc"]
        assert part.keys() == other.keys() and all(torch.equal(part[k], other[k]) for k in part)
    for sa, sb in zip(a["gan"]["optimizer"]["state"].values(), b["gan"]["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    metrics = lambda d: [(m["loss"], m["d_loss"], m["gan_weight"]) for m in read_metrics(d)  # noqa: E731
                         if m["kind"] == "epoch"]
    assert metrics(straight) == metrics(split)


def test_fp16_gives_d_its_own_scaler_and_checkpoints_it(tmp_path, tiny):
    run = make_run(tmp_path, tiny, "gan.enabled=true", "train.precision=fp16", "gan.adaptive=true")
    assert run.addon("gan").scaler is not None and run.addon("gan").scaler is not run.scaler
    logs = {}
    loss = train_step(run, run.data.x_train[:16], 1e-3, 0.75, step_generators(0, 0), logs)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in logs.values())
    assert logs["gan_weight"].item() > 0  # the scaled adaptive weight did not underflow
    run.addon("gan").scaler.update(1234.0)
    state = copy.deepcopy(checkpoint_state(run))
    assert state["gan"]["scaler"]["scale"] == 1234.0
    fresh = make_run(tmp_path / "fresh", tiny, "gan.enabled=true", "train.precision=fp16", "gan.adaptive=true")
    restore(fresh, state)
    assert fresh.addon("gan").scaler.get_scale() == 1234.0


@pytest.mark.parametrize(("override", "message"), [
    ("gan.loss=wgan", "gan.loss='wgan' is not valid: use one of vanilla, nonsat, hinge, lsgan"),
    ("gan.weight=-0.1", "gan.weight=-0.1 is not valid: it must be >= 0"),
    ("gan.r1=-1", "gan.r1=-1.0 is not valid"),
    ("gan.lr=0", "gan.lr=0.0 is not valid: it must be > 0"),
    ("gan.start_epoch=-1", "gan.start_epoch=-1 is not valid"),
    ("gan.depth=0", "gan.depth=0 is not valid"),
    ("gan.beta1=1.0", r"gan.beta1=1.0 must be in \[0, 1\)"),
])
def test_bad_gan_config_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_collapse_watch_warns_once_after_k_consecutive_low_d_losses(capsys):
    watch = CollapseWatch(threshold=0.01, patience=3)
    d_losses = [0.5, 0.001, 0.002, 0.3, 0.001, 0.001, 0.001, 0.001, 0.0]  # the streak of 3 ends at the 7th record
    fired = [i for i, d in enumerate(d_losses) if watch.update({"step": i, "d_loss": d}) == {"gan_collapse": 1}]
    assert fired == [6]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maelab: warning: the discriminator's loss stayed below")
    assert watch.update({"step": 9}) == {}  # D off: nothing to read
    assert not any(CollapseWatch(0.01, 0).update({"d_loss": 0.0}) for _ in range(5))  # collapse_steps=0: never


@pytest.mark.parametrize("forced", [True, False])
def test_a_forced_collapse_is_warned_about_and_a_healthy_run_is_not(tmp_path, tiny, capsys, forced):
    # forced: D at lr 0.05 against a generator that ignores it (weight 0) wins outright within a few steps
    extra = ["gan.weight=0", "gan.lr=0.05", "gan.collapse_loss=0.1", "optim.epochs=3"] if forced else []
    cfg = load_config(None, [*tiny, "optim.epochs=2", "train.log_every=1", "train.tensorboard=false",
                             "gan.enabled=true", "gan.width=4", "gan.depth=2", "gan.collapse_steps=3",
                             f"out_dir={tmp_path / 'run'}", *extra])
    records = [m for m in read_metrics(pretrain(cfg)) if m["kind"] == "step"]
    warned = [m["step"] for m in records if m.get("gan_collapse")]
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "discriminator's loss stayed below" in ln]
    if forced:
        low = [m["step"] for m in records if m["d_loss"] < 0.1]
        assert len(warned) == 1 and len(warnings) == 1 and f"(step {warned[0]})" in warnings[0]
        assert low[:3] == [warned[0] - 2, warned[0] - 1, warned[0]]  # the 3rd low loss in a row
    else:
        assert min(m["d_loss"] for m in records) > 0.1
        assert warned == [] and warnings == []
