"""Ingest benchmark: `medflow ingest` beside the fastest plain single-process decode loop.

Writes PneumoniaMNIST (../shared/data/pneumoniamnist.npz) as two DICOM corpora with medflow's own
corpus writer — 8-bit 28x28, and 16-bit 128x128 with rescale + window — then measures, in one run:
  * marginal throughput: ingest the full corpus and half of it; extra files / extra seconds
  * fixed start-up cost: what remains of the half run once its files are paid for
  * an unchanged rerun's marginal cost, as a fraction of the first run's
The plain loop is dcmread + pixel_array + modality LUT + VOI/window + resize, one process.

``--volumes``: VesselMNIST3D (../shared/data/vesselmnist3d.npz) written as MR series (28 slices each,
one file per slice), ``medflow ingest --volumes --image-size 28`` against a plain loop that reads
every slice, sorts by position along the normal, applies the LUTs, stacks and resamples; the same
three figures, in series per second.

Usage: python benchmarks/ingest.py [--data PATH] [--limit N] [--corpus 128|28|both] [--replicas 4] [--repeats 3]
       python benchmarks/ingest.py --volumes [--vessel-data PATH] [--limit N] [--replicas 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import pydicom
import pydicom.config
from pydicom.pixels import apply_modality_lut, apply_voi_lut

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.pneumonia import DEFAULT_DATA, load, write_corpus, write_labels  # noqa: E402
from benchmarks.vessel import DEFAULT_VESSEL, load_volumes, write_series  # noqa: E402


def plain_loop(root: str, rows: list[list[str]], size: int) -> float:
    """Seconds for the simplest correct single-process decode of these files (pydicom's value
    validation off, as in medflow)."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    start = time.perf_counter()
    for rel, _, _ in rows:
        ds = pydicom.dcmread(os.path.join(root, rel))
        values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
        low, high = float(values.min()), float(values.max())
        image = np.clip((values - low) * (255.0 / max(high - low, 1e-9)), 0, 255).astype(np.uint8)
        cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return time.perf_counter() - start


def plain_series_loop(root: str, rows: list[list[str]], size: int) -> float:
    """Seconds for the simplest correct single-process assembly of these series: dcmread every slice,
    sort by position along the normal, LUTs, stack, resample to size^3."""
    from scipy.ndimage import zoom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    start = time.perf_counter()
    for rel, _, _ in rows:
        folder = os.path.join(root, rel)
        slices = [pydicom.dcmread(os.path.join(folder, name)) for name in os.listdir(folder)]
        normal = np.cross(*np.reshape(np.array(slices[0].ImageOrientationPatient, float), (2, 3)))
        slices.sort(key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, float), normal)))
        values = np.stack([apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds) for ds in slices])
        low, high = float(values.min()), float(values.max())
        volume = np.clip((values - low) * (255.0 / max(high - low, 1e-9)), 0, 255).astype(np.uint8)
        zoom(volume, [size / n for n in volume.shape], order=1)
    return time.perf_counter() - start


def medflow_ingest(root: str, labels: str, dataset: str, rejects: str, size: int, *extra: str) -> float:
    """Wall seconds of the real CLI (fresh process: Prefect, Ray, decode, publish)."""
    medflow = os.path.join(os.path.dirname(sys.executable), "medflow")
    start = time.perf_counter()
    subprocess.run([medflow, "ingest", root, "--labels", labels, "--dataset", dataset, "--rejects", rejects,
                    "--image-size", str(size), *extra], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench(work: str, images, labels, splits, size: int, repeats: int, volumes: bool = False) -> dict:
    root = os.path.join(work, f"corpus{size}")
    t0 = time.perf_counter()
    rows = write_series(root, images, labels, splits) if volumes else write_corpus(root, images, labels, splits, size)
    print(f"[{size}px] wrote {len(rows)} {'series' if volumes else 'DICOM files'} in {time.perf_counter() - t0:.1f}s", flush=True)
    plain_loop_of = plain_series_loop if volumes else plain_loop
    extra = ("--volumes",) if volumes else ()
    half = rows[: len(rows) // 2]
    full_csv, half_csv = os.path.join(work, f"full{size}.csv"), os.path.join(work, f"half{size}.csv")
    write_labels(full_csv, rows)
    write_labels(half_csv, half)
    n_full, n_half = len(rows), len(half)
    plain_half = plain_loop_of(root, half, size)  # also warms the page cache for both
    plain_full = plain_loop_of(root, rows, size)
    write_labels(os.path.join(work, "warm.csv"), rows[:10])  # first start creates Prefect's database
    medflow_ingest(root, os.path.join(work, "warm.csv"), os.path.join(work, f"warm{size}"), os.path.join(work, "w.csv"),
                   size, *extra)
    times: dict[str, list[float]] = {"half": [], "full": [], "half_rerun": [], "full_rerun": []}
    for rep in range(repeats):  # interleaved, so drifts in machine load hit both sizes alike
        for name, csv_path in (("half", half_csv), ("full", full_csv)):
            ds = os.path.join(work, f"ds{size}-{name}-{rep}")
            rj = os.path.join(work, f"rejects{size}-{name}.csv")
            times[name].append(medflow_ingest(root, csv_path, ds, rj, size, *extra))
            times[name + "_rerun"].append(medflow_ingest(root, csv_path, ds, rj, size, *extra))
    res = {name: statistics.median(values) for name, values in times.items()}
    print(f"[{size}px] runs (s): " + ", ".join(f"{k}={[round(v, 2) for v in vs]}" for k, vs in times.items()), flush=True)
    extra = n_full - n_half
    plain_rate = extra / (plain_full - plain_half)
    ingest_marginal = res["full"] - res["half"]
    rate = extra / ingest_marginal
    rerun_marginal = res["full_rerun"] - res["half_rerun"]
    return {
        "size": size, "files": n_full, "unit": "series" if volumes else "files",
        "plain_half_s": plain_half, "plain_full_s": plain_full, "plain_rate": plain_rate,
        "ingest_half_s": res["half"], "ingest_full_s": res["full"], "ingest_rate": rate,
        "ratio": rate / plain_rate,
        "fixed_s": res["half"] - n_half / rate,
        "rerun_half_s": res["half_rerun"], "rerun_full_s": res["full_rerun"],
        "rerun_fraction": rerun_marginal / ingest_marginal,
    }


def report(r: dict) -> None:
    unit = r["unit"]
    print(f"\n=== {r['size']}px corpus, {r['files']} {unit} (half: {r['files'] // 2}); medians ===")
    print(f"{'':34}{'half':>10}{'full':>10}{'marginal ' + unit + '/s':>20}")
    print(f"{'plain single-process loop':34}{r['plain_half_s']:>9.2f}s{r['plain_full_s']:>9.2f}s{r['plain_rate']:>20.0f}")
    print(f"{'medflow ingest (CLI, fresh)':34}{r['ingest_half_s']:>9.2f}s{r['ingest_full_s']:>9.2f}s{r['ingest_rate']:>20.0f}")
    print(f"{'medflow ingest, unchanged rerun':34}{r['rerun_half_s']:>9.2f}s{r['rerun_full_s']:>9.2f}s")
    targets = ("", "", "") if unit == "series" else ("   (target >= 1.8x on 2 cores)", "   (target <= 15 s)", "   (target <= 10%)")
    print(f"marginal throughput ratio medflow/plain: {r['ratio']:.2f}x{targets[0]}")
    print(f"fixed start-up cost: {r['fixed_s']:.1f}s{targets[1]}")
    print(f"unchanged rerun marginal cost: {100 * r['rerun_fraction']:.1f}% of the first run's{targets[2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--corpus", choices=["128", "28", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration; medians are reported")
    parser.add_argument("--volumes", action="store_true", help="VesselMNIST3D as MR series, ingested with --volumes")
    parser.add_argument("--vessel-data", default=DEFAULT_VESSEL)
    parser.add_argument("--replicas", type=int, default=None,
                        help="write the data set this many times over, so the timed difference dwarfs run-to-run noise")
    args = parser.parse_args()
    os.environ.setdefault("MEDFLOW_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.volumes:
        volumes, labels, splits = load_volumes(args.vessel_data, args.limit)
        replicas = args.replicas or 2
        images, labels, splits = np.concatenate([volumes] * replicas), np.concatenate([labels] * replicas), splits * replicas
    else:
        images, labels, splits = load(args.data, args.limit, args.replicas or 4)
    print(f"cores: {os.cpu_count()}, {'series' if args.volumes else 'images'}: {len(images)}")
    with tempfile.TemporaryDirectory(prefix="medflow-bench-") as work:
        os.environ.setdefault("PREFECT_HOME", os.path.join(work, "prefect"))
        if args.volumes:
            report(bench(work, images, labels, splits, 28, args.repeats, volumes=True))
            return
        sizes = {"128": [128], "28": [28], "both": [128, 28]}[args.corpus]
        for size in sizes:
            report(bench(work, images, labels, splits, size, args.repeats))


if __name__ == "__main__":
    main()
