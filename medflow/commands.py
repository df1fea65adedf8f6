"""The data commands (ingest, dataset info/export): call the flow, print a short, PHI-free summary.

The model commands are in ``medflow.model_commands``, imported only when one runs: they need torch,
MONAI and scikit-learn, whose imports alone take seconds.
"""

from __future__ import annotations

import argparse
import json

from flows import startup
from flows.ingest import IngestParams, ingest_flow, ingests_volumes
from medflow.summaries import print_ingest
from tasks.core import storage
from tasks.data import dataset
from tasks.ingest import deid, geometry
from tasks.ingest.labels import read_labels


def dataset_command(args: argparse.Namespace) -> int:
    return dataset_info(args) if args.dataset_command == "info" else dataset_export(args)


def _fractions(text: str) -> dict[str, float]:
    try:
        train, val, test = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--split-fractions must be three numbers like 0.7,0.15,0.15, got {text!r}") from None
    return {"train_fraction": train, "val_fraction": val, "test_fraction": test}


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        center, width = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--window must be CENTER,WIDTH like 40,400, got {text!r}") from None
    if width < 1:
        raise ValueError(f"--window width must be at least 1, got {width:g}")
    return center, width


def ingest(args: argparse.Namespace) -> int:
    params = IngestParams(
        source=args.source, labels=args.labels, dataset=args.dataset, rejects=args.rejects,
        image_size=args.image_size, volumes=args.volumes, window=_window(args.window), seed=args.seed,
        allow_split_leakage=args.allow_split_leakage, rehash=args.rehash,
        **_fractions(args.split_fractions),
    )
    preflight(params)
    startup.start_services()
    print_ingest(ingest_flow(params), params.dataset, params.rejects)
    return 0


def preflight(params: IngestParams) -> None:
    """Configuration errors surface here, as one line, before any flow run starts."""
    deid.load_pseudonym_key()
    read_labels(params.labels)
    if not storage.exists(params.source):
        raise ValueError(f"source not found: {params.source}")
    if params.window is not None and not ingests_volumes(params):
        raise ValueError("--window applies to volume datasets only (ingest with --volumes)")
    # another size, kind or window than the dataset's: refused before anything is decoded
    geometry.choose(params.dataset, params.image_size, params.source, [], params.volumes, params.window)


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
