"""The HF name mapping without transformers: a round trip, transformers 5's names, the position layouts."""

import pytest
import torch

from maelab.errors import UserError
from maelab.interop.hf import from_hf, hub_names, pos_embed_order_of, to_hf, with_cls_row
from maelab.models import PRESETS, build_mae
from maelab.models.vit import sincos_pos_embed

SPEC = PRESETS["micro"]


def test_maelabs_weights_go_to_hub_names_and_come_back_unchanged():
    state = build_mae(SPEC).state_dict()
    hub = to_hf(state, SPEC, "vit.", decoder=True)
    assert "vit.encoder.layer.1.attention.attention.value.bias" in hub
    assert "decoder.decoder_layers.0.output.dense.weight" in hub
    back = from_hf(hub, SPEC, "vit.", decoder=True)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_the_qkv_projection_splits_into_query_key_value_in_that_order():
    state = build_mae(SPEC).state_dict()
    hub = to_hf(state, SPEC, "", decoder=False)
    q, k, v = state["encoder.blocks.0.attn.qkv.weight"].chunk(3)
    assert torch.equal(hub["encoder.layer.0.attention.attention.query.weight"], q)
    assert torch.equal(hub["encoder.layer.0.attention.attention.value.weight"], v)
    assert not torch.equal(q, k)


def test_transformers_5_module_names_read_as_the_hubs():
    names = ["vit.layers.3.attention.q_proj.weight", "vit.layers.3.attention.o_proj.bias",
             "vit.layers.0.mlp.fc1.weight",
             "decoder.decoder_encoder.layer.1.mlp.fc2.bias", "decoder.decoder_layers.1.attention.k_proj.weight",
             "layers.2.layernorm_before.weight", "vit.embeddings.cls_token"]
    assert list(hub_names(dict.fromkeys(names))) == [
        "vit.encoder.layer.3.attention.attention.query.weight", "vit.encoder.layer.3.attention.output.dense.bias",
        "vit.encoder.layer.0.intermediate.dense.weight", "decoder.decoder_layers.1.output.dense.bias",
        "decoder.decoder_layers.1.attention.attention.key.weight", "encoder.layer.2.layernorm_before.weight",
        "vit.embeddings.cls_token"]


def test_the_two_position_layouts_are_told_apart_and_anything_else_refused():
    assert pos_embed_order_of(with_cls_row(sincos_pos_embed(64, 8, "wh")), 8, "here") == "wh"
    assert pos_embed_order_of(with_cls_row(sincos_pos_embed(64, 8, "hw")), 8, "here") == "hw"
    with pytest.raises(UserError, match="all zeros"):
        pos_embed_order_of(torch.zeros(1, 65, 64), 8, "here")
    with pytest.raises(UserError, match="not 2-D sin-cos"):
        pos_embed_order_of(torch.randn(1, 65, 64), 8, "here")


def test_the_wh_layout_is_the_hw_layout_with_its_halves_swapped():
    hw, wh = sincos_pos_embed(64, 8, "hw"), sincos_pos_embed(64, 8, "wh")
    assert torch.equal(wh, torch.cat([hw[:, 32:], hw[:, :32]], dim=1)) and not torch.equal(hw, wh)
    # patch (row 0, column 1) under hw encodes what patch (row 1, column 0) does under wh: a transpose
    assert torch.equal(hw[1], wh[8])
