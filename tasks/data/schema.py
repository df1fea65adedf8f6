"""The dataset's columns (all PHI-free)."""

from __future__ import annotations

import pyarrow as pa

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
