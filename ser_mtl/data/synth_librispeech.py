"""The LibriSpeech part of the synthetic demo corpus (`ser_mtl.data.synth`): FLAC files, transcripts and a
SPEAKERS.TXT with the real file's quirks (a name containing '|', rows for subsets that are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_mtl.data.synth_voice import make_voice, render_utterance, write_audio
from ser_mtl.io_utils import atomic_write_text

_FIRST = {"F": ("Ada", "Clara", "Elena", "Greta", "Irene", "Karin", "Maria", "Olga", "Rosa", "Tanja", "Vera"),
          "M": ("Bruno", "Dmitri", "Felix", "Hugo", "Jonas", "Leo", "Nils", "Pavel", "Simon", "Walter")}
_LAST = ("Abbott", "Brandt", "Castillo", "Dunn", "Eriksen", "Fischer", "Gray", "Holt", "Ibsen", "Jansen",
         "Kerr", "Lund", "Moreau", "Nash")


def _write_libri_speaker(folder: Path, seed: int, rng: np.random.Generator, spk: int, gender: str,
                         chapters: list[int], count: int, seconds: tuple[float, float]) -> tuple[float, int]:
    """FLAC files and transcripts of one LibriSpeech speaker, split over `chapters`; (seconds, files)."""
    voice = make_voice(np.random.default_rng([seed, 6, spk]), gender)
    total, files = 0.0, 0
    for chapter, utts in zip(chapters, np.array_split(np.arange(count), len(chapters))):
        lines = []
        for k in range(len(utts)):
            utt_id = f"{spk}-{chapter}-{k:04d}"
            latent = (float(rng.normal(3.1, 0.25)), float(rng.normal(2.6, 0.25)), 3.0)  # calm read speech
            duration = round(float(rng.uniform(*seconds)), 3)
            wave, words = render_utterance(seed, (7, spk, chapter, k), voice, latent, duration)
            write_audio(folder / str(chapter) / f"{utt_id}.flac", wave, "FLAC")
            lines.append(f"{utt_id} {' '.join(words).upper()}")
            total += duration
        atomic_write_text(folder / str(chapter) / f"{spk}-{chapter}.trans.txt", "\n".join(lines) + "\n")
        files += len(utts) + 1
    return total, files


def write_librispeech(root: Path, seed: int, p: dict) -> dict:
    """train-clean-360 and test-clean speakers (``p``: the `synth` parameters) and SPEAKERS.TXT under
    ``root``; returns the summary entry ``{"librispeech": {"files", "subsets"}}``."""
    rng = np.random.default_rng([seed, 5])
    subsets = [("train-clean-360", p["librispeech_train_speakers"], p["librispeech_train_utterances"]),
               ("test-clean", p["librispeech_test_speakers"], p["librispeech_test_utterances"])]
    n_speakers = sum(n for _, n, _ in subsets)
    ids = rng.choice(np.arange(14, 9500), size=n_speakers + 2, replace=False)  # the last two: listed only
    chapter_ids = rng.choice(np.arange(1000, 300000), size=(n_speakers, 2), replace=False)
    rows: list[tuple[int, str, str, float, str]] = []  # SPEAKERS.TXT: id, sex, subset, minutes, name
    summary: dict[str, dict] = {}
    n_files, k = 1, 0
    for subset, count, per_speaker in subsets:
        seconds = 0.0
        for i in range(count):
            spk, g = int(ids[k]), "FM"[i % 2]
            chapters = sorted(int(c) for c in chapter_ids[k, : 2 if per_speaker >= 8 else 1])
            spk_seconds, files = _write_libri_speaker(root / subset / str(spk), seed, rng, spk, g, chapters,
                                                      per_speaker, p["librispeech_seconds"])
            rows.append((spk, g, subset, spk_seconds / 60.0, f"{rng.choice(_FIRST[g])} {rng.choice(_LAST)}"))
            n_files, seconds, k = n_files + files, seconds + spk_seconds, k + 1
        summary[subset] = {"utterances": count * per_speaker, "speakers": count, "female": (count + 1) // 2,
                           "male": count // 2, "hours": round(seconds / 3600, 4)}
    # Real quirks: a name containing '|' (speaker 60 is "|CBW|Simon"), and rows for absent subsets.
    spk, g, subset, minutes, name = rows[min(1, len(rows) - 1)]
    rows[min(1, len(rows) - 1)] = (spk, g, subset, minutes, "|CBW|" + name.split()[0])
    rows += [(int(ids[-2]), "F", "train-clean-100", 25.19, "Kara Lindqvist"),
             (int(ids[-1]), "M", "dev-clean", 8.05, "Paul Okafor")]
    header = ("; Synthetic LibriSpeech-layout demo corpus written by `ser-mtl synth`.\n"
              "; Some speakers listed here have no audio in this copy (other subsets).\n"
              ";\n;ID  |SEX| SUBSET           |MINUTES| NAME\n")
    body = "".join(f"{s:<5}| {g} | {sub:<16} | {m:5.2f} | {n}\n" for s, g, sub, m, n in sorted(rows))
    atomic_write_text(root / "SPEAKERS.TXT", header + body)
    return {"librispeech": {"files": n_files, "subsets": summary}}
