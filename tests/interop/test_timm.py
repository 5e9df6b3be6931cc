"""The timm export: timm's VisionTransformer names and shapes (timm cannot be installed beside maelab's CPU torch,
so the expected list is written here from timm/models/vision_transformer.py: VisionTransformer with
class_token=True, global_pool="token" (a final ``norm``, no ``fc_norm``), num_classes=0 (no ``head``), no layer
scale; Block = norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2)."""

import json

import torch
from safetensors.torch import load_file

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain
from maelab.models.vit import sincos_pos_embed
from tests.conftest import TINY


def timm_vit_shapes(depth: int, dim: int, mlp: int, patch: int, tokens: int) -> dict[str, tuple[int, ...]]:
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, tokens, dim),
              "patch_embed.proj.weight": (dim, 3, patch, patch),
              "patch_embed.proj.bias": (dim,), "norm.weight": (dim,), "norm.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim),
                       b + "attn.qkv.bias": (3 * dim,), b + "attn.proj.weight": (dim, dim),
                       b + "attn.proj.bias": (dim,),
                       b + "norm2.weight": (dim,), b + "norm2.bias": (dim,), b + "mlp.fc1.weight": (mlp, dim),
                       b + "mlp.fc1.bias": (mlp,), b + "mlp.fc2.weight": (dim, mlp), b + "mlp.fc2.bias": (dim,)})
    return shapes


def test_a_timm_export_has_timms_names_shapes_and_the_runs_positions(tmp_path):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'run'}"]))
    assert main(["export", str(run_dir), "--format", "timm"]) == 0
    tensors = load_file(str(run_dir / "export" / "timm" / "model.safetensors"))
    expected = timm_vit_shapes(depth=2, dim=64, mlp=128, patch=4, tokens=1 + 64)  # the micro preset
    assert {k: tuple(v.shape) for k, v in tensors.items()} == expected
    encoder = load_run(run_dir).model.encoder
    assert torch.equal(tensors["blocks.1.attn.qkv.weight"], encoder.blocks[1].attn.qkv.weight)
    assert torch.equal(tensors["pos_embed"][0, 1:], sincos_pos_embed(64, 8, "hw"))  # the layout it trained with
    assert not tensors["pos_embed"][0, 0].any()  # the cls token's row: zeros, as MAE's
    kwargs = json.loads((run_dir / "export" / "timm" / "maelab.json").read_text())["timm_kwargs"]
    assert kwargs == {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
                      "qkv_bias": True, "class_token": True, "global_pool": "token", "num_classes": 0}


def test_register_tokens_cannot_go_to_timm_or_hf(tmp_path, capsys):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=1", "model.registers=2", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'run'}"]))
    for fmt in ("timm", "hf"):
        assert main(["export", str(run_dir), "--format", fmt]) == 2
        assert "register tokens" in capsys.readouterr().err
