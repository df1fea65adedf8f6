"""Provenance for lineage and registry records: timestamps, the code version and package versions."""

from __future__ import annotations

import subprocess
import time

from tasks.core import storage

VERSION = "0.1.0"  # medflow's version; the CLI package reports the same (tasks never imports it)


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp, for lineage and registry records."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def code_version() -> str:
    """medflow's version and, when run from a git checkout, its commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=storage.local_path(__file__ + "/../..")).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{VERSION}+{commit}" if commit else VERSION


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "monai", "ray", "prefect", "pydicom", "albumentations", "numpy", "scikit-learn", "deltalake"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
