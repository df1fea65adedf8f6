"""The bottom layer: object storage, the Ray connection and fan-out, JSON records and code
versions, the refusal reasons, classification metrics. Imports nothing else from ``tasks``."""
