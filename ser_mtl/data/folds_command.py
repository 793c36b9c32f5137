"""`ser-mtl folds`: write the cross-validation folds of a manifest, to inspect or share them (training
builds the same splits itself from scheme, fold and seed)."""

from __future__ import annotations

from typing import Literal

from ser_mtl.command_line import command
from ser_mtl.data.folds import write_folds
from ser_mtl.data.manifest import EMOTIONS, read_manifest


@command(errors=(ValueError,))
def folds(manifest: str, scheme: Literal["10fold", "loso", "loso_session"], out: str, seed: int = 0) -> None:
    """Write `fold,split,utt_id,speaker` for every emotion-labelled utterance of every fold.

    Prints one line per fold with the number of utterances and speakers in train, val and test.

    Args:
        manifest: A manifest CSV written by `ser-mtl manifest`.
        scheme: 10fold (speaker-dependent, every fold holds every speaker; fold k tests, k+1
            validates), loso (one speaker tests, its session partner validates) or loso_session
            (one session tests, the next session validates).
        out: Where to write the folds CSV (written atomically; folders are created).
        seed: Shuffles the utterances dealt into the 10 folds (the LOSO schemes do not depend on it).

    Raises:
        ValueError: the manifest has no emotion-labelled utterance, or a scheme cannot be built on it
            (e.g. a labelled utterance without speaker for loso).
    """
    rows = read_manifest(manifest)
    n_labelled = sum(r.emotion in EMOTIONS for r in rows)
    if n_labelled == 0:
        raise ValueError(f"{manifest}: no utterance has an emotion label ({len(rows)} rows); nothing to split")
    counts = write_folds(rows, scheme, seed, out)
    print(f"{scheme}: {len(counts)} folds over {n_labelled} labelled of {len(rows)} utterances -> {out}")
    for c in counts:
        print(f"  fold {c['fold']:2d}: train {c['train']:5d} ({c['train_speakers']} spk)  "
              f"val {c['val']:5d} ({c['val_speakers']} spk)  test {c['test']:5d} ({c['test_speakers']} spk)")
