"""Which geometry an ingest writes, decided before anything is decoded: the dataset's own when it
exists (asking for another is a configuration error), else the one asked for, else the sources'
native size (the largest side of a few sampled files) capped at the default."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom

from tasks.core import storage
from tasks.data import dataset
from tasks.data.schema import DEFAULT_IMAGE_SIZE, DEFAULT_VOLUME_SIZE, Geometry
from tasks.ingest.labels import Item

SAMPLE = 8  # files whose headers are read to find the native size
HEADER_BYTES = 1 << 16  # enough for the header of any file that is not a sequence-heavy outlier


@dataclass(frozen=True)
class GeometryChoice:
    geometry: Geometry
    note: str = ""  # how it was chosen, when the data chose it


def largest_side(header: bytes) -> int | None:
    """max(Rows, Columns) from the start of a DICOM file, or None when they cannot be read."""
    try:
        ds = pydicom.dcmread(io.BytesIO(header), force=True, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        rows, columns = ds.get("Rows"), ds.get("Columns")
    except Exception:  # a file that is not DICOM, or cut short here: it says nothing about the size
        return None
    return max(int(rows), int(columns)) if isinstance(rows, int) and isinstance(columns, int) and rows > 0 and columns > 0 else None


def _native_size(source: str, items: list[Item], sample: int = SAMPLE) -> tuple[int, int] | None:
    """The largest side over the first ``sample`` readable items, and how many were read."""
    sizes = []
    for item in items[:sample]:
        try:
            side = largest_side(storage.read_bytes(storage.join(source, *item.path.split("/")), limit=HEADER_BYTES))
        except OSError:
            continue
        if side is not None:
            sizes.append(side)
    return (max(sizes), len(sizes)) if sizes else None


def choose(dataset_uri: str, requested: int | None, source: str, items: list[Item],
           volumes: bool | None = None, window: tuple[float, float] | None = None) -> GeometryChoice:
    """The geometry of this ingest; raises ``GeometryMismatchError`` for a size, kind or window the
    dataset does not have. ``volumes``: None follows the dataset (a new one holds images), True/False
    ask for a kind; ``window`` None: the dataset's own."""
    existing = dataset.existing_geometry(dataset_uri)
    kind = ("volume3d" if volumes else "image2d") if volumes is not None else (existing.kind if existing else "image2d")
    if window is None and existing is not None and kind == existing.kind:
        window = existing.window
    if requested is not None or existing is not None:
        wanted = Geometry(kind=kind, image_size=requested if requested is not None else existing.image_size, window=window)
        dataset.check_geometry(dataset_uri, wanted, existing)
        return GeometryChoice(wanted)
    if kind == "volume3d":
        return GeometryChoice(Geometry(kind=kind, image_size=DEFAULT_VOLUME_SIZE, window=window),
                              f"new volume dataset: {DEFAULT_VOLUME_SIZE}^3 voxels (the default); "
                              "pass --image-size to choose another")
    found = _native_size(source, items)
    if found is None:
        return GeometryChoice(Geometry(image_size=DEFAULT_IMAGE_SIZE),
                              f"new dataset: image size {DEFAULT_IMAGE_SIZE} (the default; no sampled file gave its size)")
    native, read = found
    size = max(8, min(native, DEFAULT_IMAGE_SIZE))
    capped = f", capped at {DEFAULT_IMAGE_SIZE}" if native > DEFAULT_IMAGE_SIZE else ""
    return GeometryChoice(Geometry(image_size=size),
                          f"new dataset: image size {size} from the sources (largest side {native} px in {read} sampled "
                          f"file(s){capped}); pass --image-size to choose another")
