"""maelab <-> a real transformers install: exports load in ViTMAEForPreTraining / ViTModel, and a model saved by
transformers starts a maelab run, with the same features and the same loss for the same mask noise.

Tolerance: 1e-5 absolute on features of order 1 (float32; the two compute q, k, v as one GEMM or three)."""

from __future__ import annotations

import json

import pytest
import torch

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain
from maelab.engine.run import build_run
from maelab.interop.init_from import with_init_from
from maelab.masking import mask_from_noise
from maelab.models.vit import sincos_pos_embed
from tests.conftest import TINY

transformers = pytest.importorskip("transformers")
ATOL = 1e-5
IMGS = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
NOISE = torch.rand(4, 64, generator=torch.Generator().manual_seed(1))  # micro preset: 8 x 8 patches


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "run"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", "model.norm_pix_loss=true",
                                       f"out_dir={out}"]))


def hf_mask(hf_model):
    return mask_from_noise(NOISE, int(64 * (1 - hf_model.config.mask_ratio)))  # HF keeps int(L * (1 - r))


def test_an_hf_export_loads_in_vitmae_with_the_same_features_and_loss(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "hf"]) == 0
    folder = run_dir / "export" / "hf"
    assert f"wrote {folder / 'model.safetensors'}" in capsys.readouterr().out
    hf, info = transformers.ViTMAEForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched tensor
    mae = load_run(run_dir).model
    with torch.no_grad():
        hf.eval()
        mask = hf_mask(hf)
        torch.testing.assert_close(hf.vit(pixel_values=IMGS, noise=NOISE).last_hidden_state,
                                   mae.encoder(IMGS, mask.ids_keep), atol=ATOL, rtol=0)
        torch.testing.assert_close(hf(pixel_values=IMGS, noise=NOISE).loss, mae(IMGS, mask).loss, atol=ATOL, rtol=0)
    assert hf.config.norm_pix_loss and hf.config.layer_norm_eps == 1e-6


def test_an_hf_vit_export_loads_in_vitmodel_with_the_same_features(run_dir):
    main(["export", str(run_dir), "--format", "hf-vit"])
    vit, info = transformers.ViTModel.from_pretrained(run_dir / "export" / "hf-vit", add_pooling_layer=False,
                                                      output_loading_info=True)
    assert not any(info.values()), info
    processor = json.loads((run_dir / "export" / "hf-vit" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32} and len(processor["image_mean"]) == 3
    with torch.no_grad():
        torch.testing.assert_close(vit.eval()(pixel_values=IMGS).last_hidden_state,
                                   load_run(run_dir).model.encoder.forward_features(IMGS), atol=ATOL, rtol=0)


def saved_by_transformers(path, decoder=True):
    """A small ViTMAE (or ViT) saved by transformers itself, with MAE's sin-cos positions (its own code sets them:
    transformers 5 leaves a model built in code with zero positions until initialize_weights runs)."""
    torch.manual_seed(0)
    config = transformers.ViTMAEConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, decoder_hidden_size=32,
        decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64, image_size=32,
        patch_size=4)
    model = transformers.ViTMAEForPreTraining(config)
    emb = model.vit.embeddings
    emb.patch_embeddings.projection._is_hf_initialized = False
    emb.initialize_weights()
    model.decoder.initialize_weights(emb.patch_embeddings.num_patches)
    (model if decoder else model.vit).save_pretrained(path)
    return model.eval()


def started_from(folder, *overrides):
    cfg = with_init_from(load_config(None, [*TINY, f"model.init_from={folder}", *overrides]))
    return cfg, build_run(cfg, folder / "unused").model.eval()


def test_a_run_starts_from_a_vitmae_saved_by_transformers(tmp_path):
    hf = saved_by_transformers(tmp_path / "hf")
    cfg, mae = started_from(tmp_path / "hf")
    assert (cfg.model.embed_dim, cfg.model.depth, cfg.model.pos_embed_order, cfg.model.norm_eps) == (64, 2, "wh", 1e-12)
    with torch.no_grad():
        mask = hf_mask(hf)
        torch.testing.assert_close(mae.encoder(IMGS, mask.ids_keep),
                                   hf.vit(pixel_values=IMGS, noise=NOISE).last_hidden_state, atol=ATOL, rtol=0)
        torch.testing.assert_close(mae(IMGS, mask).loss, hf(pixel_values=IMGS, noise=NOISE).loss, atol=ATOL, rtol=0)


def test_transposed_positions_would_fail_the_feature_check(tmp_path):
    hf = saved_by_transformers(tmp_path / "hf")
    _, mae = started_from(tmp_path / "hf")
    mae.encoder.pos_embed.copy_(sincos_pos_embed(64, 8, "hw").unsqueeze(0))  # maelab's own layout: the transpose
    with torch.no_grad():
        diff = mae.encoder(IMGS, hf_mask(hf).ids_keep) - hf.vit(pixel_values=IMGS, noise=NOISE).last_hidden_state
    assert diff.abs().max() > 100 * ATOL


def test_a_vitmae_encoder_folder_gives_the_encoder_and_leaves_the_decoder_fresh(tmp_path):
    hf = saved_by_transformers(tmp_path / "enc", decoder=False)  # ViTMAEModel.save_pretrained: no decoder
    cfg, mae = started_from(tmp_path / "enc")
    _, other_seed = started_from(tmp_path / "enc", "train.seed=1")
    with torch.no_grad():
        mask = hf_mask(hf)
        torch.testing.assert_close(mae.encoder(IMGS, mask.ids_keep),
                                   hf.vit(pixel_values=IMGS, noise=NOISE).last_hidden_state, atol=ATOL, rtol=0)
    assert cfg.model.decoder_embed_dim is None and mae.spec.decoder_embed_dim == 32  # the micro preset's decoder
    assert torch.equal(mae.encoder.blocks[0].attn.qkv.weight, other_seed.encoder.blocks[0].attn.qkv.weight)
    assert not torch.equal(mae.decoder.embed.weight, other_seed.decoder.embed.weight)  # fresh, seeded


def test_learned_positions_are_refused_with_one_clear_message(tmp_path, capsys):
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                                    image_size=32, patch_size=4)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    code = main(["pretrain", *TINY, f"model.init_from={tmp_path / 'vit'}", f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "not 2-D sin-cos" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_pretraining_from_an_hf_folder_records_its_architecture(tmp_path):
    saved_by_transformers(tmp_path / "hf")
    code = main(["pretrain", *TINY, "optim.epochs=1", "train.tensorboard=false", f"model.init_from={tmp_path / 'hf'}",
                 f"out_dir={tmp_path / 'run'}"])
    assert code == 0
    run = load_run(tmp_path / "run")  # rebuilt from the run's own config: the folder is not needed any more
    assert (run.model.spec.pos_embed_order, run.model.spec.norm_eps, run.model.spec.decoder_embed_dim) == \
        ("wh", 1e-12, 32)


def test_a_size_set_in_the_config_must_agree_with_the_folder(tmp_path, capsys):
    saved_by_transformers(tmp_path / "hf")
    code = main(["pretrain", *TINY, "model.embed_dim=128", f"model.init_from={tmp_path / 'hf'}",
                 f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "model.embed_dim=128 (the folder's: 64)" in err


def test_an_imported_folder_is_a_run_that_probes_and_exports_back(tmp_path, capsys):
    hf = saved_by_transformers(tmp_path / "hf")
    assert main(["import", str(tmp_path / "hf"), *TINY, f"out_dir={tmp_path / 'run'}"]) == 0
    run = load_run(tmp_path / "run")
    assert run.step == 0
    in_order = torch.arange(64.0).expand(4, 64)  # noise that keeps every patch in its place
    with torch.no_grad():
        whole = transformers.ViTMAEModel.from_pretrained(tmp_path / "hf", mask_ratio=0.0).eval()
        torch.testing.assert_close(run.model.encoder.forward_features(IMGS),
                                   whole(pixel_values=IMGS, noise=in_order).last_hidden_state, atol=ATOL, rtol=0)
    assert main(["probe", str(tmp_path / "run"), "probe.epochs=1"]) == 0
    assert json.loads((tmp_path / "run" / "eval" / "probe.json").read_text())["top1"] > 0
    assert main(["export", str(tmp_path / "run"), "--format", "hf"]) == 0  # back out, positions as imported
    again = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path / "run" / "export" / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=IMGS, noise=NOISE).loss, hf(pixel_values=IMGS, noise=NOISE).loss,
                                   atol=ATOL, rtol=0)
