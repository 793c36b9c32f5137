"""`ser-mtl manifest`: read a corpus on disk and write its manifest CSV (once per corpus; idempotent)."""

from __future__ import annotations

from ser_mtl.command_line import command
from ser_mtl.data.corpora import build_manifest
from ser_mtl.data.manifest import CorpusError, summarize, write_manifest


@command(errors=(CorpusError,))
def manifest(corpus: str, root: str, out: str,
             subset: str | None = None, csv: str | None = None) -> None:
    """Build the manifest of a corpus on disk and write it as CSV.

    Prints a summary and every input that was left out, as `path:line: reason` relative to the root.

    Args:
        corpus: Which reader to use: iemocap (IEMOCAP_full_release/), msp_improv (MSP-IMPROV/),
            librispeech (LibriSpeech/, one subset), crema_d (CREMA-D/: AudioWAV/, VideoDemographics.csv),
            ravdess (Actor_NN/ folders), msp_podcast (Audios/, Labels/labels_consensus.csv) or csv (any
            corpus described by a CSV); the registry is ser_mtl/data/corpora/__init__.py.
        root: The corpus root folder as unpacked (e.g. /data/IEMOCAP_full_release).
        out: Where to write the manifest CSV (written atomically; folders are created).
        subset: LibriSpeech only: the subset folder to read (default train-clean-360).
        csv: csv corpus only: the CSV describing the corpus (default <root>/manifest.csv), with a
            `path` column relative to the root and optionally any other manifest column.

    Raises:
        CorpusError: `root` is not the named corpus, or no utterance could be used.
    """
    result = build_manifest(corpus, root, subset=subset, csv=csv)
    if result.skipped:
        print(f"skipped {len(result.skipped)} (paths relative to {root}):")
        for skip in result.skipped:
            print(f"  {skip}")
    if not result.rows:
        raise CorpusError(f"{root}: no usable {corpus} utterances found; nothing written to {out}")
    write_manifest(result.rows, out)
    print(f"wrote {len(result.rows)} rows to {out}")
    print(summarize(result.rows))
