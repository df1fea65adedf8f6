"""Per-file and per-batch ingestion work: read, hash, decode, pseudonymise -> an Arrow batch.

Plain functions: Ray runs ``process_batch`` in parallel, tests call it directly. Identifiers are
turned into keyed pseudonyms here, inside the worker; nothing identifying is returned.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tasks.core import storage
from tasks.core.refusals import Reason, RefusedItem, Rejection
from tasks.data.schema import STAGED_SCHEMA, VOLUME_STAGED_SCHEMA
from tasks.dicom.decode import decode
from tasks.dicom.header import Limits
from tasks.dicom.source import read_source
from tasks.dicom.volume import decode_series
from tasks.ingest import deid
from tasks.ingest.labels import Item


@dataclass(frozen=True)
class RowKeys:
    """What reconciliation needs of a decoded row: its pseudonyms and digests."""

    image_key: str
    patient_key: str
    source_sha256: str
    pixels_sha256: str


@dataclass(frozen=True)
class Unchanged:
    """A planned file whose bytes are already in the dataset."""

    index: int
    source_sha256: str


@dataclass
class BatchResult:
    """What one batch returns to the driver: pixels as Arrow, small facts, refusals by item index."""

    table: pa.Table
    index: list[int] = field(default_factory=list)  # item index of each table row
    keys: list[RowKeys] = field(default_factory=list)  # one per table row
    unchanged: list[Unchanged] = field(default_factory=list)  # already in the dataset
    rejects: list[RefusedItem] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # series files left out of volumes, by kind


class KnownDigests:
    """SHA-256 hex digests already in the dataset, as one sorted fixed-width byte array: it reaches
    Ray workers without per-task unpickling of a big set, and answers by binary search."""

    def __init__(self, hex_digests: Iterable[str] = ()) -> None:
        self.digests = np.sort(np.array([h.encode() for h in hex_digests], dtype="S64"))

    def __len__(self) -> int:
        return len(self.digests)

    def __contains__(self, hex_digest: object) -> bool:
        if not isinstance(hex_digest, str) or not len(self.digests):
            return False
        value = np.bytes_(hex_digest.encode())
        i = int(np.searchsorted(self.digests, value))
        return i < len(self.digests) and self.digests[i] == value


def patient_key(key: bytes, patient_id: str, image_key: str) -> str:
    """The patient's pseudonym; without (0010,0020) Patient ID the image (series) is its own patient."""
    return deid.pseudonym(key, "patient", patient_id) if patient_id else deid.pseudonym(key, "patient-of-image", image_key)


def image_row(data: bytes, sha: str, label: str, key: bytes, image_size: int, limits: Limits) -> dict:
    """Decode one file into a dataset row (allowlisted fields only)."""
    decoded = decode(data, image_size, limits)
    ds, pixels, header = decoded.dataset, decoded.pixels, decoded.header
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    patient_id = str(ds.get("PatientID", "") or "")
    image_key = deid.pseudonym(key, "image", sop_uid or f"sha:{sha}")
    return {
        "image_key": image_key,
        "patient_key": patient_key(key, patient_id, image_key),
        "label": label,
        "height": pixels.shape[0],
        "width": pixels.shape[1],
        "pixels": pixels.tobytes(),
        "source_sha256": sha,
        "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "modality": deid.safe_modality(ds.get("Modality")),
        "photometric_interpretation": deid.safe_photometric(header.photometric),
        "bits_stored": header.bits_stored,
        "original_height": header.rows,
        "original_width": header.columns,
        "transfer_syntax": deid.safe_transfer_syntax(header.syntax),
    }


@dataclass(frozen=True)
class VolumeOptions:
    """How series become volumes: the window (center, width in modality units) instead of the series' own."""

    window: tuple[float, float] | None = None


def series_sha256(files: list[bytes]) -> str:
    """A series' identity: SHA-256 over the sorted SHA-256s of its files."""
    return hashlib.sha256("".join(sorted(hashlib.sha256(d).hexdigest() for d in files)).encode()).hexdigest()


def volume_row(files: list[bytes], sha: str, label: str, key: bytes, size: int, options: VolumeOptions,
               limits: Limits) -> tuple[dict, Counter]:
    """Assemble one series into a dataset row (allowlisted fields only), and what was left out of it."""
    decoded = decode_series(files, size, options.window, limits)
    series, pixels, voxel = decoded.series, decoded.pixels, decoded.voxel
    first = series.planes[0]
    image_key = deid.pseudonym(key, "series", series.series_uid or f"sha:{sha}")
    return {
        "image_key": image_key,
        "patient_key": patient_key(key, series.patient_id, image_key),
        "label": label,
        "depth": size, "height": size, "width": size,
        "pixels": pixels.tobytes(),
        "source_sha256": sha,
        "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "modality": deid.safe_modality(series.modality),
        "slices": len(series.planes),
        "dropped_files": sum(series.dropped.values()),
        "spacing": [float(v) for v in series.spacing],
        "resampled_spacing": [voxel] * 3,
        "photometric_interpretation": deid.safe_photometric(first.header.photometric),
        "bits_stored": first.header.bits_stored,
        "original_height": first.header.rows,
        "original_width": first.header.columns,
        "transfer_syntax": deid.safe_transfer_syntax(first.header.syntax),
    }, series.dropped


def process_batch(
    source: str,
    items: list[Item],
    known_sha: Container[str],
    key: bytes,
    image_size: int,
    limits: Limits = Limits(),
    volume: VolumeOptions | None = None,
) -> BatchResult:
    """Process files (``volume``: series) one by one; a bad one becomes a refusal, never an exception."""
    rows: list[dict] = []
    schema = STAGED_SCHEMA if volume is None else VOLUME_STAGED_SCHEMA
    result = BatchResult(table=schema.empty_table())
    for item in items:
        try:
            if volume is None:
                data = read_source(storage.join(source, *item.path.split("/")), item.size, limits)
                sha = hashlib.sha256(data).hexdigest()
            else:
                files = [read_source(storage.join(source, *path.split("/")), size, limits) for path, size in item.files]
                sha = series_sha256(files)
            if sha in known_sha:
                result.unchanged.append(Unchanged(item.index, sha))
                continue
            if volume is None:
                row = image_row(data, sha, item.label, key, image_size, limits)
            else:
                row, dropped = volume_row(files, sha, item.label, key, image_size, volume, limits)
                result.dropped.update(dropped)
            rows.append(row)
            result.index.append(item.index)
            result.keys.append(RowKeys(row["image_key"], row["patient_key"], sha, row["pixels_sha256"]))
        except Rejection as rej:
            result.rejects.append(RefusedItem(item.index, rej.reason, rej.detail))
        except Exception as exc:  # a decoder bug must not stop the run; the type name carries no PHI
            result.rejects.append(RefusedItem(item.index, Reason.INTERNAL_ERROR, type(exc).__name__))
    if rows:
        result.table = pa.Table.from_pydict({name: [row[name] for row in rows] for name in schema.names},
                                            schema=schema)  # columnar: several times faster than from_pylist
    return result
