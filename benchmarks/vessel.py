"""VesselMNIST3D (MedMNIST v2, ../shared/data/vesselmnist3d.npz: brain MRA, 28^3) written as MR
series (one file per slice, random file names) with medflow's own series writer; shared by the
benchmarks. Each series gets a random isotropic voxel spacing (0.3-0.8 mm) and an MR window."""

from __future__ import annotations

import os

import numpy as np

from benchmarks.pneumonia import load
from medflow import synthetic, synthetic_series

DEFAULT_VESSEL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "vesselmnist3d.npz")
VESSEL_CLASSES = ("normal", "aneurysm")  # MedMNIST names 0 "vessel": "normal" makes aneurysm the positive class


def load_volumes(path: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Volumes (N x 28 x 28 x 28), labels and official splits: the same npz layout as PneumoniaMNIST's."""
    return load(path, limit)


def write_series(root: str, volumes: np.ndarray, labels: np.ndarray, splits: list[str], seed: int = 0) -> list[list[str]]:
    """One MR series folder per volume (each its own patient), ``SPLIT/sNNNNN``; returns CSV rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (volume, label, split) in enumerate(zip(volumes, labels, splits, strict=True)):
        side = float(rng.uniform(0.3, 0.8))
        geometry = synthetic_series.SeriesGeometry(step=side, pixel_spacing=(side, side))
        datasets = synthetic_series.slice_datasets(volume.astype(np.float64) / 255.0, "MR",
                                                   synthetic.Phi.for_patient(i), geometry)
        rel = f"{split}/s{i:05d}"
        synthetic_series.write_files(os.path.join(root, rel), datasets, rng)
        rows.append([rel, VESSEL_CLASSES[int(label)], split])
    return rows
