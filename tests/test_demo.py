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
