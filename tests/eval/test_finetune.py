import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maelab.config import FinetuneConfig, ModelConfig
from maelab.eval.finetune import Classifier, layer_id, mix_batch, param_groups_lrd
from maelab.models import resolve_spec


def test_layer_ids_and_decay_scales():
    spec = resolve_spec(ModelConfig(preset="micro"))  # depth 2
    model = Classifier(spec, 10)
    assert layer_id("encoder.cls_token", 2) == 0
    assert layer_id("encoder.patch_embed.proj.weight", 2) == 0
    assert layer_id("encoder.blocks.1.attn.qkv.weight", 2) == 2
    assert layer_id("head.weight", 2) == 3
    groups = param_groups_lrd(model, 0.05, 0.5, 2)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert scale[id(model.head.weight)] == 1.0
    assert scale[id(model.encoder.blocks[0].mlp.fc1.weight)] == 0.25
    assert scale[id(model.encoder.patch_embed.proj.weight)] == 0.125
    assert decay[id(model.head.bias)] == 0.0 and decay[id(model.head.weight)] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_keeps_soft_targets_consistent(kind):
    imgs = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    targets = F.one_hot(torch.tensor([0, 1]), 2).float()
    cfg = FinetuneConfig(**{kind: 1.0})
    mixed, soft = mix_batch(imgs, targets, cfg, np.random.default_rng(0))
    assert torch.allclose(soft.sum(1), torch.ones(2))
    # the weight of class 1 in sample 0 equals the fraction of sample 1's pixels (value 1) in it
    assert soft[0, 1].item() == pytest.approx(mixed[0].mean().item(), abs=1e-6)
    assert 0 < soft[0, 1].item() < 1


def test_no_mixing_when_off():
    imgs, targets = torch.rand(2, 3, 8, 8), torch.eye(2)
    out, soft = mix_batch(imgs, targets, FinetuneConfig(), np.random.default_rng(0))
    assert out is imgs and soft is targets


def test_classifier_takes_an_encoder_with_registers():
    from maelab.models import build_mae

    spec = resolve_spec(ModelConfig(preset="micro", registers=2))
    mae = build_mae(spec)
    model = Classifier(spec, 10)
    model.encoder.load_state_dict(mae.encoder.state_dict())  # strict: the registers are there too
    assert layer_id("encoder.registers", 2) == 0
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
