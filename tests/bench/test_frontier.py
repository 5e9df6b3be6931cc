"""bench/frontier.py: the recipe's return on compute from the screen and the confirmations, and its figure."""

import json
import math

import frontier
import pytest


def write_inputs(tmp_path):
    screen = tmp_path / "results.jsonl"
    rows = [{"name": "keras_np", "budget_keras_epochs": 7.0, "probe_top1": 54.0},
            {"name": "keras_np_d4", "budget_keras_epochs": 7.0, "probe_top1": 56.0},
            {"name": "unfinished", "budget_keras_epochs": 7.0}]
    screen.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    confirms = []
    for seed, (default, reference) in enumerate([(58.0, 57.0), (60.0, 58.0)]):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps({"epochs": 32, "probe_default_top1": default, "probe_reference_top1": reference,
                                    "floor_probe_default_top1": 44.0}))
        confirms.append(path)
    return screen, confirms


def test_the_rate_per_doubling_is_the_slope_between_the_recipes_two_budgets(tmp_path, capsys):
    screen, confirms = write_inputs(tmp_path)
    out = frontier.main(["--screen", str(screen), "--confirm", *map(str, confirms), "--out", str(tmp_path / "f.png")])
    assert out.stat().st_size > 10_000
    screen_minutes = 7 * 50_000 / frontier.SCREEN_IMG_PER_S / 60
    recipe_minutes = 32 * 50_000 / frontier.RECIPE_IMG_PER_S / 60
    per_doubling = (59.0 - 56.0) / math.log2(recipe_minutes / screen_minutes)  # the seeds' mean, 59
    reach = recipe_minutes * 2 ** ((62.0 - 59.0) / per_doubling)
    assert f"+{per_doubling:.2f} points per doubling of compute; 62% at ~{reach:.0f} min" in capsys.readouterr().out


def test_unfinished_screen_candidates_are_left_out(tmp_path):
    screen, _ = write_inputs(tmp_path)
    assert [name for name, _, _ in frontier.screen_points(screen)] == ["keras_np", "keras_np_d4"]


def test_one_confirmation_seed_has_no_spread_not_a_std_of_0_and_the_legend_counts_the_seeds(tmp_path):
    screen, confirms = write_inputs(tmp_path)
    one = frontier.confirm_point(confirms[:1])
    assert one["probe_default_top1"] == (58.0, None) and one["seeds"] == (1, None)  # was (58.0, 0.0): a bar of 0
    assert frontier.seeds_label(1) == "1 seed, no spread" and frontier.seeds_label(2) == "2 seeds"  # was "3 seeds"
    two = frontier.confirm_point(confirms)
    assert two["probe_default_top1"] == (59.0, pytest.approx(2 ** 0.5)) and two["seeds"][0] == 2
    frontier.main(["--screen", str(screen), "--confirm", str(confirms[0]), "--out", str(tmp_path / "f.png")])


def test_confirmations_of_other_lengths_are_refused(tmp_path):
    _, confirms = write_inputs(tmp_path)
    confirms[1].write_text(confirms[1].read_text().replace('"epochs": 32', '"epochs": 16'))
    with pytest.raises(SystemExit, match="trained 16 and 32 epochs"):
        frontier.confirm_point(confirms)
