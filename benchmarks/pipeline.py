"""Orchestration benchmark: one full retraining run (`retrain_flow`) on a synthetic corpus, its wall
time split into ingest, training, evaluation, promotion (the time inside their Prefect tasks, read
back from the Prefect API) and Prefect orchestration (everything else: flow and task run bookkeeping,
subflow runs, parameter handling, state changes). Target: orchestration <= 5% of the total.
Start-up (Prefect's temporary server and Ray) is reported separately: a deployment pays it once.

Usage: python benchmarks/pipeline.py [--patients 80] [--images-per-patient 4] [--members 2] [--epochs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STAGES = {"ingest": ("plan_inputs", "read_dataset_index", "decode_on_ray", "decide_outcomes", "publish", "save_rejects",
                     "audit_task"),
          "training": ("prepare_run", "train_on_ray", "publish_model"),
          "evaluation": ("evaluate_run",),
          "promotion": ("plan_run", "promote")}


async def task_seconds(since) -> dict[str, float]:
    """Total run time of every task run that started after ``since``, by task name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    async with get_client() as client:
        runs = await client.read_task_runs(task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=since)))
    out: dict[str, float] = {}
    for run in runs:
        name = run.name.rsplit("-", 1)[0]
        out[name] = out.get(name, 0.0) + run.total_run_time.total_seconds()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=80)
    parser.add_argument("--images-per-patient", type=int, default=4)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("MEDFLOW_PSEUDONYM_KEY", secrets.token_urlsafe(32))
    from flows.startup import environment_defaults

    environment_defaults()
    from datetime import datetime

    from flows.pipeline import PipelineParams, retrain_flow
    from flows.startup import start_services
    from medflow.synthetic import write_corpus

    work = tempfile.mkdtemp(prefix="medflow-pipeline-bench-")
    atexit.register(shutil.rmtree, work, True)
    labels = write_corpus(os.path.join(work, "src"), n_patients=args.patients, images_per_patient=args.images_per_patient,
                          size=128, contrast=0.15)
    params = PipelineParams(source=os.path.join(work, "src"), labels=labels, dataset=os.path.join(work, "ds"),
                            rejects=os.path.join(work, "rejects.csv"), runs=os.path.join(work, "runs"),
                            registry=os.path.join(work, "registry"), image_size=128,
                            config={"members": args.members, "train": {"epochs": args.epochs}})
    t0 = time.perf_counter()
    start_services()
    startup = time.perf_counter() - t0
    since = datetime.now(UTC)
    t0 = time.perf_counter()
    result = retrain_flow(params)
    total = time.perf_counter() - t0
    seconds = asyncio.run(task_seconds(since))
    stages = {stage: sum(seconds.get(name, 0.0) for name in names) for stage, names in STAGES.items()}
    # the other task runs are the stand-ins Prefect records for subflow runs (ingest, train, evaluate):
    # they span the subflows' own tasks and are not counted again
    orchestration = total - sum(stages.values())
    print(f"\nretrain_flow on {args.patients * args.images_per_patient} synthetic images (128 px), "
          f"{args.members} members x {args.epochs} epochs; test AUC {result.evaluation.test.point['auc']:.3f}")
    print(f"  start-up (Prefect temporary server + Ray, once per process) {startup:7.1f} s")
    for stage, value in stages.items():
        print(f"  {stage:<12} {value:8.1f} s  {100 * value / total:5.1f}%")
    print(f"  {'orchestration':<12} {orchestration:8.1f} s  {100 * orchestration / total:5.1f}%   (target <= 5%)")
    print(f"  {'total':<12} {total:8.1f} s")


if __name__ == "__main__":
    main()
