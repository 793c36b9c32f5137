"""The data commands of ``ser-mtl``: ``manifest`` (a corpus on disk -> manifest CSV), ``folds`` (a
manifest's cross-validation folds, as CSV or EmoBox's fold files) and ``synth`` (the synthetic demo corpus).
They live with the command line; the library under ``ser_mtl/data/`` does not import it."""

from __future__ import annotations

from typing import Literal

from ser_mtl.command_line import command
from ser_mtl.data.corpora import build_manifest
from ser_mtl.data.emobox_folds import write_emobox_folds
from ser_mtl.data.folds import make_split, num_folds, write_folds
from ser_mtl.data.labels import make_label_scheme
from ser_mtl.data.manifest import CorpusError, read_manifest, summarize, write_manifest
from ser_mtl.data.synth import synth as write_synthetic_corpora

FoldScheme = Literal["10fold", "loso", "loso_session", "speaker5fold", "speaker10fold", "official"]
# `ser-mtl synth`: the function's signature and docstring are its options
synth = command(errors=(FileExistsError, ValueError))(write_synthetic_corpora)


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


@command(errors=(ValueError,))
def folds(manifest: str, scheme: FoldScheme, out: str, seed: int = 0, classes: list[str] | None = None,
          class_map: dict[str, str] | None = None, format: Literal["csv", "emobox"] = "csv",
          dataset: str | None = None) -> None:
    """Write `fold,split,utt_id,speaker` for every labelled utterance of every fold (or EmoBox's files).

    Prints one line per fold with the number of utterances and speakers in train, val and test.

    Args:
        manifest: A manifest CSV written by `ser-mtl manifest`.
        scheme: 10fold (speaker-dependent, every fold holds every speaker; fold k tests, k+1
            validates), loso (one speaker tests, its session partner validates), loso_session
            (one session tests, the next session validates), speaker5fold / speaker10fold
            (speaker-independent k-fold) or official (the corpus's published partition: MSP-Podcast).
        out: The folds CSV (written atomically; folders are created), or with --format emobox the folder
            that receives <dataset>/fold_<k>/<dataset>_{train,valid,test}_fold_<k>.jsonl.
        seed: Shuffles the utterances dealt into the 10 folds, or the speakers of the speaker k-folds.
        classes: The emotion classes that count as labelled (default: the paper's four).
        class_map: Label merges applied first (default: IEMOCAP's excited -> happy).
        format: csv, or emobox (EmoBox's JSONL fold files, so its recipes run on these splits; labels are
            the corpus's own codes, as EmoBox writes them).
        dataset: EmoBox's name of the corpus (default: the manifest's corpus name).

    Raises:
        ValueError: the manifest has no labelled utterance, or a scheme cannot be built on it
            (e.g. a labelled utterance without speaker for loso).
    """
    rows = read_manifest(manifest)
    corpus = rows[0].corpus if rows else ""
    label_scheme = make_label_scheme("categorical", corpus, classes=classes, class_map=class_map)
    labelled = [label_scheme.category(r) is not None for r in rows]
    n_labelled = sum(labelled)
    if n_labelled == 0:
        raise ValueError(f"{manifest}: no utterance has a label among {label_scheme.classes} ({len(rows)} rows); "
                         "nothing to split (set --classes)")
    if format == "emobox":
        splits = [make_split(rows, scheme, k, seed, labelled=labelled) for k in range(num_folds(rows, scheme, labelled))]
        folder = write_emobox_folds(rows, splits, dataset or corpus, out, lambda r: r.raw_emotion or r.emotion)
        print(f"{scheme}: {len(splits)} folds over {n_labelled} labelled of {len(rows)} utterances -> {folder}")
        return
    counts = write_folds(rows, scheme, seed, out, labelled=labelled)
    print(f"{scheme}: {len(counts)} folds over {n_labelled} labelled of {len(rows)} utterances -> {out}")
    for c in counts:
        print(f"  fold {c['fold']:2d}: train {c['train']:5d} ({c['train_speakers']} spk)  "
              f"val {c['val']:5d} ({c['val_speakers']} spk)  test {c['test']:5d} ({c['test_speakers']} spk)")
