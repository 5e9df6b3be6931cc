"""Weights written by an older maelab load under today's (timm's) parameter names."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from maelab.config import load_config
from maelab.engine.checkpoint import load_checkpoint
from maelab.export import load_encoder
from maelab.masking import draw_mask
from maelab.models import build_mae, resolve_spec
from maelab.models.state_keys import upgrade_key, upgrade_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD = FIXTURES / "checkpoint_before_timm_names.pt"  # written by maelab 9d034e1: Block.mlp an nn.Sequential


@pytest.mark.parametrize("old,new", [
    ("encoder.blocks.0.mlp.0.weight", "encoder.blocks.0.mlp.fc1.weight"),
    ("decoder.blocks.3.mlp.2.bias", "decoder.blocks.3.mlp.fc2.bias"),
    ("blocks.11.mlp.0.bias", "blocks.11.mlp.fc1.bias"),  # an encoder's own state dict (exports)
    ("encoder.blocks.0.mlp.fc1.weight", "encoder.blocks.0.mlp.fc1.weight"),  # already today's: unchanged
    ("encoder.blocks.10.attn.qkv.weight", "encoder.blocks.10.attn.qkv.weight"),
])
def test_old_mlp_names_become_timms(old, new):
    assert upgrade_key(old) == new


def test_today_uses_timms_mlp_names():
    keys = set(build_mae(resolve_spec(load_config(None, []).model)).state_dict())
    assert {"encoder.blocks.0.mlp.fc1.weight", "encoder.blocks.0.mlp.fc2.bias"} <= keys
    assert not any(".mlp.0." in k or ".mlp.2." in k for k in keys)


def test_a_checkpoint_written_before_the_rename_loads_and_computes_what_it_computed_then():
    state = load_checkpoint(OLD, needs=("model", "config"))
    recorded = json.loads(OLD.with_suffix(".json").read_text())
    assert any(".mlp.0." in k for k in torch.load(OLD, weights_only=True)["model"])  # the fixture is the old naming
    model = build_mae(resolve_spec(load_config(None, [], base=state["config"]).model))
    model.load_state_dict(state["model"])  # strict: every key mapped, none left over
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, 32, 32)
    mask = draw_mask(2, 64, 0.75, generator=torch.Generator().manual_seed(0))
    assert model(imgs, mask).loss.item() == pytest.approx(recorded["loss"], rel=1e-6)


def test_a_swapped_map_would_not_compute_the_same(tmp_path):
    """The check above can fail: with fc1 and fc2 swapped the weights do not even fit."""
    state = torch.load(OLD, weights_only=True)
    swapped = {k.replace(".mlp.0.", ".mlp.fc2.").replace(".mlp.2.", ".mlp.fc1."): v for k, v in state["model"].items()}
    model = build_mae(resolve_spec(load_config(None, [], base=state["config"]).model))
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict(swapped)


def test_an_export_with_the_old_names_loads(tmp_path):
    state = load_checkpoint(OLD)
    raw = torch.load(OLD, weights_only=True)["model"]  # the old names
    old_encoder = {k.removeprefix("encoder."): v.contiguous() for k, v in raw.items() if k.startswith("encoder.")}
    save_file(old_encoder, str(tmp_path / "encoder.safetensors"))
    spec = resolve_spec(load_config(None, [], base=state["config"]).model)
    (tmp_path / "encoder.json").write_text(json.dumps({"spec": dataclasses.asdict(spec)}))
    encoder, _ = load_encoder(tmp_path / "encoder.safetensors")
    expected = upgrade_state_dict(old_encoder)
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in expected.items())
