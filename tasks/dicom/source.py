"""Files below a source (a folder or ``s3://`` prefix): which paths may be opened, and reading one
within the size limit with retries. Shared by ingestion and prediction."""

from __future__ import annotations

import os
import time

from tasks.core import storage
from tasks.core.refusals import Rejection
from tasks.dicom.header import Limits

READ_ATTEMPTS = 3


class PathGuard:
    """Decides whether a CSV path may be opened below ``source``, lexically and (locally) through
    symlinks; resolved folders are cached, so a large CSV costs one ``lstat`` per file."""

    def __init__(self, source: str) -> None:
        self.local = not storage.is_remote(source)
        self.root = os.path.realpath(storage.local_path(source)) if self.local else ""
        self._folders: dict[tuple[str, ...], str] = {}

    def _folder(self, parts: tuple[str, ...]) -> str:
        if parts not in self._folders:
            self._folders[parts] = os.path.realpath(os.path.join(self.root, *parts))
        return self._folders[parts]

    def reason(self, rel: str) -> str | None:
        """Why ``rel`` may not be opened (None when it may)."""
        if not rel:
            return "empty path"
        if rel.startswith(("/", "\\")) or "://" in rel or (len(rel) > 1 and rel[1] == ":"):
            return "absolute path"
        parts = rel.replace("\\", "/").split("/")
        if ".." in parts:
            return "path contains '..'"
        if self.local:
            folder = self._folder(tuple(p for p in parts[:-1] if p not in ("", ".")))
            target = os.path.join(folder, parts[-1])
            if os.path.islink(target):
                target = os.path.realpath(target)
            if os.path.commonpath([self.root, target]) != self.root:
                return "path resolves (through a symlink) outside the source"
        return None


def read_source(uri: str, size: int, limits: Limits) -> bytes:
    """The file's bytes; refuses oversize files unread and retries transient read errors."""
    if size > limits.max_file_bytes:
        raise Rejection("too_large", f"file is {size} bytes, limit {limits.max_file_bytes}")
    for attempt in range(READ_ATTEMPTS):
        try:
            return storage.read_bytes(uri, limit=limits.max_file_bytes + 1)
        except FileNotFoundError:
            raise Rejection("missing_file", "file vanished before it was read") from None
        except OSError as exc:
            if attempt == READ_ATTEMPTS - 1:
                raise Rejection("read_error", f"{type(exc).__name__} after {READ_ATTEMPTS} attempts") from None
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


