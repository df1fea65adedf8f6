"""What each CLI command does: call its flow, then print a short, PHI-free summary.

Data commands live here; the model commands (train, evaluate, predict, run, serve, promote, rollback,
demo) are in ``medflow.model_commands``, imported only when one runs: they need torch, MONAI and
scikit-learn, whose imports alone take seconds.
"""

from __future__ import annotations

import argparse
import json
import threading

from pydantic import ValidationError

from flows.ingest import IngestParams, ingest_flow
from tasks.core import storage
from tasks.core.cluster import ensure_ray
from tasks.data import dataset
from tasks.data.splits import SplitLeakageError
from tasks.ingest import deid
from tasks.ingest.labels import LabelsError, read_labels

CONFIGURATION_ERRORS = (  # one line on stderr, exit code 2 (RegistryError is a ValueError)
    LabelsError,
    deid.PseudonymKeyError,
    SplitLeakageError,
    dataset.DatasetNotFoundError,
    ValidationError,
    ValueError,
    FileNotFoundError,
    dataset.ConcurrentPublishError,
)


def run(args: argparse.Namespace) -> int:
    if args.command == "dataset":
        return dataset_info(args) if args.dataset_command == "info" else dataset_export(args)
    if args.command == "ingest":
        return ingest(args)
    from medflow import model_commands

    return model_commands.COMMANDS[args.command](args)


def _fractions(text: str) -> dict[str, float]:
    try:
        train, val, test = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--split-fractions must be three numbers like 0.7,0.15,0.15, got {text!r}") from None
    return {"train_fraction": train, "val_fraction": val, "test_fraction": test}


def ingest(args: argparse.Namespace) -> int:
    params = IngestParams(
        source=args.source, labels=args.labels, dataset=args.dataset, rejects=args.rejects,
        image_size=args.image_size, seed=args.seed, allow_split_leakage=args.allow_split_leakage, rehash=args.rehash,
        **_fractions(args.split_fractions),
    )
    preflight(params)
    start_services()
    print_ingest_summary(ingest_flow(params), params)
    return 0


def start_services() -> None:
    """Start Prefect's temporary server (embedded mode only) while Ray starts: together they are
    most of a run's fixed cost, and neither needs the other to start."""
    from prefect.settings import PREFECT_API_URL

    thread = None
    if not PREFECT_API_URL.value():
        from prefect.server.api.server import SubprocessASGIServer

        thread = threading.Thread(target=lambda: SubprocessASGIServer().start(), daemon=True)
        thread.start()
    ensure_ray()  # Ray must be initialised from the main thread
    if thread:
        thread.join()


def preflight(params: IngestParams) -> None:
    """Configuration errors surface here, as one line, before any flow run starts."""
    deid.load_pseudonym_key()
    read_labels(params.labels)
    if not storage.exists(params.source):
        raise ValueError(f"source not found: {params.source}")


def print_ingest_summary(summary: dict, params: IngestParams) -> None:
    print(f"dataset {params.dataset}: version {summary['version']}")
    print(f"  inputs {summary['inputs']}, added {summary['added']}, unchanged {summary['unchanged']} "
          f"({summary['unchanged_not_read']} known by fingerprint, not read), "
          f"rejected {summary['rejected']}")
    for reason, count in summary["rejected_by_reason"].items():
        print(f"    {reason}: {count}")
    if summary["relabelled_not_applied"]:
        print(f"  note: {summary['relabelled_not_applied']} already-ingested images have a new label in the CSV; "
              "labels of ingested images are not rewritten")
    audit = summary["audit"]
    print(f"  patients per split {audit['patients_per_split']}, in several splits: {audit['patients_in_several_splits']}")
    print(f"  rejects written to {params.rejects}")


def dataset_info(args: argparse.Namespace) -> int:
    info = dataset.describe(args.uri, args.version)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"dataset {info['uri']}  version {info['version']}  rows {info['rows']}")
    print("versions:")
    for entry in info["versions"]:
        added = (entry["summary"] or {}).get("added", "-")
        print(f"  v{entry['version']}  {entry['operation']}  added {added}")
    print("rows per split and label:")
    for split, labels in info["rows_per_split_and_label"].items():
        print(f"  {split}: {labels}")
    audit = info["audit"]
    print(f"patients {audit['patients']}, per split {audit['patients_per_split']}")
    print(f"leakage audit: {audit['patients_in_several_splits']} patient(s) in more than one split")
    return 0


def dataset_export(args: argparse.Namespace) -> int:
    rows = dataset.export(args.uri, args.out, args.version)
    print(f"exported {rows} rows of {args.uri} (version {args.version if args.version is not None else 'latest'}) to {args.out}")
    return 0
