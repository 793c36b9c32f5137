"""Audio duration from the file header (`soundfile.info`), cheap enough for ~100k LibriSpeech files.
A missing, unreadable or empty file raises `AudioProblem`, which the reader turns into a `Skip`."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

# libsndfile reports SF_COUNT_MAX frames when the header does not state the length (e.g. a FLAC
# whose STREAMINFO says 0 = unknown); only then are the samples decoded and counted.
_UNKNOWN_LENGTH = 2**62


class AudioProblem(Exception):
    """The audio file cannot be used; `str(exc)` says why (missing, unreadable, empty)."""


def _unreadable(exc: Exception) -> AudioProblem:
    # LibsndfileError's str() repeats the absolute path; error_string is just the cause.
    cause = getattr(exc, "error_string", None) or str(exc).strip() or type(exc).__name__
    return AudioProblem(f"unreadable audio ({cause.rstrip('.')})")


def audio_duration(path: Path) -> float:
    """Seconds of audio in `path` according to its header; AudioProblem if missing/unreadable/empty."""
    if not path.is_file():
        raise AudioProblem("audio file not found")
    if path.stat().st_size == 0:
        raise AudioProblem("empty audio file (0 bytes)")
    try:
        info = sf.info(str(path))
        frames = info.frames
        if frames >= _UNKNOWN_LENGTH:
            with sf.SoundFile(str(path)) as f:
                frames = sum(len(block) for block in f.blocks(blocksize=1 << 16))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        raise _unreadable(exc) from None
    if frames <= 0 or info.samplerate <= 0:
        raise AudioProblem("empty audio (0 samples)")
    return frames / info.samplerate
