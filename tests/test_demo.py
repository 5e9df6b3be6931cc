from maelab.demo import format_table, recon_cells


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


def fake_evaluations(monkeypatch):
    from maelab.eval import commands

    recon = {"psnr_masked": 20.0, "ssim_full": 0.5, "psnr_masked_zero_pred": 18.0, "ssim_full_zero_pred": 0.3}
    monkeypatch.setattr(commands, "run_probe", lambda *a, **k: (None, {"top1": 41.0}))
    monkeypatch.setattr(commands, "run_knn", lambda *a, **k: (None, {"top1": 33.0}))
    monkeypatch.setattr(commands, "run_recon", lambda *a, **k: (None, recon))


def test_the_demo_evaluation_shows_its_progress_a_line_per_evaluation_in_a_log(tmp_path, monkeypatch, capsys):
    from maelab.demo import evaluate

    fake_evaluations(monkeypatch)
    rows, _ = evaluate(tmp_path)
    lines = capsys.readouterr().err.splitlines()  # captured: not a terminal
    assert [line.split(",")[0] for line in lines] == [f"demo evaluation: {i}/6 evaluations ({100 * i / 6:.0f}%)"
                                                      for i in range(1, 7)]
    assert "stage=knn, random init" in lines[4] and "\r" not in "".join(lines)
    assert rows["random init"]["k-NN top-1 %"] == 33.0


def test_the_demo_evaluation_is_silent_with_progress_off(tmp_path, monkeypatch, capsys):
    from maelab.demo import evaluate

    fake_evaluations(monkeypatch)
    evaluate(tmp_path, progress=False)
    assert capsys.readouterr().err == ""
