"""Small corpora for flow-level tests, built with the project's synthetic-corpus writer."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pydicom

from medflow import synthetic
from tests.fixtures import INGEST_REFUSALS, PHI, RAMP


def good_corpus(root: str, n_patients: int = 8, images_per_patient: int = 2, seed: int = 0) -> str:
    """A clean corpus; returns the labels CSV path."""
    return synthetic.write_corpus(root, n_patients=n_patients, images_per_patient=images_per_patient,
                                  size=32, seed=seed)


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_rows(labels: str, rows: list[tuple[str, str]]) -> None:
    with open(labels, "a", newline="") as f:
        csv.writer(f).writerows(rows)


def write(root: str, rel: str, data: bytes) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def bad_corpus(root: str, outside_dir: str) -> tuple[str, dict[str, str]]:
    """A good corpus plus one input per refusal reason; returns (labels CSV, path -> expected reason)."""
    labels = good_corpus(root)
    expected: dict[str, str] = {}
    rows: list[tuple[str, str]] = []
    for reason, build in INGEST_REFUSALS.items():
        rel = f"bad/{reason}.dcm"
        write(root, rel, build())
        rows.append((rel, "normal"))
        expected[rel] = reason
    first = read_csv(labels)[0]["path"]
    shutil.copy(os.path.join(root, first), os.path.join(root, "bad", "copy.dcm"))
    rows.append(("bad/copy.dcm", "normal"))
    expected["bad/copy.dcm"] = "exact_duplicate"
    original = pydicom.dcmread(os.path.join(root, first))
    clash = synthetic.encode_image(np.flipud(RAMP), "u8", PHI, sop_uid=original.SOPInstanceUID)
    write(root, "bad/uid_clash.dcm", synthetic.to_bytes(clash))
    rows.append(("bad/uid_clash.dcm", "normal"))
    expected["bad/uid_clash.dcm"] = "duplicate_sop_instance_uid"
    write(outside_dir, "secret.dcm", synthetic.to_bytes(synthetic.encode_image(RAMP, "u8", PHI)))
    os.symlink(os.path.join(outside_dir, "secret.dcm"), os.path.join(root, "bad", "link_out.dcm"))
    for rel in ("../outside.dcm", "/etc/passwd", "bad/link_out.dcm"):
        rows.append((rel, "normal"))
        expected[rel] = "path_outside_source"
    rows.append(("nowhere/missing.dcm", "normal"))
    expected["nowhere/missing.dcm"] = "missing_file"
    good = synthetic.to_bytes(synthetic.encode_image(RAMP, "u8", PHI))
    write(root, "extra/unlabeled.dcm", good)
    expected["extra/unlabeled.dcm"] = "unlabeled"
    write(root, "bad/no_label.dcm", synthetic.to_bytes(synthetic.encode_image(RAMP.T, "u8", PHI)))
    rows.append(("bad/no_label.dcm", ""))
    expected["bad/no_label.dcm"] = "invalid_label_row"
    write(root, "bad/twice.dcm", synthetic.to_bytes(synthetic.encode_image(RAMP[::-1, ::-1], "u8", PHI)))
    rows += [("bad/twice.dcm", "normal"), ("bad/twice.dcm", "abnormal")]
    expected["bad/twice.dcm"] = "conflicting_labels"
    append_rows(labels, rows)
    return labels, expected


def ingested_corpus(root, n_patients: int, images_per_patient: int, fractions: tuple[float, float, float]) -> tuple[str, str]:
    """A clean corpus in ``root/src`` ingested at 32 px into ``root/ds``; returns (labels CSV, dataset URI)."""
    from flows.ingest import IngestParams, ingest_flow

    labels = good_corpus(str(root / "src"), n_patients=n_patients, images_per_patient=images_per_patient)
    train, val, test = fractions
    params = IngestParams(source=str(root / "src"), labels=labels, dataset=str(root / "ds"), rejects=str(root / "rejects.csv"),
                          image_size=32, train_fraction=train, val_fraction=val, test_fraction=test)
    ingest_flow(params)
    return labels, params.dataset


def series_corpus(root: str) -> tuple[str, dict[str, str], dict]:
    """Good CT series, an Enhanced MR file, a series with a localizer and an SR, one series per
    series-level refusal; returns (labels CSV, path -> expected reason, facts for later tests)."""
    from medflow import synthetic_series as ss

    labels = ss.write_volume_corpus(root, n_patients=4, series_per_patient=2, size=16, depth=8)
    rng = np.random.default_rng(5)
    phi = synthetic.Phi.for_patient(77)

    def vol(abnormal: bool = False):
        return ss.lesion_volume(rng, 8, 16, abnormal)

    def put(rel: str, datasets) -> list[str]:
        return ss.write_files(os.path.join(root, rel), datasets, rng)

    rows = []
    good = ss.slice_datasets(vol(True), "CT", phi)
    put("extra/with_scout", good + [ss.localizer(good[0]), ss.structured_report(good[0])])
    write(root, "extra/enhanced.dcm", synthetic.to_bytes(ss.enhanced_dataset(vol(), "MR", phi, frame_order=[3, 1, 0, 2, 7, 5, 4, 6])))
    growing = ss.slice_datasets(vol(True), "CT", synthetic.Phi.for_patient(78))
    put("extra/growing", growing[:7])
    rows += [("extra/with_scout", "abnormal"), ("extra/enhanced.dcm", "normal"), ("extra/growing", "abnormal")]
    expected = {}
    bad = {
        "several_series": ss.slice_datasets(vol(), "CT", phi) + ss.slice_datasets(vol(), "CT", phi),
        "missing_slice": (lambda d: d[:3] + d[4:])(ss.slice_datasets(vol(), "CT", phi)),
        "too_few_slices": ss.slice_datasets(vol(), "CT", phi)[:1],
        "gantry_tilt": ss.slice_datasets(vol(), "CT", phi, ss.SeriesGeometry(tilt=20.0)),
    }
    for reason, datasets in bad.items():
        put(f"bad/{reason}", datasets)
        rows.append((f"bad/{reason}", "normal"))
        expected[f"bad/{reason}"] = reason
    names = put("bad/truncated", ss.slice_datasets(vol(), "CT", phi))
    path = os.path.join(root, "bad/truncated", names[4])
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    rows += [("bad/truncated", "normal"), ("nowhere/series", "normal")]
    expected |= {"bad/truncated": "truncated", "nowhere/series": "missing_file", "unlabeled": "unlabeled"}
    put("unlabeled", ss.slice_datasets(vol(), "CT", phi)[:2])
    append_rows(labels, rows)
    return labels, expected, {"growing": (os.path.join(root, "extra/growing"), growing[7])}
