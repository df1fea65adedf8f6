"""process_batch without Ray or Prefect: the safety nets for I/O errors and unexpected failures."""

from __future__ import annotations

import os

from tasks.core.refusals import Reason, RefusedItem
from tasks.ingest.batch import KnownDigests, Unchanged, process_batch
from tasks.ingest.labels import Item
from tests.conftest import TEST_KEY
from tests.fixtures import PHI, RAMP


def write_good(path) -> None:
    from medflow import synthetic

    path.write_bytes(synthetic.to_bytes(synthetic.encode_image(RAMP, "u8", PHI)))


def test_unreadable_file_is_a_read_error(tmp_path):
    os.symlink("loop.dcm", tmp_path / "loop.dcm")  # a symlink loop: open() fails with ELOOP
    result = process_batch(str(tmp_path), [Item(0, "loop.dcm", "a", None, 10)], set(), TEST_KEY, 16)
    assert result.rejects == [RefusedItem(0, Reason.READ_ERROR, "OSError after 3 attempts")]


def test_unexpected_exception_becomes_internal_error_and_the_batch_goes_on(tmp_path):
    write_good(tmp_path / "a.dcm")
    items = [Item(0, "a.dcm", "a", None, 10), Item(1, "a.dcm", "a", None, 10)]
    result = process_batch(str(tmp_path), items, set(), TEST_KEY, image_size=-1)  # an impossible size makes the resize fail
    assert [r.reason for r in result.rejects] == ["internal_error", "internal_error"]
    assert result.rejects[0].detail == "ValueError"  # the type only: messages could carry data


def test_known_files_are_not_decoded(tmp_path):
    write_good(tmp_path / "a.dcm")
    first = process_batch(str(tmp_path), [Item(0, "a.dcm", "a", None, 10)], set(), TEST_KEY, 16)
    sha = first.keys[0].source_sha256
    again = process_batch(str(tmp_path), [Item(0, "a.dcm", "a", None, 10)], {sha}, TEST_KEY, 16)
    assert again.unchanged == [Unchanged(0, sha)] and again.table.num_rows == 0


def test_oversize_files_are_refused_unread(tmp_path):
    write_good(tmp_path / "a.dcm")
    from tasks.dicom.header import Limits

    result = process_batch(str(tmp_path), [Item(0, "a.dcm", "a", None, 10**9)], set(), TEST_KEY, 16,
                           Limits(max_file_bytes=1000))
    assert result.rejects[0].reason == "too_large"


def test_known_digests_membership():
    import hashlib
    import pickle

    present = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)] + ["ab" * 31 + "00"]
    known = pickle.loads(pickle.dumps(KnownDigests(present)))
    assert all(h in known for h in present) and len(known) == 51
    assert hashlib.sha256(b"new").hexdigest() not in known and "ab" * 31 + "01" not in known
    assert "00" * 32 not in KnownDigests()
