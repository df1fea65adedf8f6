"""Prediction benchmark: `medflow predict`'s path (files in chunks over Ray tasks, each decoding and
predicting its chunk, a crashed worker costing one file) against the same work in one process with
torch's threads (no crash isolation), alternated in one run; Ray's start-up is timed apart.

The model is a trained one (``--model``, e.g. a run of benchmarks/quality.py) or, by default, an
untrained ensemble of the default configuration (speed does not depend on the weights).

Usage: python benchmarks/predict.py [--model URI] [--source DIR] [--data PATH] [--files N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.pneumonia import DEFAULT_DATA, load, write_corpus  # noqa: E402


def untrained_default_model(image_size: int):
    """The default configuration's ensemble (architectures, member count), freshly initialised."""
    from tasks.model.architectures import build_model
    from tasks.model.config import EnsembleConfig
    from tasks.model.store import EnsembleModel, Member, ModelCard, Preprocessing

    plans = EnsembleConfig().plans()
    card = ModelCard(classes=["normal", "pneumonia"], preprocessing=Preprocessing(image_size=image_size),
                     members=[Member(name=p.name, architecture=p.architecture, seed=p.seed, file=f"{p.name}.pt")
                              for p in plans])
    card.ensemble.positive = 1
    return EnsembleModel(card, [build_model(p.architecture, 2, image_size).eval() for p in plans])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model or run folder (default: an untrained default ensemble)")
    parser.add_argument("--source", help="folder of DICOM files (default: PneumoniaMNIST images written as DICOM)")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--files", type=int, default=2000, help="images written when no --source is given")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from flows.startup import environment_defaults

    environment_defaults()
    import numpy as np

    from tasks.core.cluster import ensure_ray
    from tasks.model.store import EnsembleModel
    from tasks.serve.predict import predict, predict_source

    source = args.source
    if source is None:
        images, labels, splits = load(args.data, None)
        pick = np.random.default_rng(0).permutation(len(images))[: args.files]
        source = tempfile.mkdtemp(prefix="medflow-predict-")
        atexit.register(shutil.rmtree, source, True)
        write_corpus(source, images[pick], labels[pick], [splits[i] for i in pick], 28)
    model = EnsembleModel.load(args.model) if args.model else untrained_default_model(28)
    t0 = time.perf_counter()
    ensure_ray()
    print(f"Ray start: {time.perf_counter() - t0:.2f} s; {os.cpu_count()} CPUs; {len(model.networks)} members")
    seconds: dict[str, list[float]] = {"one process": [], "Ray tasks": []}
    for _ in range(args.rounds):
        for name, run in (("one process", predict_source), ("Ray tasks", predict)):
            t0 = time.perf_counter()
            predictions = run(model, source)
            seconds[name].append(time.perf_counter() - t0)
    files = sum(predictions.predicted.values()) + sum(predictions.refused.values())
    for name, runs in seconds.items():
        print(f"{name:12s} {files} files: " + ", ".join(f"{s:.2f}" for s in runs)
              + f" s; median {statistics.median(runs):.2f} s ({files / statistics.median(runs):.0f} files/s)")
    ratio = statistics.median(seconds["Ray tasks"]) / statistics.median(seconds["one process"])
    print(f"Ray tasks / one process (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
