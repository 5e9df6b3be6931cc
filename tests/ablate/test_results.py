import json
import math

import pytest

from maelab.ablate.results import (
    Row,
    eval_rows,
    read_results,
    training_rows,
    undefined_of,
    values_of,
    write_results,
    zero_pred_rows,
)


def write_recon(run_dir, result):
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "eval" / "recon.json").write_text(json.dumps(result))


def test_a_null_metric_becomes_an_undefined_row_with_the_reason_of_the_json(tmp_path):
    write_recon(tmp_path, {"psnr_masked": 18.5, "sharpness_ratio": None, "psnr_masked_zero_pred": None,
                           "undefined": {"sharpness_ratio": "no edges", "psnr_masked_zero_pred": "exact"}})
    rows = {r.metric: r for r in eval_rows("base", 0, tmp_path)}
    assert rows["psnr_masked"].value == 18.5 and rows["psnr_masked"].status == "done"
    assert (rows["sharpness"].value, rows["sharpness"].status, rows["sharpness"].reason) == (None, "undefined",
                                                                                             "no edges")
    (zero,) = zero_pred_rows(0, tmp_path)
    assert (zero.metric, zero.value, zero.status, zero.reason) == ("psnr_masked", None, "undefined", "exact")


def test_a_nan_in_an_older_json_is_undefined_not_a_number(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "knn.json").write_text('{"top1": NaN}')  # what json.dumps wrote before allow_nan=False
    (row,) = eval_rows("base", 0, tmp_path)
    assert (row.value, row.status, row.reason) == (None, "undefined", "not a finite number (nan)")


def test_the_final_loss_of_an_epoch_whose_every_step_was_skipped_is_undefined(tmp_path):
    records = [{"kind": "epoch", "epoch": 0, "loss": 0.5, "mask_ratio": 0.75, "seconds": 1.0},
               {"kind": "epoch", "epoch": 1, "loss": None, "mask_ratio": 0.75, "seconds": 2.0,
                "undefined": {"loss": "every step of the epoch was skipped"}}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = {r.metric: r for r in training_rows("base", 0, tmp_path)}
    assert (rows["final_loss"].value, rows["final_loss"].reason) == (None, "every step of the epoch was skipped")
    assert rows["pretrain_seconds"].value == 3.0 and rows["mask_ratio_seen"].value == 0.75


def test_results_csv_keeps_the_reason_and_refuses_a_non_finite_value(tmp_path):
    rows = [Row("base", 0, "sharpness", 0.6), Row("base", 1, "sharpness", None, "undefined", reason="no edges")]
    write_results(tmp_path / "results.csv", rows)
    back = read_results(tmp_path / "results.csv")
    assert back == rows
    assert values_of(back, "base", "sharpness") == [0.6] and undefined_of(back, "base", "sharpness") == [rows[1]]
    with pytest.raises(ValueError, match="base seed 0 sharpness = nan"):
        write_results(tmp_path / "bad.csv", [Row("base", 0, "sharpness", math.nan)])
    assert not (tmp_path / "bad.csv").exists()


def test_a_probe_of_every_block_adds_its_best_protocol_beside_the_final_layer(tmp_path):
    (tmp_path / "eval").mkdir()
    probe = {"top1": 55.0, "top5": 90.0, "protocol": "last",
             "best": {"name": "last4", "top1": 61.5, "top5": 93.0, "selected_on": "test set"}}
    (tmp_path / "eval" / "probe.json").write_text(json.dumps(probe))
    rows = {r.metric: r.value for r in eval_rows("base", 0, tmp_path)}
    assert rows == {"probe_top1": 55.0, "probe_top5": 90.0, "probe_best_top1": 61.5}
    del probe["best"]  # the final layer alone: no best column
    (tmp_path / "eval" / "probe.json").write_text(json.dumps(probe))
    assert "probe_best_top1" not in {r.metric for r in eval_rows("base", 0, tmp_path)}
