"""medflow's work, as plain functions grouped by stage (see docs/ARCHITECTURE.md).

Shared base, importable by every stage: ``core`` (storage, Ray, records, refusal reasons, metrics),
``dicom`` (reading and decoding one file), ``data`` (the dataset and its readers), ``model``
(architectures, configs, the ensemble, the model and run folders). Stages: ``ingest``, ``train``,
``evaluate``, ``serve``. Imports run one way: a stage imports the base, never another stage; the
base never imports a stage; nothing here imports ``flows`` or the ``medflow`` CLI.
"""
