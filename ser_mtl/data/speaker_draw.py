"""Seeded, nested speaker draws: which speakers of a corpus a run uses (``data.speakers``, ``data.aux_speakers``).

The paper trains on "600 speakers randomly selected" from LibriSpeech train-clean-360 (4.1.3); Figure 4a
varies that number. A draw of ``n`` is the first ``n`` of ONE seeded permutation of the sorted unique ids,
so draws with one seed are nested (a sweep adds speakers instead of swapping them), and a pretraining with
``data.speakers: 600`` uses the same speakers (and feature store) as a fine-tuning's ``aux_speakers: 600``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ser_mtl.data.manifest import ManifestRow


def draw_speakers(speakers: Iterable[str], n: int | None, seed: int, source: str = "the corpus") -> list[str]:
    """The ``n`` speakers drawn from ``speakers`` with ``seed``, sorted; ``n`` None = all of them.
    ``source`` names the corpus/subset (and the option) in the error for a bad ``n``."""
    pool = sorted(set(speakers))
    if n is None:
        return pool
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{source}: the number of speakers to draw must be an integer >= 0 or null, got {n!r}")
    if n > len(pool):
        raise ValueError(f"{source}: asked for {n} speakers but it has only {len(pool)}")
    order = np.random.default_rng(seed).permutation(len(pool))  # (len(pool),)
    return sorted(pool[i] for i in order[:n])


@dataclass(frozen=True)
class SpeakerDraw:
    """The outcome of one draw: the speakers kept, out of how many, with which seed (for ``describe``)."""

    speakers: tuple[str, ...]  # sorted ids of the drawn speakers
    available: int  # unique speakers the corpus (subset) has
    requested: int | None  # the option's value; None = all
    seed: int

    def describe(self) -> str:
        """E.g. ``600 of 921 speakers drawn (data.seed 0)`` or ``all 921 speakers``."""
        if self.requested is None:
            return f"all {self.available} speakers"
        return f"{len(self.speakers)} of {self.available} speakers drawn (data.seed {self.seed})"


def draw_rows(rows: Sequence[ManifestRow], n: int | None, seed: int,
              source: str = "the corpus") -> tuple[list[ManifestRow], SpeakerDraw]:
    """The rows of the ``n`` speakers `draw_speakers` draws from ``rows``, in manifest order, and the draw."""
    available = {r.speaker for r in rows}
    drawn = draw_speakers(available, n, seed, source)
    keep = set(drawn)
    return [r for r in rows if r.speaker in keep], SpeakerDraw(tuple(drawn), len(available), n, seed)


def draw_source(option: str, n: int | None, root: str, subset: str | None) -> str:
    """How a draw's error names option and corpus (``data.speakers=700: /data/LibriSpeech (test-clean)``)."""
    return f"{option}={n}: {root}" + (f" ({subset})" if subset else "")
