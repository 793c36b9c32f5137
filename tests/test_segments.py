"""Segment index and segment cutting (256-frame context windows, paper 4.2)."""

import numpy as np
import pytest

from ser_mtl.data.segments import cut_segment, segment_index


def test_segment_offsets_for_given_lengths():
    index = segment_index(np.array([100, 256, 300, 600]), segment_frames=256, hop=128)
    assert index.dtype == np.int64 and index.shape == (8, 2)
    assert index.tolist() == [
        [0, 0],                                  # 100 <= 256: one padded segment
        [1, 0],                                  # exactly one window
        [2, 0], [2, 44],                         # 300: last window aligned to the end (300 - 256)
        [3, 0], [3, 128], [3, 256], [3, 344],    # 600: 0, 128, 256 fit; 344 = 600 - 256 covers the tail
    ]


def test_zero_length_utterances_give_no_segment_and_indices_stay_global():
    index = segment_index(np.array([0, 10, 0, 512]), segment_frames=256, hop=256)
    assert index.tolist() == [[1, 0], [3, 0], [3, 256]]  # 512 = 2 x 256 exactly: no tail window
    assert segment_index(np.zeros(0, np.int64), 256, 128).shape == (0, 2)


def test_every_frame_is_covered_and_counts_match_a_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 2000, size=300)
    width, hop = 256, 100
    index = segment_index(lengths, width, hop)
    for u, length in enumerate(lengths):
        offsets = index[index[:, 0] == u, 1]
        expected = [] if length == 0 else sorted(set(
            list(range(0, max(length - width, 0) + 1, hop)) + [max(length - width, 0)]))
        assert offsets.tolist() == expected
        if length:
            covered = np.zeros(length, bool)
            for o in offsets:
                covered[o:o + width] = True
            assert covered.all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="frame counts >= 0"):
        segment_index(np.array([10, -1]), 256, 128)
    with pytest.raises(ValueError, match="frame counts"):
        segment_index(np.array([1.5]), 256, 128)
    with pytest.raises(ValueError, match=">= 1"):
        segment_index(np.array([10]), 256, 0)


def test_cut_segment_copies_and_zero_pads_on_the_right():
    frames = np.arange(3 * 300, dtype=np.float16).reshape(3, 300)  # (F, L)
    seg = cut_segment(frames, 44, 256)
    assert seg.shape == (3, 256) and seg.dtype == np.float16
    np.testing.assert_array_equal(seg, frames[:, 44:300])
    short = cut_segment(frames[:, :100], 0, 256)
    np.testing.assert_array_equal(short[:, :100], frames[:, :100])
    assert (short[:, 100:] == 0).all()
    seg[:] = -1  # a copy: the source (in practice a read-only memory map) is untouched
    assert frames[0, 44] == 44
    with pytest.raises(ValueError, match="offset 300"):
        cut_segment(frames, 300, 256)
