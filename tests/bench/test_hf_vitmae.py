from dataclasses import replace

import pytest
import torch

from maelab.models import ModelSpec, build_mae
from maelab.models.flops import mae_forward_flops
from tests.models.test_flops import counted

pytest.importorskip("transformers")
from hf_vitmae import build_hf_mae, param_rows  # noqa: E402

SMALL = ModelSpec(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)


def test_hf_vitmae_has_maelabs_parameters_part_by_part():
    rows = param_rows(build_mae(SMALL), build_hf_mae(SMALL, 0.75, False, torch.device("cpu")))
    assert [name for name, _, _ in rows][-1] == "total trainable"
    assert all(ours == theirs and ours > 0 for _, ours, theirs in rows), rows


def test_hf_vitmae_does_the_reference_layouts_flops():
    hf = build_hf_mae(SMALL, 0.75, False, torch.device("cpu"))
    imgs = torch.randn(2, 3, 32, 32)
    assert counted(lambda: hf(pixel_values=imgs)) == 2 * mae_forward_flops(SMALL, 0.75, reference=True)["total"]


def test_a_different_size_shows_in_the_parameter_rows():
    other = replace(SMALL, mlp_dim=96)  # wider encoder MLP on the HF side
    rows = dict((n, (a, b)) for n, a, b in param_rows(build_mae(SMALL), build_hf_mae(other, 0.75, False,
                                                                                      torch.device("cpu"))))
    assert rows["encoder blocks"][0] != rows["encoder blocks"][1]
    assert rows["patch embed"][0] == rows["patch embed"][1]
