"""FrontEnd: one preprocessing path for training, evaluation and new audio, with checkable numbers."""

import numpy as np
import pytest
import torch

from ser_mtl.data.audio import load_audio
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.segments import segment_index
from ser_mtl.frontend import FrontEnd

FEATURES = LogSpectrogram(n_bins=8, trim_silence=False)


def _frontend(**overrides) -> FrontEnd:
    args = {"features": FEATURES, "mean": np.arange(8, dtype=float), "std": np.full(8, 2.0),
            "segment_frames": 4, "segment_hop": 2, "class_names": ["a", "b"], **overrides}
    return FrontEnd(**args)


def test_segment_is_standardised_and_padded_with_zero():
    front = _frontend()
    frames = np.tile(np.arange(8, dtype=np.float16)[:, None] + 4.0, (1, 5))  # (8, 5): every row is mean + 4
    seg = front.segment(frames, 3)[0]  # (C=1, 8, 4); frames 3, 4 exist, 5 and 6 are padding
    assert seg.shape == (8, 4) and seg.dtype == np.float32
    np.testing.assert_array_equal(seg[:, :2], 2.0)  # (mean + 4 - mean) / 2
    np.testing.assert_array_equal(seg[:, 2:], 0.0)
    # a row with no spread is divided by 1e-5, not by 0
    flat = _frontend(std=np.zeros(8)).segment(np.zeros((8, 4), np.float16) + 1.0, 0)
    np.testing.assert_allclose(flat[0, 0], (1.0 - 0.0) / 1e-5)


def test_offsets_and_batches_cover_every_frame():
    front = _frontend()
    np.testing.assert_array_equal(front.offsets(9), segment_index(np.array([9]), 4, 2)[:, 1])  # [0, 2, 4, 5]
    assert front.offsets(9).tolist() == [0, 2, 4, 5] and front.offsets(0).tolist() == []
    frames = np.random.default_rng(0).normal(size=(8, 9)).astype(np.float16)
    batches = list(front.batches(frames, batch_size=3))
    assert [len(o) for o, _ in batches] == [3, 1]
    x = np.concatenate([b for _, b in batches])  # (4, 1, 8, 4)
    assert x.shape == (4, 1, 8, 4)
    np.testing.assert_array_equal(x[3], front.segment(frames, 5))


def test_frames_are_the_stored_float16_features():
    wave = torch.sin(2 * torch.pi * 440 * torch.arange(8000) / 16000)  # 0.5 s, 440 Hz
    frames = _frontend().frames(wave)
    assert frames.dtype == np.float16 and frames.shape == (8, 1 + 8000 // 160)
    np.testing.assert_array_equal(frames, FEATURES.features(FEATURES.speech_only(wave)).numpy().astype(np.float16))


def test_state_dict_round_trip_and_missing_keys():
    front = _frontend()
    again = FrontEnd.from_state_dict(front.state_dict())
    assert again.state_dict() == front.state_dict()
    frames = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float16)
    np.testing.assert_array_equal(again.segment(frames, 2), front.segment(frames, 2))
    with pytest.raises(ValueError, match="best.ckpt: no preprocessing state .*mean"):
        FrontEnd.from_state_dict({**front.state_dict(), "mean": None}, source="best.ckpt")
    with pytest.raises(ValueError, match=r"must be \(8,\)"):
        _frontend(mean=np.zeros(7))


def test_training_items_and_new_audio_go_through_the_same_front_end(corpus, tmp_path):
    """A dataset item is FrontEnd.segment of the stored frames, and the stored frames are FrontEnd.frames
    of the audio file: new audio read by `classify` gets the very numbers training got."""
    from ser_mtl.data.datamodule import SERDataModule

    dm = SERDataModule(root=str(corpus / "IEMOCAP_full_release"), aux_root=None, scheme="loso_session",
                       cache_dir=str(tmp_path / "cache"), segment_frames=64, segment_hop=32,
                       features=LogSpectrogram(n_bins=32), verification_subset=None)
    dm.setup("fit")
    front, ds = dm.frontend, dm.val_set
    assert front.segment_frames == 64 and front.segment_hop == 32 and front.class_names == dm.class_names
    for i in (0, len(ds) - 1):
        local, offset = (int(v) for v in ds.index[i])
        row = int(ds.labels.store_index[local])
        stored = dm.stores["primary"].frames(row)  # (F, L) float16
        np.testing.assert_array_equal(ds[i]["x"].numpy(), front.segment(stored, offset))  # (1, F, W)
        wave = load_audio(corpus / "IEMOCAP_full_release" / dm.rows[row].path, 16000)
        np.testing.assert_array_equal(front.frames(wave), stored)
