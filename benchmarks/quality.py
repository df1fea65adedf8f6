"""Quality benchmark: PneumoniaMNIST as DICOM -> ingest -> train (default config) -> evaluate ->
predict on the test split's files; test AUC and accuracy beside the published MedMNIST v2 figures.

Hyper-parameters are chosen on validation only: the ensemble's combiner, temperature and operating
point are fitted on the official validation split; the test split is touched once, by `predict`.

Usage: python benchmarks/quality.py [--data PATH] [--work DIR] [--config FILE] [--members N] [--epochs N]
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import sys
import tempfile
import time

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.pneumonia import CLASSES, DEFAULT_DATA, load, write_corpus, write_labels  # noqa: E402

PUBLISHED = [  # MedMNIST v2 (Yang et al. 2023), Table 3, PneumoniaMNIST test split: (AUC, ACC)
    ("ResNet-18 (28)", 0.944, 0.854),
    ("ResNet-50 (224)", 0.962, 0.884),
    ("Google AutoML Vision", 0.991, 0.946),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    parser.add_argument("--config", help="run config YAML (default: medflow's defaults)")
    parser.add_argument("--members", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, default=28)
    args = parser.parse_args()
    os.environ.setdefault("MEDFLOW_PSEUDONYM_KEY", secrets.token_urlsafe(32))
    from flows.startup import environment_defaults

    environment_defaults()
    from flows.evaluate import EvaluateParams, evaluate_flow
    from flows.ingest import IngestParams, ingest_flow
    from flows.predict import PredictParams, predict_flow
    from flows.startup import start_services
    from flows.train import TrainParams, train_flow
    from tasks.model.config import load_config

    work = args.work or tempfile.mkdtemp(prefix="medflow-quality-")
    source, times = os.path.join(work, "source"), {}
    t0 = time.perf_counter()
    images, labels, splits = load(args.data, None)
    if not os.path.exists(os.path.join(source, "labels.csv")):
        rows = write_corpus(source, images, labels, splits, 28, by_split=True)
        write_labels(os.path.join(source, "labels.csv"), rows)
    times["write DICOM corpus"] = time.perf_counter() - t0

    total = time.perf_counter()
    start_services()
    t0 = time.perf_counter()
    ingest = IngestParams(source=source, labels=os.path.join(source, "labels.csv"), dataset=os.path.join(work, "dataset"),
                          rejects=os.path.join(work, "rejects.csv"), image_size=args.image_size)
    summary = ingest_flow(ingest)
    times["ingest"] = time.perf_counter() - t0
    config = load_config(args.config, {"members": args.members, "train.epochs": args.epochs})
    run = os.path.join(work, "runs", f"run-{int(time.time())}")
    t0 = time.perf_counter()
    trained = train_flow(TrainParams(dataset=ingest.dataset, run=run, config=config))
    times["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluation = evaluate_flow(EvaluateParams(run=run))
    times["evaluate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = os.path.join(work, "test-predictions.csv")
    predict_flow(PredictParams(model=run, source=os.path.join(source, "test"), out=out))
    times["predict (test split)"] = time.perf_counter() - t0
    times["pipeline total (ingest..predict)"] = time.perf_counter() - total

    truth = {f"img{i:05d}.dcm": int(y) for i, (y, s) in enumerate(zip(labels, splits, strict=True)) if s == "test"}
    with open(out, newline="") as f:
        preds = [r for r in csv.DictReader(f)]
    refused = [r for r in preds if r["reason"]]
    y = np.array([truth[r["path"]] for r in preds if not r["reason"]])
    p = np.array([float(r[f"p_{CLASSES[1]}"]) for r in preds if not r["reason"]])
    predicted = np.array([CLASSES.index(r["predicted"]) for r in preds if not r["reason"]])
    auc, acc = roc_auc_score(y, p), accuracy_score(y, predicted)

    print(f"\ndataset: {summary.added} images ingested (v{summary.version}), test files predicted {len(y)}, refused {len(refused)}")
    print("members: " + ", ".join(f"{m.name} {m.architecture} val AUC {m.best_val_auc:.3f} ({m.epochs_run} ep)"
                                  for m in trained.members))
    ens = evaluation.ensemble
    print(f"ensemble: {ens.combiner}, temperature {ens.temperature:.2f}, operating point {ens.threshold:.3f} "
          f"(chosen on validation); validation AUC {evaluation.val.point['auc']:.4f}")
    ci = evaluation.test.ci
    print(f"\n{'PneumoniaMNIST test split':<34} {'AUC':>7} {'ACC':>7}")
    print(f"{'medflow (this run, predict)':<34} {auc:7.3f} {acc:7.3f}   AUC 95% CI [{ci['auc'][0]:.3f}, {ci['auc'][1]:.3f}], "
          f"ACC at 0.5 {evaluation.test.point['accuracy_at_0.5']:.3f}")
    for name, pub_auc, pub_acc in PUBLISHED:
        verdict = "beaten" if auc > pub_auc and acc > pub_acc else "not beaten"
        print(f"{name + ' (published)':<34} {pub_auc:7.3f} {pub_acc:7.3f}   {verdict}")
    print("\nwall time (s), 2 CPU cores:")
    for name, seconds in times.items():
        print(f"  {name:<36} {seconds:8.1f}")
    print(f"report: {evaluation.report}")


if __name__ == "__main__":
    main()
