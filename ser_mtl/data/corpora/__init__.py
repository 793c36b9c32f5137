"""Corpus readers: one file per on-disk layout, each returning a `ReadResult`; corpus quirks stop here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ser_mtl.data.corpora.csv_corpus import read_csv_corpus
from ser_mtl.data.corpora.iemocap import read_iemocap
from ser_mtl.data.corpora.librispeech import DEFAULT_SUBSET, read_librispeech
from ser_mtl.data.corpora.msp_improv import read_msp_improv
from ser_mtl.data.manifest import CorpusError, ReadResult

READERS: dict[str, Callable[..., ReadResult]] = {"iemocap": read_iemocap, "msp_improv": read_msp_improv,
                                                 "librispeech": read_librispeech, "csv": read_csv_corpus}


def build_manifest(corpus: str, root: str | Path, subset: str | None = None,
                   csv: str | Path | None = None) -> ReadResult:
    """Read `corpus` at `root`. `subset` is for LibriSpeech (default train-clean-360), `csv` for
    the generic CSV reader (default <root>/manifest.csv); giving either to another corpus is an error."""
    if corpus not in READERS:
        raise CorpusError(f"unknown corpus {corpus!r}; expected one of {', '.join(READERS)}")
    if subset is not None and corpus != "librispeech":
        raise CorpusError(f"subset={subset!r} only applies to librispeech, not {corpus}")
    if csv is not None and corpus != "csv":
        raise CorpusError(f"csv={csv!r} only applies to the csv corpus, not {corpus}")
    if corpus == "librispeech":
        return read_librispeech(root, subset or DEFAULT_SUBSET)
    if corpus == "csv":
        return read_csv_corpus(root, csv)
    return READERS[corpus](root)


__all__ = ["READERS", "build_manifest", "read_csv_corpus", "read_iemocap", "read_librispeech",
           "read_msp_improv"]
