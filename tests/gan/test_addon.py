"""The GAN as an add-on of maelab.addons, without the engine: its factory, its name and tensors, its torchrun hook
and the shape check of its restore."""

import pytest
import torch

from maelab.addons import AddOnContext, build_addons
from maelab.config import load_config, persisted, to_dict
from maelab.errors import ConfigError, UserError
from maelab.gan.addon import from_config
from maelab.gan.phases import discriminator_step
from maelab.presets import resolve_spec

CPU = torch.device("cpu")
SMALL = ["model.preset=micro", "gan.width=4", "gan.depth=2"]


def context(cfg, average_grads=None):
    return AddOnContext(resolve_spec(cfg.model), CPU, "fp32", average_grads)


def test_the_factory_builds_the_gan_only_when_enabled():
    off = load_config(None, SMALL)
    assert from_config(off, context(off)) is None and build_addons(off, context(off)) == []
    on = load_config(None, [*SMALL, "gan.enabled=true"])
    (gan,) = build_addons(on, context(on))
    assert gan.name == "gan" and gan.disc.net[0].in_channels == 3
    assert set(gan.named_tensors()) == {f"disc.{k}" for k in gan.disc.state_dict()}


@pytest.mark.parametrize("start,epochs,refused", [(3, 3, True), (5, 3, True), (2, 3, False)])
def test_a_gan_that_would_start_after_the_last_epoch_is_refused_when_the_config_is_read(start, epochs, refused):
    overrides = [*SMALL, "gan.enabled=true", f"gan.start_epoch={start}", f"optim.epochs={epochs}"]
    if not refused:
        cfg = load_config(None, overrides)
        assert from_config(cfg, context(cfg)) is not None  # epoch 2 of 0..2: the last one trains with D
        return
    with pytest.raises(ConfigError, match=f"gan.start_epoch={start} is after the last epoch \\(epoch {epochs - 1} of"):
        load_config(None, overrides)  # before a run folder, the data or the CPU kernels' timing
    load_config(None, [*overrides, "gan.enabled=false"])  # a start epoch of a GAN that is off is no conflict


def test_under_torchrun_the_d_step_averages_ds_gradients_through_the_context():
    cfg = load_config(None, [*SMALL, "gan.enabled=true"])
    averaged = []
    gan = from_config(cfg, context(cfg, averaged.append))
    imgs = torch.randn(4, 3, 32, 32)
    discriminator_step(gan, imgs, imgs.flip(0), None)
    assert averaged == [gan.disc]  # once, before D's update
    assert from_config(cfg, context(cfg)).sync_grads is None  # one process: nothing to average


def test_its_restore_refuses_a_d_the_changed_settings_no_longer_fit():
    saved = load_config(None, [*SMALL, "gan.enabled=true", "gan.width=8"])
    state = from_config(saved, context(saved)).state_dict()
    saved_config = to_dict(persisted(saved))
    now = load_config(None, [*SMALL, "gan.enabled=true"])
    with pytest.raises(UserError, match=r"the discriminator saved in runs/x's checkpoint does not fit .* "
                                        r"\(gan.width 8 -> 4\): net.0.weight \[8, 3, 4, 4\]"):
        from_config(now, context(now)).load_state_dict(state, saved_config, "runs/x's checkpoint")
    again = from_config(saved, context(saved))
    again.load_state_dict(state, saved_config, "runs/x's checkpoint")
    assert all(torch.equal(v, state["disc"][k]) for k, v in again.disc.state_dict().items())
