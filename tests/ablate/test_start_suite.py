"""The suite's preamble (save it, record the invocation, plan the runs) is one function, for both ways of running."""

import pytest

from maelab.ablate import launcher, load_suite, runner
from maelab.ablate.environment import ENVIRONMENT_NAME
from tests.ablate.conftest import write_suite


class Started(Exception):
    pass


@pytest.mark.parametrize("way", ["in this process", "as submitit jobs"])
def test_both_ways_of_running_a_suite_start_it_through_start_suite(tmp_path, monkeypatch, way):
    path = write_suite(tmp_path / "suite")
    suite, out, seen = load_suite(path), tmp_path / "out", []

    def start(*args):
        seen.append(args)
        raise Started

    monkeypatch.setattr(runner, "start_suite", start)
    monkeypatch.setattr(launcher, "start_suite", start)
    with pytest.raises(Started):
        if way == "in this process":
            runner.run_suite(suite, out, "maelab ablate", log=lambda line: None)
        else:
            launcher.launch_suite(suite, path, out, launcher.ClusterOptions(local=True), "maelab ablate",
                                  log=lambda line: None)
    assert seen == [(suite, out, "maelab ablate")]


def test_start_suite_saves_the_suite_records_the_invocation_and_plans_every_run(tmp_path):
    suite, out = load_suite(write_suite(tmp_path / "suite")), tmp_path / "out"
    plans, todo = runner.start_suite(suite, out, "maelab ablate suite.yaml")
    assert len(plans) == 4 and todo == plans  # 2 variants x 2 seeds, none finished
    assert (out / runner.SUITE_NAME).is_file() and "maelab ablate suite.yaml" in (out / ENVIRONMENT_NAME).read_text()
    runner.start_suite(suite, out, None)  # a worker of a recorded invocation records nothing more
    assert (out / ENVIRONMENT_NAME).read_text().count("maelab ablate suite.yaml") == 1
