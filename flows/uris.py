"""The type of every location a flow parameter names."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from tasks.core import storage

# A path or s3:// URI, stored normalised: local paths made absolute (Ray workers and Prefect workers
# do not share the caller's working directory), no trailing slash.
Uri = Annotated[str, AfterValidator(storage.normalize)]
