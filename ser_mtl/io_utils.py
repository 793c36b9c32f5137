"""Atomic file writes: a reader never sees a half-written result, cache, manifest or figure.

Everything is written to a unique temporary file beside the target, flushed to disk, then renamed
over it with ``os.replace`` (atomic on POSIX); on any error the temporary file is removed and the
old target, if any, is left as it was. The temporary file is created with ``open()``, not
``tempfile.mkstemp``, so the final file gets the usual umask permissions instead of mkstemp's 0600,
which would hide results from the rest of a cluster group.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the writer may have closed it without syncing
            os.fsync(handle.fileno())
        os.replace(tmp, path)
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
