"""The dataset's columns (all PHI-free) and its geometry: the image contract every row keeps."""

from __future__ import annotations

import json
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field

# Columns each worker produces; the driver adds ``split`` when it publishes the version.
STAGED_SCHEMA = pa.schema(
    [
        ("image_key", pa.string()),
        ("patient_key", pa.string()),
        ("label", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("pixels", pa.binary()),
        ("source_sha256", pa.string()),
        ("pixels_sha256", pa.string()),
        ("modality", pa.string()),
        ("photometric_interpretation", pa.string()),
        ("bits_stored", pa.int32()),
        ("original_height", pa.int32()),
        ("original_width", pa.int32()),
        ("transfer_syntax", pa.string()),
    ]
)


SCHEMA = pa.schema(list(STAGED_SCHEMA) + [pa.field("split", pa.string())])

GEOMETRY_KEY = "medflow.geometry"  # metadata of the pixels column in the Delta table's schema
DEFAULT_IMAGE_SIZE = 128


class Geometry(BaseModel):
    """What every image of a dataset is: recorded when the table is created, checked at every ingest."""

    kind: Literal["image2d"] = "image2d"
    image_size: int = Field(ge=8, le=2048, description="images are image_size x image_size, uint8, letterboxed")


def table_schema(geometry: Geometry) -> pa.Schema:
    """The table's schema, with the geometry in the pixels column's metadata."""
    fields = [f.with_metadata({GEOMETRY_KEY: geometry.model_dump_json()}) if f.name == "pixels" else f for f in SCHEMA]
    return pa.schema(fields)


def geometry_of(schema: pa.Schema) -> Geometry | None:
    """The geometry recorded in a table's schema (None: a dataset made before it was recorded)."""
    value = (schema.field("pixels").metadata or {}).get(GEOMETRY_KEY.encode())
    return Geometry.model_validate(json.loads(value)) if value else None
