"""medflow: DICOM folders or buckets -> versioned datasets -> trained, evaluated image classifiers."""

from tasks.core.provenance import VERSION as __version__

__all__ = ["__version__"]
