"""Where a training worker's images come from: one DDP rank's share of a split, batch by batch.

``InMemory`` holds uint8 arrays (tests, benchmarks, a GPU run without Ray). ``Streamed`` reads one
split of a dataset version straight from its Parquet files (local or ``s3://``), one row group at a
time through a bounded shuffle buffer, so a worker's memory does not grow with the dataset and each
rank reads only its share. Both give every rank the same number of training batches per epoch (what
DDP needs; the remainder of ``rows // world`` changes each epoch) and every validation row exactly
once across ranks. Augmentation runs where the batches are made: in the data loader's worker
processes when ``loader_workers`` > 0, off the training step's critical path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tasks.core import storage

# (image size, seed) -> a callable augmenting one uint8 image; picklable, built once per loader process
AugmenterFactory = Callable[[int, int], Callable[[np.ndarray], np.ndarray]]
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25  # fixed normalisation of 8-bit display pixels scaled to [0, 1]


def network_input(pixels: np.ndarray, mean: float = PIXEL_MEAN, std: float = PIXEL_STD) -> torch.Tensor:
    """uint8 display pixels (any shape) -> float tensor scaled to [0, 1], then standardised."""
    return (torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0) - mean) / std


def bootstrap(n: int, seed: int) -> np.ndarray:
    """Row indices of a bootstrap resample (sorted, so streamed reads stay sequential)."""
    return np.sort(np.random.default_rng(seed).integers(0, n, n))


def weighted_resample(weights: np.ndarray, seed: int) -> np.ndarray:
    """n row indices drawn with replacement in proportion to ``weights`` (sorted, as ``bootstrap``)."""
    p = np.asarray(weights, dtype=np.float64)
    return np.sort(np.random.default_rng(seed).choice(len(p), len(p), p=p / p.sum()))


def steps_per_epoch(rows: int, batch_size: int, world: int, loader_workers: int = 0) -> int:
    """Training batches per epoch on every rank: each rank's equal share, split between loader processes."""
    parts = np.array_split(np.arange(rows // world), max(loader_workers, 1))
    return sum(math.ceil(len(p) / batch_size) for p in parts)


@dataclass(frozen=True)
class Share:
    """Which rows one loader process yields: its part of its rank's share of an epoch."""

    epoch: int
    rank: int
    world: int
    train: bool  # shuffled, equal per rank, augmented; else every row once, in order


class Samples:
    """A split's rows; subclasses say how rows are ordered and read."""

    labels: np.ndarray  # class index of every row
    patients: np.ndarray | None = None  # patient key of every row, where asked for
    image_size: int
    dims: int = 2  # 2: images, 3: volumes (image_size on every axis)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.image_size,) * self.dims

    def __len__(self) -> int:
        return len(self.labels)

    def epoch_order(self, epoch: int, seed: int) -> np.ndarray:
        """All row indices in this epoch's training order."""
        raise NotImplementedError

    def images(self, rows: np.ndarray, shuffle: np.random.Generator | None) -> Iterator[tuple[np.ndarray, int]]:
        """(image, label) for ``rows``, in that order or (``shuffle`` given) locally shuffled."""
        raise NotImplementedError

    def rows_for(self, share: Share, seed: int) -> np.ndarray:
        if not share.train:
            return np.array_split(np.arange(len(self)), share.world)[share.rank]
        per_rank = len(self) // share.world
        return self.epoch_order(share.epoch, seed)[share.rank * per_rank : (share.rank + 1) * per_rank]

    def steps(self, batch_size: int, world: int, loader_workers: int = 0) -> int:
        """Training batches per epoch on every rank."""
        return steps_per_epoch(len(self), batch_size, world, loader_workers)

    def batches(self, batch_size: int = 256) -> Iterator[np.ndarray]:
        """Every row's image once, in table order, as uint8 batch_size x H x W arrays (no augmentation)."""
        batch: list[np.ndarray] = []
        for image, _ in self.images(np.arange(len(self)), None):
            batch.append(image)
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)

    def loader(self, share: Share, batch_size: int, seed: int, augment: AugmenterFactory | None = None,
               loader_workers: int = 0, pin_memory: bool = False) -> DataLoader:
        """Batches of this share; ``augment`` applies to training shares only."""
        stream = _Stream(self, share, seed, augment if share.train else None)
        return DataLoader(stream, batch_size=batch_size, num_workers=loader_workers, pin_memory=pin_memory)


class _Stream(IterableDataset):
    def __init__(self, samples: Samples, share: Share, seed: int, augment: AugmenterFactory | None) -> None:
        self.samples, self.share, self.seed, self.augment = samples, share, seed, augment

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rows = np.array_split(self.samples.rows_for(self.share, self.seed), workers)[worker]
        # one seed per (member, epoch, rank, loader worker): distinct streams, replayed exactly on resume
        entropy = [self.seed, self.share.epoch, self.share.rank, worker]
        augment = None
        if self.augment is not None:
            augment = self.augment(self.samples.image_size, int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        shuffle = np.random.default_rng(entropy) if self.share.train else None
        for image, label in self.samples.images(rows, shuffle):
            if augment is not None:
                image = augment(image)
            yield network_input(image).unsqueeze(0), label


class InMemory(Samples):
    """uint8 N x H x W images and their class indices (and optionally patient keys), in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, patients: np.ndarray | None = None) -> None:
        self.images_, self.labels, self.patients = images, np.asarray(labels, dtype=np.int64), patients
        self.image_size = int(images.shape[-1]) if len(images) else 0
        self.dims = images.ndim - 1

    def epoch_order(self, epoch: int, seed: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(len(self))

    def images(self, rows, shuffle):
        for i in rows:  # rows are already a random permutation when training
            yield self.images_[i], int(self.labels[i])


class Streamed(Samples):
    """One split of a dataset version (``split=None``: every row, labels unread, label -1), read
    from its Parquet row groups as needed.

    Only the small columns of every row are read up front (to know where the split's rows are);
    pixels are read per epoch, a row group at a time, by the ranks whose share includes it.
    """

    def __init__(self, uri: str, split: str | None, classes: list[str], version: int | None = None,
                 resample: Callable[[int], np.ndarray] | None = None, shuffle_buffer: int = 2048,
                 patients: bool = False) -> None:
        from tasks.data import dataset  # here, not at the top: InMemory runs on a GPU box without deltalake

        index = {name: i for i, name in enumerate(classes)}
        self.fragments: list[tuple[str, int]] = []  # (data file URI, row group)
        fragment_of, offset_of, labels, patient_keys = [], [], [], []
        columns = ["split"] + (["label"] if split else []) + (["patient_key"] if patients else [])
        table = dataset.open_table(uri, version)
        for file_uri in table.file_uris():
            with _open(file_uri) as f:
                parquet = pq.ParquetFile(f)
                meta, small = parquet.metadata, parquet.read(columns=columns)
            start = 0
            for group in range(meta.num_row_groups):
                n = meta.row_group(group).num_rows
                part = small.slice(start, n)
                wanted = np.arange(n) if split is None else \
                    np.flatnonzero(pc.equal(part.column("split"), split).to_numpy(zero_copy_only=False))
                if len(wanted):
                    fragment_of.append(np.full(len(wanted), len(self.fragments), np.int32))
                    offset_of.append(wanted.astype(np.int32))
                    labels += [index[v] for v in pc.take(part.column("label"), pa.array(wanted)).to_pylist()] \
                        if split else [-1] * len(wanted)  # every split's pixels, no label read
                    if patients:
                        patient_keys += pc.take(part.column("patient_key"), pa.array(wanted)).to_pylist()
                    self.fragments.append((file_uri, group))
                start += n
        geometry = dataset.table_geometry(table, uri)  # the dataset's contract, checked at ingest
        self.image_size, self.dims = geometry.image_size, len(geometry.shape)
        self.fragment_of = np.concatenate(fragment_of) if fragment_of else np.zeros(0, np.int32)
        self.offset_of = np.concatenate(offset_of) if offset_of else np.zeros(0, np.int32)
        self.labels = np.array(labels, dtype=np.int64)
        self.patients = np.array(patient_keys, dtype=object) if patients else None
        if resample is not None:  # bagging, boosting: row indices drawn from the split's n rows
            pick = resample(len(self.labels))
            self.fragment_of, self.offset_of, self.labels = self.fragment_of[pick], self.offset_of[pick], self.labels[pick]
            self.patients = self.patients[pick] if patients else None
        self.shuffle_buffer = shuffle_buffer

    def epoch_order(self, epoch: int, seed: int) -> np.ndarray:
        """Row groups in a new random order each epoch, rows grouped by row group: a rank's share
        touches few row groups, each read once."""
        rank_of_fragment = np.random.default_rng([seed, epoch]).permutation(len(self.fragments))
        return np.argsort(rank_of_fragment[self.fragment_of], kind="stable")

    def images(self, rows, shuffle):
        buffer: list[tuple[np.ndarray, int]] = []
        for fragment, group_rows in _runs(self.fragment_of[rows], rows):
            image = self._reader(fragment)
            for row in group_rows:
                item = (image(self.offset_of[row]), int(self.labels[row]))
                if shuffle is None:
                    yield item
                elif len(buffer) < self.shuffle_buffer:
                    buffer.append(item)
                else:  # emit a random buffered image, keep the new one
                    j = int(shuffle.integers(len(buffer)))
                    yield buffer[j]
                    buffer[j] = item
        if shuffle is not None:
            for j in shuffle.permutation(len(buffer)):
                yield buffer[j]

    def _reader(self, fragment: int):
        """One row group's pixels, read once; returns offset -> H x W uint8 image (a view, no copy)."""
        file_uri, group = self.fragments[fragment]
        with _open(file_uri) as f:
            data, offsets = binary_views(pq.ParquetFile(f).read_row_group(group, columns=["pixels"]).column("pixels"))
        shape = self.shape
        return lambda i: data[offsets[i] : offsets[i + 1]].reshape(shape)


def binary_views(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A binary column's bytes and offsets as numpy views: row i is ``data[offsets[i]:offsets[i + 1]]``."""
    array = column.combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset : array.offset + len(array) + 1]
    return np.frombuffer(array.buffers()[2], np.uint8), offsets


def _open(file_uri: str):
    return storage.filesystem(file_uri).open(storage.strip_protocol(file_uri), "rb")


def _runs(fragments: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Consecutive rows of the same row group, as (row group, those rows)."""
    if not len(rows):
        return
    breaks = np.flatnonzero(np.diff(fragments)) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
        yield int(fragments[start]), rows[start:stop]


@dataclass
class Split:
    """One split of a dataset version: uint8 N x H x W images (N x D x H x W volumes), class indices, patient keys."""

    images: np.ndarray
    labels: np.ndarray
    patients: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def load_split(uri: str, split: str, classes: list[str], version: int | None = None) -> Split:
    """One split of a dataset version, rows in table order."""
    from tasks.data import dataset

    opened = dataset.open_table(uri, version)
    shape = dataset.table_geometry(opened, uri).shape
    table = opened.to_pyarrow_dataset().to_table(columns=["pixels", "label", "split", "patient_key"])
    table = table.filter(pc.equal(table.column("split"), split))
    if not table.num_rows:
        return Split(np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64), np.zeros(0, dtype=object))
    data, offsets = binary_views(table.column("pixels"))
    images = data[offsets[0] : offsets[-1]].reshape(-1, *shape).copy()  # one copy out of Arrow
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[v] for v in table.column("label").to_pylist()], dtype=np.int64)
    return Split(images, labels, np.array(table.column("patient_key").to_pylist(), dtype=object))
