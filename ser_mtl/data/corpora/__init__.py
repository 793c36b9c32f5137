"""Corpus readers: one file per on-disk layout, each returning a `ReadResult`; corpus quirks stop here.

Registering a corpus is one line: its module's ``READER`` (a `CorpusReader`) in ``_MODULES`` below. The
manifest cache (label files to watch), the DataModule (``data.corpus``) and ``ser-mtl manifest`` read
`READERS`.
"""

from __future__ import annotations

from pathlib import Path

from ser_mtl.data.corpora import crema_d, csv_corpus, iemocap, librispeech, msp_improv, msp_podcast, ravdess
from ser_mtl.data.corpora.csv_corpus import read_csv_corpus
from ser_mtl.data.corpora.iemocap import read_iemocap
from ser_mtl.data.corpora.librispeech import read_librispeech
from ser_mtl.data.corpora.msp_improv import read_msp_improv
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import CorpusError, ReadResult

_MODULES = (iemocap, msp_improv, librispeech, csv_corpus, crema_d, ravdess, msp_podcast)
READERS: dict[str, CorpusReader] = {module.READER.name: module.READER for module in _MODULES}


def reader(corpus: str) -> CorpusReader:
    """The registered reader of ``corpus``; CorpusError naming the known ones otherwise."""
    if corpus not in READERS:
        raise CorpusError(f"unknown corpus {corpus!r}; expected one of {', '.join(READERS)}")
    return READERS[corpus]


def build_manifest(corpus: str, root: str | Path, subset: str | None = None,
                   csv: str | Path | None = None) -> ReadResult:
    """Read `corpus` at `root`. `subset` is for a corpus with subsets (LibriSpeech: default train-clean-360),
    `csv` for the generic CSV reader (default <root>/manifest.csv); giving either to another corpus is an error."""
    spec = reader(corpus)
    if subset is not None and spec.default_subset is None:
        raise CorpusError(f"subset={subset!r} only applies to a corpus with subsets (librispeech), not {corpus}")
    if csv is not None and corpus != csv_corpus.CORPUS:
        raise CorpusError(f"csv={csv!r} only applies to the csv corpus, not {corpus}")
    if spec.default_subset is not None:
        return spec.read(root, subset or spec.default_subset)
    if corpus == csv_corpus.CORPUS:
        return spec.read(root, csv)
    return spec.read(root)


__all__ = ["READERS", "CorpusReader", "build_manifest", "read_csv_corpus", "read_iemocap", "read_librispeech",
           "read_msp_improv", "reader"]
