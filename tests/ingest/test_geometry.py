"""Choosing an ingest's geometry before decoding: the dataset's own, the one asked for, or the sources' size."""

from __future__ import annotations

import pytest

from medflow import synthetic
from tasks.data import dataset
from tasks.data.schema import DEFAULT_IMAGE_SIZE, Geometry
from tasks.ingest import geometry
from tasks.ingest.labels import plan
from tests.data.test_geometry import one_row


def corpus(root, size: int) -> str:
    return synthetic.write_corpus(str(root), n_patients=2, images_per_patient=2, size=size)


def test_a_new_dataset_takes_the_sources_native_size(tmp_path):
    labels = corpus(tmp_path / "src", 28)
    work = plan(str(tmp_path / "src"), labels)
    choice = geometry.choose(str(tmp_path / "ds"), None, str(tmp_path / "src"), work.items)
    assert choice.geometry == Geometry(image_size=28)
    assert "image size 28 from the sources (largest side 28 px in 4 sampled file(s))" in choice.note


def test_large_sources_are_capped_at_the_default(tmp_path):
    labels = corpus(tmp_path / "src", 200)
    work = plan(str(tmp_path / "src"), labels)
    choice = geometry.choose(str(tmp_path / "ds"), None, str(tmp_path / "src"), work.items)
    assert choice.geometry.image_size == DEFAULT_IMAGE_SIZE and f"capped at {DEFAULT_IMAGE_SIZE}" in choice.note


def test_an_existing_dataset_keeps_its_size_and_refuses_another(tmp_path):
    labels = corpus(tmp_path / "src", 28)
    work = plan(str(tmp_path / "src"), labels)
    uri = str(tmp_path / "ds")
    dataset.commit_parts(uri, [dataset.write_part(uri, one_row(48))], {}, None, Geometry(image_size=48))
    assert geometry.choose(uri, None, str(tmp_path / "src"), work.items).geometry.image_size == 48
    assert geometry.choose(uri, 48, str(tmp_path / "src"), work.items).note == ""
    with pytest.raises(dataset.GeometryMismatchError):
        geometry.choose(uri, 28, str(tmp_path / "src"), work.items)


def test_unreadable_sources_fall_back_to_the_default(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.dcm").write_bytes(b"not dicom at all")
    (tmp_path / "src" / "labels.csv").write_text("path,label\na.dcm,x\n")
    work = plan(str(tmp_path / "src"), str(tmp_path / "src" / "labels.csv"))
    assert geometry.choose(str(tmp_path / "ds"), None, str(tmp_path / "src"), work.items).geometry.image_size == DEFAULT_IMAGE_SIZE
