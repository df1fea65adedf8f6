"""The dataset's columns (all PHI-free) and its geometry: the image contract every row keeps."""

from __future__ import annotations

import json
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

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


# A volume dataset's rows: one per series, pixels depth x height x width (slices ascending along the normal).
VOLUME_STAGED_SCHEMA = pa.schema(
    [
        ("image_key", pa.string()),  # keyed pseudonym of the Series Instance UID
        ("patient_key", pa.string()),
        ("label", pa.string()),
        ("depth", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("pixels", pa.binary()),
        ("source_sha256", pa.string()),  # SHA-256 over the sorted SHA-256s of the files used
        ("pixels_sha256", pa.string()),
        ("modality", pa.string()),
        ("slices", pa.int32()),  # slices (files or frames) assembled
        ("dropped_files", pa.int32()),  # localizers and non-image objects left out
        ("spacing", pa.list_(pa.float64(), 3)),  # mm between slices, rows, columns, as acquired
        ("resampled_spacing", pa.list_(pa.float64(), 3)),  # mm per voxel after resampling (isotropic)
        ("photometric_interpretation", pa.string()),
        ("bits_stored", pa.int32()),
        ("original_height", pa.int32()),
        ("original_width", pa.int32()),
        ("transfer_syntax", pa.string()),
    ]
)

SPLIT = pa.field("split", pa.string())
SCHEMA = pa.schema(list(STAGED_SCHEMA) + [SPLIT])
VOLUME_SCHEMA = pa.schema(list(VOLUME_STAGED_SCHEMA) + [SPLIT])

GEOMETRY_KEY = "medflow.geometry"  # metadata of the pixels column in the Delta table's schema
DEFAULT_IMAGE_SIZE = 128
DEFAULT_VOLUME_SIZE = 64
MAX_VOLUME_SIZE = 256


Kind = Literal["image2d", "volume3d"]


class Geometry(BaseModel):
    """What every row of a dataset is: recorded when the table is created, checked at every ingest.
    ``image2d``: one image_size^2 uint8 image per file; ``volume3d``: one image_size^3 uint8 volume per series."""

    kind: Kind = "image2d"
    image_size: int = Field(ge=8, le=2048, description="images are image_size x image_size (volumes: cubed), uint8")
    window: tuple[float, float] | None = Field(None, description="volumes: the window (center, width in modality "
                                               "units) of every series; None: each series' own first window")

    @model_validator(mode="after")
    def volume_size(self) -> Geometry:
        if self.kind == "volume3d" and self.image_size > MAX_VOLUME_SIZE:
            raise ValueError(f"volumes are at most {MAX_VOLUME_SIZE}^3 voxels, not {self.image_size}^3")
        if self.kind != "volume3d" and self.window is not None:
            raise ValueError("a window applies to volume datasets only (ingest with --volumes)")
        return self

    @property
    def volumes(self) -> bool:
        return self.kind == "volume3d"

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's pixels as an array."""
        return (self.image_size,) * (3 if self.volumes else 2)

    def describe(self) -> str:
        size = self.image_size
        return f"{size}x{size}x{size} volumes" if self.volumes else f"{size}x{size} images"


def schema_for(kind: Kind, staged: bool = False) -> pa.Schema:
    """The columns of a dataset of this kind (``staged``: without the split, as workers make them)."""
    if kind == "volume3d":
        return VOLUME_STAGED_SCHEMA if staged else VOLUME_SCHEMA
    return STAGED_SCHEMA if staged else SCHEMA


def table_schema(geometry: Geometry) -> pa.Schema:
    """The table's schema, with the geometry in the pixels column's metadata."""
    fields = [f.with_metadata({GEOMETRY_KEY: geometry.model_dump_json()}) if f.name == "pixels" else f
              for f in schema_for(geometry.kind)]
    return pa.schema(fields)


def geometry_of(schema: pa.Schema) -> Geometry | None:
    """The geometry recorded in a table's schema (None: a dataset made before it was recorded)."""
    value = (schema.field("pixels").metadata or {}).get(GEOMETRY_KEY.encode())
    return Geometry.model_validate(json.loads(value)) if value else None
