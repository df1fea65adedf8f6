"""ingest_flow: DICOM source + labels CSV -> a new PHI-free dataset version (or none if nothing is new)."""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field, model_validator
from tqdm import tqdm

from flows.cancellation import STOPPABLE
from flows.retry import IO_RETRIES, QUIET
from flows.uris import Uri
from tasks.data import dataset
from tasks.data.schema import Geometry
from tasks.data.splits import SplitFractions, audit
from tasks.dicom.header import Limits
from tasks.ingest import deid, fingerprints, geometry
from tasks.ingest.batch import KnownDigests, VolumeOptions
from tasks.ingest.decode import Decoded, decode_all
from tasks.ingest.geometry import GeometryChoice
from tasks.ingest.labels import Plan, plan
from tasks.ingest.publish import publish_version, refused_paths, write_rejects
from tasks.ingest.reconcile import Outcome, reconcile
from tasks.ingest.summary import IngestSummary, SplitAudit, summarize


class IngestParams(BaseModel):
    """What to ingest and where; every location is a path or ``s3://`` URI."""

    source: Uri = Field(description="folder or s3:// prefix holding the DICOM files")
    labels: Uri = Field(description="labels CSV: columns path, label[, split]")
    dataset: Uri = Field(description="dataset location (Delta table)")
    rejects: Uri = Field("rejects.csv", description="where to write path,reason,detail for refused inputs (outside the dataset)")
    image_size: int | None = Field(None, ge=8, le=2048, description="stored images are image_size x image_size (letterboxed; "
                                   "volumes: image_size cubed); default: the dataset's own, or for a new dataset the "
                                   "sources' size, at most 128 (volumes: 64)")
    volumes: bool | None = Field(None, description="True: CSV paths name series (folders or multi-frame files) and the "
                                 "dataset holds volumes; False: images; default: the dataset's own kind (new: images)")
    window: tuple[float, float] | None = Field(None, description="volumes: window center, width in modality units "
                                               "(e.g. Hounsfield) for every series, instead of each series' own first window")
    seed: int = Field(0, description="seed of the patient-level split")
    train_fraction: float = Field(0.7, ge=0, le=1)
    val_fraction: float = Field(0.15, ge=0, le=1)
    test_fraction: float = Field(0.15, ge=0, le=1)
    allow_split_leakage: bool = Field(False, description="accept CSV splits that put one patient in two splits")
    max_pixels: int = Field(Limits.max_pixels, description="refuse images with more Rows x Columns")
    max_file_bytes: int = Field(Limits.max_file_bytes, description="refuse larger files unread")
    rehash: bool = Field(False, description="read and hash every file, even one whose size and timestamps "
                                            "are unchanged since an earlier ingest")

    @model_validator(mode="after")
    def rejects_outside_dataset(self) -> IngestParams:
        if self.rejects == self.dataset or self.rejects.startswith(self.dataset + "/"):
            raise ValueError("the rejects CSV may hold source paths and must not be inside the dataset")
        return self


def ingests_volumes(params: IngestParams) -> bool:
    """Whether this ingest reads series: asked for, or the existing dataset's kind."""
    if params.volumes is not None:
        return params.volumes
    existing = dataset.existing_geometry(params.dataset)
    return bool(existing and existing.volumes)


@task(**IO_RETRIES, **QUIET)
def plan_inputs(params: IngestParams) -> Plan:
    return plan(params.source, params.labels, volumes=ingests_volumes(params))


@task(**IO_RETRIES, **QUIET)
def read_dataset_index(uri: str):
    return dataset.read_index(uri)


@task(**IO_RETRIES, **QUIET)
def read_fingerprints(params: IngestParams) -> dict[str, str]:
    return {} if params.rehash else fingerprints.load(params.dataset)


@task(**IO_RETRIES, **QUIET)
def choose_geometry(params: IngestParams, work: Plan) -> GeometryChoice:
    """Before anything is decoded: the dataset's geometry, checked against the one asked for."""
    return geometry.choose(params.dataset, params.image_size, params.source, work.items, params.volumes, params.window)


@task(**QUIET)
def decode_on_ray(params: IngestParams, work: Plan, index, cache: dict[str, str], geometry: Geometry) -> Decoded:
    """Decode what is new; files (series) unchanged since an earlier ingest (by fingerprint) are not read."""
    limits = Limits(max_file_bytes=params.max_file_bytes, max_pixels=params.max_pixels)
    volume = VolumeOptions(window=geometry.window) if geometry.volumes else None
    known = KnownDigests(index.column("source_sha256").to_pylist())
    key = deid.load_pseudonym_key()
    split = fingerprints.split_unchanged(work.items, cache, known, key)
    unit = "series" if volume else "file"
    with tqdm(total=len(work.items), unit=unit, desc="decoding", disable=not sys.stderr.isatty()) as bar:
        bar.update(len(work.items) - len(split.to_read))
        decoded = decode_all(params.source, split.to_read, known, key, geometry.image_size, limits, bar.update, volume)
    decoded.results.append(split.unchanged)
    decoded.tables.append(None)
    decoded.not_read = len(split.unchanged.unchanged)
    return decoded


@task(**IO_RETRIES, **QUIET)
def save_fingerprints(params: IngestParams, work: Plan, decoded: Decoded, cache: dict[str, str]) -> None:
    merged = fingerprints.updated(cache, work.items, decoded.results, deid.load_pseudonym_key())
    if merged != cache:
        fingerprints.save(params.dataset, merged)


@task(**QUIET)
def decide_outcomes(params: IngestParams, work: Plan, decoded: Decoded, index, geometry: Geometry) -> Outcome:
    fractions = SplitFractions(params.train_fraction, params.val_fraction, params.test_fraction)
    return reconcile(work.items, decoded.results, index, fractions, params.seed,
                     deid.load_pseudonym_key(), params.allow_split_leakage, replace_changed=geometry.volumes)


@task(**IO_RETRIES, **QUIET)
def publish(params: IngestParams, decoded: Decoded, outcome: Outcome, summary: IngestSummary,
            base_version: int | None, choice: GeometryChoice) -> int | None:
    counts = summary.model_dump(exclude={"audit", "version"})  # stored in the commit's metadata
    return publish_version(params.dataset, decoded, outcome, counts, base_version, choice.geometry)


@task(**IO_RETRIES, **QUIET)
def save_rejects(params: IngestParams, work: Plan, outcome: Outcome) -> None:
    write_rejects(params.rejects, refused_paths(work, outcome))


@flow(name="ingest", log_prints=False, **STOPPABLE)
def ingest_flow(params: IngestParams) -> IngestSummary:
    """Plan, decode on Ray, reconcile, publish one version, write the rejects CSV."""
    logger = get_run_logger()
    work = plan_inputs(params)
    index = read_dataset_index(params.dataset)
    logger.info("%d labelled inputs to consider, %d refused before decoding", len(work.items), len(work.rejects))
    # quote(): large values pass between tasks as they are, without Prefect walking every element
    choice = choose_geometry(params, quote(work))
    cache = read_fingerprints(params)
    decoded = decode_on_ray(params, quote(work), quote(index), quote(cache), choice.geometry)
    outcome = decide_outcomes(params, quote(work), quote(decoded), quote(index), choice.geometry)
    summary = summarize(work, decoded, outcome)
    summary.kind, summary.image_size, summary.image_size_note = choice.geometry.kind, choice.geometry.image_size, choice.note
    version = publish(params, quote(decoded), quote(outcome), summary, dataset.index_version(index), choice)
    save_rejects(params, quote(work), quote(outcome))
    save_fingerprints(params, quote(work), quote(decoded), quote(cache))
    summary.version = version if version is not None else dataset.latest_version(params.dataset)
    summary.audit = audit_task(params.dataset)
    logger.info("ingest summary: %s", summary.model_dump(exclude={"audit"}))
    create_markdown_artifact(key="ingest-summary", markdown=summary.markdown(), description="medflow ingest")
    return summary


@task(**IO_RETRIES, **QUIET)
def audit_task(uri: str) -> SplitAudit:
    if dataset.latest_version(uri) is None:
        return SplitAudit.model_validate(audit([]))
    index = dataset.read_version(uri, columns=["patient_key", "split"])
    return SplitAudit.model_validate(audit(zip(index.column("patient_key").to_pylist(), index.column("split").to_pylist(), strict=True)))
