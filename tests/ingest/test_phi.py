"""PHI canary: plant sentinels everywhere a DICOM file can carry them, run the real pipeline, and
scan everything it wrote, logged, or showed in the Prefect API."""

from __future__ import annotations

import asyncio
import glob
import logging
import os

import pyarrow.parquet as pq
import pydicom
import pytest
from prefect.client.orchestration import get_client

from flows.ingest import IngestParams, ingest_flow
from medflow import synthetic
from medflow.cli import main
from tasks.ingest import deid, fingerprints
from tests.corpora import good_corpus

PLANTED_DATES = ("19700101", "20240229")


def sentinels(source: str) -> set[str]:
    """The canary marker, planted dates, and every UID and Patient ID found in the source files."""
    values = {synthetic.CANARY, *PLANTED_DATES}
    for path in glob.glob(os.path.join(source, "**", "*.dcm"), recursive=True):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        found = (ds.get(k) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID"))
        values |= {str(v) for v in found if v}  # a truncated file may lack some
    return values


def text_of_tree(root: str) -> str:
    """Everything under ``root`` as text: Parquet files decoded column by column, others raw."""
    parts = []
    for path in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        if os.path.isdir(path):
            continue
        parts.append(path)
        if path.endswith(".parquet"):
            table = pq.read_table(path)
            parts += [repr(table.schema.metadata)] + [repr(table.column(c).to_pylist()) for c in table.column_names if c != "pixels"]
        else:
            parts.append(open(path, "rb").read().decode("latin-1"))
    return "\n".join(parts)


async def prefect_text(flow_run_id) -> str:
    """The flow run, its task runs, logs and artifacts as the Prefect API (and so the UI) shows them."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        task_runs = await client.read_task_runs()
    return "\n".join([run.model_dump_json(), *(log.message for log in logs), *(a.model_dump_json() for a in artifacts),
                      *(t.model_dump_json() for t in task_runs if t.flow_run_id == flow_run_id)])


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("phi")
    source = root / "source"
    labels = good_corpus(str(source), n_patients=4, images_per_patient=len(synthetic.ENCODINGS) // 2)
    # every encoding once more, so PHI in compressed and raw files is covered too
    more = [(f"more/{enc}.dcm", enc) for enc in synthetic.ENCODINGS]
    for rel, enc in more:
        os.makedirs(source / "more", exist_ok=True)
        ds = synthetic.encode_image(synthetic.lesion_image(__import__("numpy").random.default_rng(1), 32, True), enc,
                                    synthetic.Phi.for_patient(99))
        (source / rel).write_bytes(synthetic.to_bytes(ds, raw=enc == "raw"))
    with open(labels, "a") as f:
        f.writelines(f"{rel},abnormal\n" for rel, _ in more)
    params = IngestParams(source=str(source), labels=labels, dataset=str(root / "dataset"),
                          rejects=str(root / "rejects.csv"), image_size=32)
    return root, params, sentinels(str(source))


def test_nothing_identifying_reaches_dataset_logs_or_prefect(canary_run, caplog, capfd):
    root, params, planted = canary_run
    from prefect.context import FlowRunContext  # noqa: F401  (the run below records its id)

    caplog.set_level(logging.DEBUG)
    state = ingest_flow(params, return_state=True)
    summary = state.result()
    assert summary.added == 4 * (len(synthetic.ENCODINGS) // 2) + len(synthetic.ENCODINGS)
    export = str(root / "export.parquet")
    assert main(["dataset", "export", params.dataset, "--out", export]) == 0
    assert main(["dataset", "info", params.dataset]) == 0
    out, err = capfd.readouterr()
    assert os.path.exists(fingerprints.cache_uri(params.dataset))  # scanned below, like every other file
    written = text_of_tree(params.dataset) + text_of_tree(str(root / "export.parquet"))
    shown = asyncio.run(prefect_text(state.state_details.flow_run_id))
    logged = caplog.text + out + err
    assert len(planted) > 20
    for value in planted:
        assert value not in written, f"{value!r} leaked into the dataset"
        assert value not in shown, f"{value!r} leaked into the Prefect API"
        assert value not in logged, f"{value!r} leaked into the logs"
    assert synthetic.CANARY in open(params.rejects).read() or os.path.getsize(params.rejects) > 0


def test_pseudonyms_are_keyed():
    assert deid.pseudonym(b"k" * 16, "patient", "X") != deid.pseudonym(b"j" * 16, "patient", "X")
    import hashlib

    assert deid.pseudonym(b"k" * 16, "patient", "X") not in hashlib.sha256(b"patient:X").hexdigest()


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(deid.KEY_ENV)
    with pytest.raises(deid.PseudonymKeyError, match="MEDFLOW_PSEUDONYM_KEY"):
        deid.load_pseudonym_key()
    monkeypatch.setenv(deid.KEY_ENV, "short")
    with pytest.raises(deid.PseudonymKeyError, match="at least 16"):
        deid.load_pseudonym_key()


def test_header_values_are_allowlisted():
    assert deid.safe_modality("CR") == "CR" and deid.safe_modality("JOHN DOE") == "OT"
    assert deid.safe_photometric("MONOCHROME2") == "MONOCHROME2" and deid.safe_photometric("x") == "UNKNOWN"
    assert deid.safe_transfer_syntax("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"
    assert deid.safe_transfer_syntax("1.2.3.4.5") == "unknown"


def test_key_from_a_prefect_secret_block(monkeypatch):
    from prefect.blocks.system import Secret

    Secret(value="block-key-0123456789abcdef").save(deid.KEY_BLOCK, overwrite=True)
    monkeypatch.delenv(deid.KEY_ENV)
    monkeypatch.delenv("MEDFLOW_NO_PREFECT_SECRET")
    assert deid.load_pseudonym_key() == b"block-key-0123456789abcdef"
