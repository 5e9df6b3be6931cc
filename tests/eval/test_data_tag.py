"""Which results are tagged by their data: a data.* override that changes the images evaluated gives a tag naming
it; one that only says where or how the same images are read gives none."""

import json

import pytest

from maelab.config import DataConfig, load_config
from maelab.engine.pretrain import pretrain
from maelab.eval.commands import run_knn
from maelab.eval.data_tag import data_tag, join_tags
from tests.conftest import TINY


@pytest.mark.parametrize("trained_with,evaluated_with,tag", [
    ({}, {}, None),
    ({}, {"limit_test": 1000}, "test1000"),
    ({"limit_test": 1000}, {}, "testall"),
    ({}, {"limit_train": 5000, "limit_test": 1000}, "train5000-test1000"),
    ({}, {"cache_dir": "/elsewhere", "download": False, "max_memory_gib": 0.0}, None),  # the same images
    ({}, {"root": "/another/copy"}, None),  # CIFAR-10 is the official set wherever it is found
    ({"name": "synthetic"}, {"name": "synthetic", "synthetic_test": 100}, "synth_test100"),
    ({"name": "synthetic"}, {"name": "synthetic", "image_size": 48}, None),  # read by image folders only
    ({"name": "folder", "root": "/a/photos"}, {"name": "folder", "root": "/a/photos", "image_size": 48}, "48px"),
])
def test_a_data_override_is_tagged_when_it_changes_the_images_evaluated(trained_with, evaluated_with, tag):
    assert data_tag(DataConfig(**trained_with), DataConfig(**evaluated_with)) == tag


def test_another_folder_or_source_is_named_with_a_hash_that_keeps_namesakes_apart():
    own = DataConfig(name="folder", root="/data/a/photos")
    one, two = (data_tag(own, DataConfig(name="folder", root=f"/data/{d}/photos")) for d in ("b", "c"))
    assert one.startswith("photos-") and two.startswith("photos-") and one != two
    assert data_tag(DataConfig(), DataConfig(name="folder", root="/x/My Photos", limit_test=50)).startswith(
        "folder-My_Photos-test50-")
    assert data_tag(None, DataConfig(limit_test=5)) is None  # unknown training data: no tag


def test_tags_join_with_at():
    assert join_tags("epoch_0010", "test1000") == "epoch_0010@test1000"
    assert join_tags(None, "test1000") == "test1000" and join_tags(None, None) is None


def test_an_ablation_writes_its_suite_s_evaluation_data_untagged(tmp_path):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'run'}"]))
    path, result = run_knn(run_dir, ["data.limit_test=20"], tag_data=False)
    assert path == run_dir / "eval" / "knn.json" and result["data"]["tag"] == "test20"
    assert json.loads(path.read_text())["test_images"] == 20
