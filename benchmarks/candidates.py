"""Candidate members, judged on validation only: single members of the named architectures trained
on a MedMNIST npz's training split (pixels as stored, no DICOM round trip) with the default training
config, two at a time on one CPU thread each, each either for the same wall time (``--seconds``: a
budget's view, where a cheap network gets more steps) or for its default length (``--seconds 0``).
Prints each member's steps, kept smoothed validation AUC and its gain over the last quarter of its
checks (above 0.001: still rising, as in benchmarks/quality.py). The test split is never read.

Usage: python benchmarks/candidates.py [--data NPZ] [--seconds S] [--limit N] [--draw N] ARCH[:key=value,...]...
(``seed_cnn:learning_rate=0.004``: a candidate with TrainConfig fields set)
(how the volumes' default members were chosen: --data ../shared/data/vesselmnist3d.npz --seconds 900
resnet18_slices seed_cnn seed_cnn_strided resnet18_small)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "vesselmnist3d.npz")


def split(path: str, name: str, limit: int | None, draw: int | None = None):
    """A split of the npz: its first ``limit`` rows, or (training split) ``draw`` rows drawn as
    benchmarks/quality.py's small variant draws them (seed 0)."""
    from benchmarks.quality import small_draw
    from tasks.data.samples import InMemory

    data = np.load(path)
    images, labels = data[f"{name}_images"][:limit], data[f"{name}_labels"].ravel()[:limit]
    if draw and name == "train":
        keep = np.sort(small_draw(np.arange(len(labels)), draw))
        images, labels = images[keep], labels[keep]
    return InMemory(images, labels)


def candidate(spec: str) -> tuple[str, dict]:
    """``ARCH`` or ``ARCH:key=value,key=value`` (TrainConfig fields, values as YAML reads them)."""
    import yaml

    architecture, _, settings = spec.partition(":")
    return architecture, {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in settings.split(",") if kv)}


def member(spec: str, path: str, seconds: float, limit: int | None, draw: int | None = None) -> dict:
    """One member: for ``seconds`` of wall time (its steps sized by the probes, its end moved for the
    deadline as in a budgeted run), or its default length when ``seconds`` is 0."""
    import torch

    from benchmarks.quality import late_gain
    from tasks.model.config import TrainConfig
    from tasks.train.loop import fit
    from tasks.train.planning import measure_augment_seconds, measure_seconds_per_step, step_cost

    torch.set_num_threads(1)
    architecture, settings = candidate(spec)
    train, val = split(path, "train", limit, draw), split(path, "val", limit)
    config = TrainConfig.model_validate({**settings, "model": architecture, "num_threads": 1})
    step = step_cost(measure_seconds_per_step(architecture, train.image_size, config.batch_size, 2, dims=train.dims),
                     measure_augment_seconds(config.augment, train.image_size, config.batch_size, train.dims))
    if seconds:
        config = config.model_copy(update={"steps": max(1, int(0.95 * seconds / step))})
    started = time.time()
    result = fit(config, train, val, 2, device=torch.device("cpu"), deadline=started + seconds if seconds else None)
    return {"architecture": spec, "step": step, "steps": result.history[-1]["steps"],
            "seconds": time.time() - started, "stopped": result.stopped, "val_auc": result.best_auc,
            "late_gain": late_gain(result.history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("architectures", nargs="+")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=900, help="wall time per member; 0: its default length")
    parser.add_argument("--limit", type=int, default=None, help="the first N rows of each split (a quick check)")
    parser.add_argument("--draw", type=int, default=None, help="N training images drawn at random with seed 0, as "
                        "benchmarks/quality.py's small variant (500 of PneumoniaMNIST's)")
    args = parser.parse_args()
    jobs = [(a, args.data, args.seconds, args.limit, args.draw) for a in args.architectures]
    with multiprocessing.get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        rows = pool.starmap(member, jobs)
    length = f"{args.seconds:.0f} s each" if args.seconds else "default lengths"
    print(f"{os.path.basename(args.data)}, {length}, one thread each, two at a time; validation only")
    print("| architecture | costed s/step | steps | wall s | stopped | smoothed val AUC | last-quarter gain |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['architecture']} | {r['step']:.3f} | {r['steps']} | {r['seconds']:.0f} | {r['stopped']} | "
              f"{r['val_auc']:.4f} | {r['late_gain']:+.4f} |")


if __name__ == "__main__":
    main()
