"""The dataset owns its image contract: recorded in the table's schema at creation, checked on append."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tasks.data import dataset
from tasks.data.schema import SCHEMA, Geometry, geometry_of, table_schema


def one_row(size: int) -> pa.Table:
    values = {name: [0] for name in SCHEMA.names}
    values.update({name: ["x"] for name, kind in zip(SCHEMA.names, SCHEMA.types, strict=True) if kind == pa.string()})
    values.update(height=[size], width=[size], pixels=[bytes(size * size)], split=["train"])
    return pa.Table.from_pydict(values, schema=SCHEMA)


def test_schema_metadata_round_trips():
    assert geometry_of(table_schema(Geometry(image_size=28))) == Geometry(image_size=28)
    assert geometry_of(SCHEMA) is None


def test_geometry_is_recorded_at_creation_and_checked_on_every_append(tmp_path):
    uri = str(tmp_path / "ds")
    assert dataset.existing_geometry(uri) is None
    dataset.commit_parts(uri, [dataset.write_part(uri, one_row(28))], {}, None, Geometry(image_size=28))
    assert dataset.geometry(uri) == Geometry(image_size=28)
    dataset.commit_parts(uri, [dataset.write_part(uri, one_row(28))], {}, 0, Geometry(image_size=28))
    assert dataset.latest_version(uri) == 1 and dataset.geometry(uri, 0) == dataset.geometry(uri, 1)
    with pytest.raises(dataset.GeometryMismatchError, match="stores 28x28 images; --image-size 64"):
        dataset.commit_parts(uri, [dataset.write_part(uri, one_row(64))], {}, 1, Geometry(image_size=64))
    assert dataset.latest_version(uri) == 1  # nothing was committed
    dataset.check_geometry(uri, Geometry(image_size=28))  # the same geometry passes
