"""Fixed-width segments over variable-length utterances (paper 4.2: a 256-frame context window).

A segment is an (utterance, frame offset) pair, so test-time posteriors can be averaged per utterance.
For L frames, width W and hop H: L == 0 gives no segment; L <= W one at offset 0, zero-padded by
`cut_segment`; L > W offsets 0, H, 2H, ... while the window fits, plus one aligned to the end (offset
L - W) when a tail is left uncovered. W = 256, H = 128: L = 300 -> [0, 44]; L = 600 -> [0, 128, 256, 344].
"""

from __future__ import annotations

import numpy as np


def segment_index(lengths: np.ndarray, segment_frames: int, hop: int) -> np.ndarray:
    """(S, 2) int64 rows [utterance index, frame offset], utterances in order, offsets ascending."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths.size and (not np.issubdtype(lengths.dtype, np.integer)
                                               or lengths.min() < 0)):
        raise ValueError(f"lengths: expected a 1-D array of frame counts >= 0, got "
                         f"dtype {lengths.dtype}, shape {lengths.shape}")
    if segment_frames < 1 or hop < 1:
        raise ValueError(f"segment_frames and hop must be >= 1, got {segment_frames} and {hop}")
    lengths = lengths.astype(np.int64)
    span = np.maximum(lengths - segment_frames, 0)  # (U,) last possible offset
    regular = span // hop + 1  # (U,) offsets 0, hop, ... <= span
    tail = (span % hop != 0).astype(np.int64)  # (U,) 1 when an end-aligned window is needed
    counts = np.where(lengths > 0, regular + tail, 0)  # (U,)
    utt = np.repeat(np.arange(len(lengths), dtype=np.int64), counts)  # (S,)
    first = np.cumsum(counts) - counts  # (U,) position of each utterance's first segment
    rank = np.arange(len(utt), dtype=np.int64) - first[utt]  # (S,) segment number within its utterance
    offset = np.minimum(rank * hop, span[utt])  # (S,) the tail segment is clipped to L - W
    return np.stack([utt, offset], axis=1)


def cut_segment(frames: np.ndarray, offset: int, segment_frames: int) -> np.ndarray:
    """(F, segment_frames) copy (never a view of a read-only memory map) of
    frames[:, offset:offset + segment_frames], zero-padded on the right, same dtype."""
    if frames.ndim != 2:
        raise ValueError(f"frames: expected (F, L), got shape {frames.shape}")
    length = frames.shape[1]
    if segment_frames < 1 or offset < 0 or (offset >= length and not offset == length == 0):
        raise ValueError(f"cut_segment: offset {offset} / width {segment_frames} invalid for "
                         f"{length} frames")
    out = np.zeros((frames.shape[0], segment_frames), dtype=frames.dtype)  # (F, W)
    piece = frames[:, offset:offset + segment_frames]  # (F, <= W)
    out[:, :piece.shape[1]] = piece
    return out
