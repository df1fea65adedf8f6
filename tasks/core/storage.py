"""fsspec URIs for local folders and ``s3://``: listing, reading, atomic publish.

S3 endpoint and credentials come from the environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), never from code.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import NamedTuple

import fsspec
from fsspec.implementations.local import LocalFileSystem

S3_RETRIES = 5


def is_remote(uri: str) -> bool:
    """True for URIs with a non-local scheme (``s3://``)."""
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    """A plain absolute path for a local URI (``file://`` or plain path)."""
    return os.path.abspath(uri.removeprefix("file://"))


def normalize(uri: str) -> str:
    """Absolute local paths, ``s3://`` left as is, no trailing slash."""
    uri = uri.rstrip("/")
    return uri if is_remote(uri) else local_path(uri)


def filesystem(uri: str) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for a URI; S3 with retries and endpoint from the environment."""
    if not is_remote(uri):
        return LocalFileSystem()
    protocol = uri.split("://", 1)[0]
    if protocol == "s3":
        kwargs: dict = {"config_kwargs": {"retries": {"max_attempts": S3_RETRIES, "mode": "adaptive"}}}
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        return fsspec.filesystem("s3", **kwargs)
    return fsspec.filesystem(protocol)


def join(base: str, *parts: str) -> str:
    """Join URI parts with ``/`` (object stores) or the OS separator (local)."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def strip_protocol(uri: str) -> str:
    """The path fsspec uses inside its filesystem (``bucket/key`` for S3)."""
    return uri.split("://", 1)[1] if is_remote(uri) else local_path(uri)


class Listed(NamedTuple):
    """One file of a listing: path relative to the root ('/'-separated), size in bytes, and a
    stamp that changes whenever the file may have (local: size, mtime, ctime, inode; S3: size,
    ETag, LastModified)."""

    path: str
    size: int
    stamp: str


def list_files(root: str) -> Iterator[Listed]:
    """Every regular file below ``root``. Local symlinks are listed but never followed into directories."""
    if not is_remote(root):
        base = local_path(root)
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, base).replace(os.sep, "/")
                try:
                    st = os.lstat(full)
                except OSError:
                    yield Listed(rel, -1, "")
                    continue
                yield Listed(rel, st.st_size, f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
        return
    fs = filesystem(root)
    base = strip_protocol(root).rstrip("/")
    for path, info in fs.find(base, detail=True).items():
        if info.get("type") == "file":
            size = int(info.get("size") or 0)
            yield Listed(path[len(base) + 1 :], size, f"{size}:{info.get('ETag', '')}:{info.get('LastModified', '')}")


def read_bytes(uri: str, limit: int | None = None) -> bytes:
    """The bytes of one object, at most ``limit`` of them when given."""
    if not is_remote(uri):
        with open(local_path(uri), "rb") as f:  # the hot path of ingestion: no fsspec layer
            return f.read() if limit is None else f.read(limit)
    fs = filesystem(uri)
    with fs.open(strip_protocol(uri), "rb") as f:
        return f.read() if limit is None else f.read(limit)


def exists(uri: str) -> bool:
    return filesystem(uri).exists(strip_protocol(uri))


def file_size(uri: str) -> int | None:
    """The size of ``uri`` when it is one file; None when it is a folder (an S3 prefix) or missing."""
    fs, path = filesystem(uri), strip_protocol(uri)
    return int(fs.size(path)) if fs.isfile(path) else None


def parent(uri: str) -> str:
    """The folder holding a path or ``s3://`` URI."""
    return os.path.dirname(local_path(uri)) if not is_remote(uri) else uri.rstrip("/").rpartition("/")[0]


def name(uri: str) -> str:
    """The last part of a path or ``s3://`` URI."""
    return os.path.basename(local_path(uri)) if not is_remote(uri) else uri.rstrip("/").rpartition("/")[2]


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Publish ``data`` at ``uri`` so that a reader sees the old object or the new, never half.

    Local: write a temporary sibling, then ``os.replace``. S3: one PUT is atomic.
    """
    if is_remote(uri):
        fs = filesystem(uri)
        fs.pipe_file(strip_protocol(uri), data)
        return
    path = local_path(uri)
    os.replace(_temporary_sibling(path, data), path)


def _temporary_sibling(path: str, data: bytes) -> str:
    """``data`` written completely to a uniquely named file beside ``path`` (folders created); its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
    return tmp


def create_exclusive(uri: str, data: bytes) -> bool:
    """Publish ``data`` at ``uri`` only if nothing is there yet; False when another writer was first.

    Local: a complete temporary sibling hard-linked into place (``link`` fails if the name exists).
    S3: a conditional PUT (``If-None-Match: *``).
    """
    if is_remote(uri):
        try:
            filesystem(uri).pipe_file(strip_protocol(uri), data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                return False
            raise
        return True
    path = local_path(uri)
    tmp = _temporary_sibling(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)
    return True


def remove_tree(uri: str) -> None:
    """Delete a folder (or prefix) and everything in it, if present."""
    fs = filesystem(uri)
    path = strip_protocol(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def delta_storage_options() -> dict[str, str]:
    """Options for ``deltalake`` (object_store) built from the same environment as s3fs."""
    opts: dict[str, str] = {}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        if os.environ.get(name):
            opts[name] = os.environ[name]
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    opts.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return opts


def write_json(uri: str, value: dict) -> None:
    write_bytes_atomic(uri, json.dumps(value, indent=2, default=str).encode())


def read_json(uri: str) -> dict:
    return json.loads(read_bytes(uri))
