"""A run folder pinned to one dataset version and config: prepared once, resumed with the same settings only."""

from __future__ import annotations

import pytest

from tasks.core import storage
from tasks.model import runs
from tasks.model.config import EnsembleConfig
from tasks.model.folders import RunFolder
from tests.corpora import ingested_corpus


def test_prepare_pins_the_version_records_lineage_and_refuses_other_settings(tmp_path, ray_local):
    _, uri = ingested_corpus(tmp_path, n_patients=6, images_per_patient=2, fractions=(0.5, 0.25, 0.25))
    config = EnsembleConfig(members=2)
    run = str(tmp_path / "run")
    info = runs.prepare(run, uri, None, config, "flow-run-1")
    assert (info.version, info.classes, info.image_size) == (0, ["abnormal", "normal"], 32)
    lineage = storage.read_json(RunFolder(run).lineage)
    assert lineage["prefect_flow_run_id"] == "flow-run-1"
    assert info.split_sizes == lineage["split_sizes"] and sum(info.split_sizes.values()) == 12
    assert storage.read_json(RunFolder(run).config) == config.model_dump(mode="json")
    assert runs.prepare(run, uri, 0, config, "flow-run-2") == info  # the same settings resume
    with pytest.raises(runs.RunMismatchError, match="use a new --run"):
        runs.prepare(run, uri, None, EnsembleConfig(members=3), None)
    loaded = runs.load(run)
    assert loaded.info == info and loaded.config == config and loaded.lineage == lineage


def test_a_run_that_was_never_prepared_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `medflow train` first"):
        runs.load(str(tmp_path / "nothing"))
