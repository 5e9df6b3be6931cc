from maelab.eval.table import format_table, recon_cells


def test_the_demo_table_shows_an_undefined_value_as_a_dash_and_says_why():
    recon = {"psnr_masked": None, "ssim_full": 0.512, "psnr_masked_zero_pred": 12.0, "ssim_full_zero_pred": 0.3,
             "undefined": {"psnr_masked": "40 of 40 images are reconstructed exactly"}}
    notes: list[str] = []
    rows = {"pretrained": {"probe top-1 %": 41.5, **recon_cells(recon, "", "pretrained", notes)},
            "zero prediction": recon_cells(recon, "_zero_pred", "zero prediction", notes)}
    assert rows["pretrained"]["PSNR masked dB"] is None
    assert notes == ["pretrained, PSNR masked dB: – (40 of 40 images are reconstructed exactly)"]
    lines = format_table(rows, notes).splitlines()
    assert lines[1].split() == ["pretrained", "41.50", "–", "0.51"]
    assert lines[2].split() == ["zero", "prediction", "–", "12.00", "0.30"]  # no probe for zeros: "–" too
    assert lines[3] == notes[0]


def test_without_cifar10_the_demo_falls_back_to_the_synthetic_set_at_sizes_it_holds(tmp_path, monkeypatch, capsys):
    from maelab.data import load_dataset
    from maelab.demo import demo_config

    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
    cfg = demo_config([f"data.root={tmp_path / 'nothing'}", "optim.epochs=1"])
    assert "uses the synthetic set instead" in capsys.readouterr().out
    assert (cfg.data.name, cfg.data.limit_train, cfg.optim.epochs) == ("synthetic", None, 1)
    data = load_dataset(cfg.data, cfg.train.seed)  # the demo's 20,000-image limit would be refused here
    assert len(data.x_train) == cfg.data.synthetic_train
