"""Ingestion: labels CSV + source listing -> work plan, de-identified decoding on Ray,
reconciliation against the dataset, one published version, the rejects CSV, the fingerprint cache."""
