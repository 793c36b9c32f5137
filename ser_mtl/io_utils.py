"""Atomic file writes: a reader never sees a half-written result, cache, manifest or figure.

A unique temporary file beside the target is flushed, then renamed over it (``os.replace``); on error
it is removed and the old target stays. It is created with ``open()``, not ``tempfile.mkstemp``, so the
final file gets umask permissions, not mkstemp's 0600 (which would hide results from a cluster group).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) is a write refused for space, quota or file-size limit."""
    return any(isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS for e in _chain(err))


def disk_full_message(err: BaseException, what: str = "") -> str:
    """One line for a full disk: what could not be written, and that re-running resumes."""
    reason = next((e.strerror for e in _chain(err) if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS),
                  "no space left")
    return (f"{what + ': ' if what else ''}could not be written ({reason}); nothing was marked complete and "
            "earlier files are intact: free space, then run the same command again to resume")


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


class DiskFullError(OSError):
    """A file could not be written for lack of space; ``str()`` names the file and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` on success. A write
    refused for space becomes `DiskFullError` naming ``path``; the old ``path`` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the writer may have closed it without syncing
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(err.errno, disk_full_message(err, str(path))) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` whose content appears at ``path`` only once the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", newline="") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
