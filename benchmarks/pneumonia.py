"""PneumoniaMNIST (MedMNIST v2, ../shared/data/pneumoniamnist.npz) written as a DICOM corpus with
medflow's own corpus writer; shared by the benchmarks."""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np

from medflow import synthetic

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pneumoniamnist.npz")
CLASSES = ("normal", "pneumonia")


def load(path: str, limit: int | None, replicas: int = 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = np.load(path)
    images, labels, splits = [], [], []
    for split, name in (("train", "train"), ("val", "val"), ("test", "test")):
        images.append(data[f"{name}_images"])
        labels.append(data[f"{name}_labels"].ravel())
        splits += [split] * len(data[f"{name}_labels"])
    images, labels = np.concatenate(images), np.concatenate(labels)
    if limit:
        images, labels, splits = images[:limit], labels[:limit], splits[:limit]
    # replicas: the same pictures again as new files (new UIDs and patients), for a larger signal
    return np.concatenate([images] * replicas), np.concatenate([labels] * replicas), splits * replicas


def write_corpus(root: str, images: np.ndarray, labels: np.ndarray, splits: list[str], size: int,
                 by_split: bool = False) -> list[list[str]]:
    """One DICOM per image (each its own patient; ``by_split``: one folder per split); returns the
    CSV rows (path, label, split)."""
    encoding = "u8" if size == 28 else "u16_window"
    rows = []
    for i, (image, label, split) in enumerate(zip(images, labels, splits, strict=True)):
        pixels = image.astype(np.float32) / 255.0
        if size != pixels.shape[0]:
            pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
        ds = synthetic.encode_image(np.clip(pixels, 0, 1), encoding, synthetic.Phi.for_patient(i))
        rel = f"{split}/img{i:05d}.dcm" if by_split else f"p{i // 1000:02d}/img{i:05d}.dcm"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(synthetic.to_bytes(ds))
        rows.append([rel, CLASSES[int(label)], split])
    return rows


def write_labels(path: str, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
