"""The ``medflow`` command line: each command runs a Prefect flow and prints a short summary."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="synthetic DICOM corpus -> the whole pipeline, locally")
    demo.add_argument("--out", help="folder for the corpus, dataset and outputs (default medflow-demo, "
                      "with --volumes medflow-demo-volumes)")
    demo.add_argument("--volumes", action="store_true", help="a synthetic CT corpus (series of slices) and 3-D networks")
    demo.add_argument("--patients", type=int, default=50)
    demo.add_argument("--images-per-patient", type=int, default=4, help="images (with --volumes: series) per patient")
    demo.add_argument("--epochs", type=int, help="epochs per ensemble member (default 10, volumes 15)")

    ingest = sub.add_parser("ingest", help="DICOM source + labels CSV -> a new dataset version")
    ingest.add_argument("source", help="folder or s3://bucket/prefix of DICOM files")
    ingest.add_argument("--labels", required=True, help="CSV with columns path,label[,split]")
    ingest.add_argument("--dataset", required=True, help="dataset URI (path or s3://)")
    ingest.add_argument("--rejects", default="rejects.csv", help="CSV for refused inputs (default ./rejects.csv)")
    ingest.add_argument("--image-size", type=int, help="stored images are N x N (default: the dataset's; a new "
                        "dataset takes the sources' size, at most 128)")
    kind = ingest.add_mutually_exclusive_group()
    kind.add_argument("--volumes", action="store_const", const=True, help="CSV paths name series folders or multi-frame "
                      "files; a new dataset holds N x N x N volumes (default N 64). Later ingests need no flag")
    kind.add_argument("--images", dest="volumes", action="store_const", const=False,
                      help="refuse unless the dataset holds 2-D images (the default kind of a new dataset)")
    ingest.add_argument("--window", help="volumes: CENTER,WIDTH in modality units (e.g. 40,400 HU) for every series "
                        "(default: each series' own first window)")
    ingest.add_argument("--seed", type=int, default=0, help="seed of the patient-level split")
    ingest.add_argument("--split-fractions", default="0.7,0.15,0.15", help="train,val,test fractions")
    ingest.add_argument("--allow-split-leakage", action="store_true",
                        help="accept CSV splits that put one patient in two splits")
    ingest.add_argument("--rehash", action="store_true",
                        help="read and hash every file, even those whose size and timestamps are unchanged")

    train = sub.add_parser("train", help="train an ensemble on Ray Train from a dataset version")
    train.add_argument("--dataset", required=True, help="dataset URI (path or s3://)")
    train.add_argument("--run", required=True, help="run folder (path or s3://); rerun the same to resume")
    train.add_argument("--config", help="YAML run config (see README); flags below override it")
    train.add_argument("--members", type=int, help="ensemble size (default: as many as the budget allows)")
    train.add_argument("--epochs", type=int, help="exactly N epochs per member, instead of the budget's sizing")
    train.add_argument("--steps", type=int, help="N optimizer steps per member, instead of the budget's sizing")
    train.add_argument("--budget-minutes", type=float, help="wall-clock budget of train + evaluate (default 30)")
    train.add_argument("--workers", type=int, help="Ray Train workers (DDP) per member")
    train.add_argument("--version", type=int, help="dataset version (default: latest)")

    evaluate = sub.add_parser("evaluate", help="fit the ensemble on validation; metrics with CIs and the report")
    evaluate.add_argument("--run", required=True, help="run folder written by `medflow train`")

    predict = sub.add_parser("predict", help="predict every DICOM file below SOURCE")
    predict.add_argument("--model", required=True, help="model folder, run folder, or champion:<task>")
    predict.add_argument("--registry", help="registry for champion:<task> (default $MEDFLOW_REGISTRY or ./medflow-registry)")
    predict.add_argument("source", help="folder or s3://bucket/prefix of DICOM files, or one file")
    predict.add_argument("--out", required=True, help="CSV: path,predicted,p_<class>...,reason")

    run = sub.add_parser("run", help="the retraining pipeline: ingest -> train -> evaluate -> promote")
    run.add_argument("--config", required=True, help="YAML with the pipeline parameters (see README)")
    run.add_argument("--force-retrain", action="store_true", help="train even if this version and config were trained")

    serve = sub.add_parser("serve", help="serve the nightly-retrain deployment in-process (Prefect serve)")
    serve.add_argument("--config", required=True, help="YAML with the pipeline parameters (the default parameters)")
    serve.add_argument("--cron", default="0 2 * * *", help="schedule (default 02:00 every day)")
    serve.add_argument("--timezone", default="UTC", help="IANA timezone of the schedule")

    promote = sub.add_parser("promote", help="make a run's model the champion (through the gate unless --force)")
    promote.add_argument("--run", required=True, help="an evaluated run folder")
    promote.add_argument("--task", default="default")
    promote.add_argument("--registry", help="registry URI (default $MEDFLOW_REGISTRY or ./medflow-registry)")
    promote.add_argument("--margin", type=float, default=0.0, help="required lower 95%% bound of the AUC gain")
    promote.add_argument("--force", action="store_true", help="promote without the statistical gate")

    rollback = sub.add_parser("rollback", help="make the previous champion the champion again")
    rollback.add_argument("--task", default="default")
    rollback.add_argument("--registry", help="registry URI (default $MEDFLOW_REGISTRY or ./medflow-registry)")

    ds = sub.add_parser("dataset", help="inspect or export a dataset")
    ds_sub = ds.add_subparsers(dest="dataset_command", required=True)
    info = ds_sub.add_parser("info", help="versions, rows per split and label, leakage audit")
    info.add_argument("uri")
    info.add_argument("--version", type=int)
    info.add_argument("--json", action="store_true", help="print JSON")
    export = ds_sub.add_parser("export", help="one version as a single Parquet file")
    export.add_argument("uri")
    export.add_argument("--out", required=True)
    export.add_argument("--version", type=int)
    return parser


# command -> (module, function); modules are imported only when their command runs (torch, MONAI and
# scikit-learn take seconds to import, Prefect reads the environment at import)
COMMANDS = {
    "ingest": ("medflow.commands", "ingest"), "dataset": ("medflow.commands", "dataset_command"),
    **{name: ("medflow.model_commands", name) for name in ("demo", "train", "evaluate", "predict", "serve", "promote", "rollback")},
    "run": ("medflow.model_commands", "run_pipeline"),
}


def main(argv: list[str] | None = None) -> int:
    import gc
    import importlib
    import signal

    from flows import cancellation, startup

    startup.environment_defaults()
    args = build_parser().parse_args(argv)
    from prefect.exceptions import TerminationSignal

    from medflow.errors import CONFIGURATION_ERRORS

    module, function = COMMANDS[args.command]
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    cancellation.install()
    try:
        return getattr(importlib.import_module(module), function)(args)
    except CONFIGURATION_ERRORS as exc:
        print(f"medflow: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TerminationSignal) as exc:  # SIGINT, SIGTERM
        signum = getattr(exc, "signum", None) or getattr(exc, "signal", None) or signal.SIGINT
        cancellation.stop_ray()
        print(f"medflow: stopped by {signal.Signals(signum).name}; Ray work cancelled, nothing half-written published. "
              "Rerun the same command to resume.", file=sys.stderr)
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # the interpreter's last garbage collection at exit walks every object Prefect, torch and MONAI
        # made: 2-3 s of a stopped command's 10. Frozen objects are not walked (nothing is left to free)
        gc.freeze()


def one_line(exc: Exception) -> str:
    """A configuration error as one line (pydantic's multi-line reports condensed)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in errors())
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
