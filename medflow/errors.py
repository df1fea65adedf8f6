"""The exceptions the CLI reports as configuration errors: one line on stderr, exit code 2."""

from __future__ import annotations

from pydantic import ValidationError

from tasks.data import dataset
from tasks.data.splits import SplitLeakageError
from tasks.ingest import deid
from tasks.ingest.labels import LabelsError

CONFIGURATION_ERRORS = (  # RegistryError, RunMismatchError and ClusterTooSmallError are ValueErrors
    LabelsError,
    deid.PseudonymKeyError,
    SplitLeakageError,
    dataset.DatasetNotFoundError,
    ValidationError,
    ValueError,
    FileNotFoundError,
    dataset.ConcurrentPublishError,
)
