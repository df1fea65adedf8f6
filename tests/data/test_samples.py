"""Samples: each DDP rank gets an equal, disjoint training share and every validation row once;
streamed reads of a real dataset give exactly the rows of its split, each row group read once."""

from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np
import pytest

from tasks.data import samples as samples_module
from tasks.data.samples import InMemory, Share, Streamed, bootstrap, load_split
from tests.corpora import ingested_corpus

CLASSES = ["abnormal", "normal"]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, ray_local):
    _, uri = ingested_corpus(tmp_path_factory.mktemp("samples"), n_patients=30, images_per_patient=2,
                             fractions=(0.6, 0.2, 0.2))
    return uri


def drawn(samples, share: Share, batch_size: int = 4, loader_workers: int = 0) -> tuple[list[bytes], list[int], int]:
    """Every image (as bytes) and label one loader yields, and its number of batches."""
    images, labels, batches = [], [], 0
    for x, y in samples.loader(share, batch_size, seed=3, loader_workers=loader_workers):
        batches += 1
        images += [np.rint((img[0].numpy() * 0.25 + 0.5) * 255).astype(np.uint8).tobytes() for img in x]
        labels += y.tolist()
    return images, labels, batches


def as_bytes(images: np.ndarray) -> list[bytes]:
    return [img.tobytes() for img in images]


def test_in_memory_shares_are_equal_disjoint_and_reshuffled():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (41, 8, 8), dtype=np.uint8)
    data = InMemory(images, rng.integers(0, 2, 41))
    ranks = [drawn(data, Share(epoch=0, rank=r, world=2, train=True))[0] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 20  # 41 // 2 each: equal batches for DDP
    assert not set(ranks[0]) & set(ranks[1])
    assert set(ranks[0]) | set(ranks[1]) <= set(as_bytes(images))
    assert drawn(data, Share(1, 0, 2, True))[0] != ranks[0]  # a new order every epoch
    assert drawn(data, Share(0, 0, 2, True))[0] == ranks[0]  # and the same again for the same epoch (resume)
    val = [drawn(data, Share(0, r, 3, False))[0] for r in range(3)]
    assert Counter(sum(val, [])) == Counter(as_bytes(images))  # every validation row exactly once


def test_streamed_split_equals_the_split_in_memory(ingested):
    for split in ("train", "val"):
        reference = load_split(ingested, split, CLASSES)
        streamed = Streamed(ingested, split, CLASSES, shuffle_buffer=5)
        assert len(streamed) == len(reference) > 0 and streamed.image_size == 32
        images, labels, _ = drawn(streamed, Share(epoch=0, rank=0, world=1, train=split == "train"))
        assert Counter(zip(images, labels, strict=True)) == Counter(zip(as_bytes(reference.images), reference.labels.tolist(), strict=True))
    test = Streamed(ingested, "test", CLASSES, patients=True)  # evaluation's view: table order, patient keys
    reference = load_split(ingested, "test", CLASSES)
    batches = list(test.batches(batch_size=4))
    assert {len(b) for b in batches[:-1]} == {4} and 0 < len(batches[-1]) <= 4
    assert np.array_equal(np.concatenate(batches), reference.images)
    assert list(test.patients) == list(reference.patients) and np.array_equal(test.labels, reference.labels)
    assert Streamed(ingested, "test", CLASSES).patients is None  # training does not read patient keys
    order = [drawn(Streamed(ingested, "train", CLASSES, shuffle_buffer=5), Share(0, 0, 1, True))[0] for _ in range(2)]
    assert order[0] == order[1]  # deterministic for a seed and epoch
    assert order[0] != as_bytes(load_split(ingested, "train", CLASSES).images)  # but shuffled


def test_streamed_ranks_read_equal_shares_each_row_group_once(ingested, monkeypatch):
    train = Streamed(ingested, "train", CLASSES, shuffle_buffer=8)
    assert len(train.fragments) > 3  # the dataset has several row groups to spread over ranks
    reads: list[int] = []
    real = Streamed._reader
    monkeypatch.setattr(Streamed, "_reader", lambda self, fragment: reads.append(fragment) or real(self, fragment))
    shares = []
    for rank in (0, 1):
        for workers in (0, 2):  # data loader processes split the rank's share further
            reads.clear()
            images, _, batches = drawn(train, Share(epoch=2, rank=rank, world=2, train=True), 4, workers)
            assert batches == train.steps(4, world=2, loader_workers=workers)  # what the LR schedule counts on
            if workers == 0:
                assert len(reads) == len(set(reads))  # each row group read at most once per epoch
                shares.append(images)
    assert len(shares[0]) == len(shares[1]) == len(train) // 2
    assert not Counter(shares[0]) & Counter(shares[1])  # disjoint


def test_bagging_is_a_seeded_bootstrap_of_the_split(ingested):
    plain = Streamed(ingested, "train", CLASSES)
    bagged = Streamed(ingested, "train", CLASSES, resample=partial(bootstrap, seed=1))
    assert len(bagged) == len(plain)
    assert np.array_equal(bagged.offset_of, Streamed(ingested, "train", CLASSES, resample=partial(bootstrap, seed=1)).offset_of)
    rows = set(zip(bagged.fragment_of.tolist(), bagged.offset_of.tolist(), strict=True))
    assert len(rows) < len(plain)  # some rows drawn twice, others not at all
    assert samples_module.bootstrap(10, 1).tolist() != samples_module.bootstrap(10, 2).tolist()
