"""What registering a corpus reader takes: one `CorpusReader` per reader file, listed once in
``ser_mtl/data/corpora/__init__.py`` (the manifest cache, the DataModule and ``ser-mtl manifest`` read it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ser_mtl.data.manifest import ReadResult


@dataclass(frozen=True)
class CorpusReader:
    """One corpus layout.

    Attributes:
        name: the corpus name of ``data.corpus`` and of the manifest's ``corpus`` column.
        read: ``read(root)`` (or ``read(root, subset)`` with ``subset``) -> `ReadResult`.
        label_globs: files under the root whose change means the manifest must be read again (labels in
            file names: the audio files' glob); ``{subset}`` is replaced by the subset.
        default_subset: the subset read when none is given; None for a corpus without subsets.
        emotions: the corpus's emotion labels as the reader writes them (the ``emotion`` column), in the
            corpus's own order; empty for a corpus without emotion labels.
    """

    name: str
    read: Callable[..., ReadResult]
    label_globs: tuple[str, ...]
    default_subset: str | None = None
    emotions: tuple[str, ...] = ()
