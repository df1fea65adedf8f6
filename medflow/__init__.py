"""medflow: DICOM folders or buckets -> versioned datasets -> trained, evaluated image classifiers."""

__version__ = "0.1.0"
