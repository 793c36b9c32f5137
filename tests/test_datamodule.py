"""SERDataModule on miniature corpora in the real layouts: sizes, splits, batches, masks, statistics."""

from pathlib import Path

import numpy as np
import pytest
import torch
from corpus_trees import make_iemocap, make_librispeech

from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.data.datasets import SegmentDataset
from ser_mtl.data.features import FeatureConfig
from ser_mtl.data.store import running_stats

FEATURES = FeatureConfig(n_bins=32, trim_silence=False)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpora")
    iemocap = make_iemocap(root / "IEMOCAP_full_release", sessions=(1, 2, 3), utts_per_dialog=8,
                           seconds=(0.6, 1.2))
    libri = make_librispeech(root / "LibriSpeech", subsets=("train-clean-360",), seconds=(0.6, 1.2))
    # one cache for the module: the stores are built once, as they would be across runs
    return {"root": root, "iemocap": iemocap, "libri": libri["train-clean-360"], "cache": root / "cache"}


def _datamodule(corpora, tmp_path: Path, **overrides) -> SERDataModule:
    args = {"corpus": "iemocap", "root": str(corpora["root"] / "IEMOCAP_full_release"),
            "aux_root": str(corpora["root"] / "LibriSpeech"), "aux_speakers": None, "aux_fraction": 0.25,
            "scheme": "loso", "fold": 0, "batch_size": 8, "segment_frames": 32, "segment_hop": 16,
            "features": FEATURES, "cache_dir": str(corpora["cache"])}
    args.update(overrides)
    return SERDataModule(**args)


def test_sizes_are_known_right_after_init(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path)
    assert dm.num_folds == 6  # 3 sessions x 2 speakers
    assert dm.num_classes == 4 and dm.class_names == ["angry", "happy", "neutral", "sad"]
    libri_speakers = {u["speaker"] for u in corpora["libri"]["utts"].values()}
    # loso fold 0: one speaker tests, its session partner validates, 4 IEMOCAP speakers train
    assert dm.num_speakers == 4 + len(libri_speakers)
    assert dm.input_size == (32, 32)
    assert not hasattr(dm, "train_set")  # nothing featurised before setup


def test_batches_carry_shapes_masks_and_the_auxiliary_share(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    n_primary = len(dm.train_set)
    assert len(batches) == int(np.ceil(n_primary / 6))  # 8 - round(8 * 0.25) = 6 primary per batch
    for batch in batches:
        assert batch["x"].shape[1:] == (1, 32, 32) and batch["x"].dtype == torch.float32
        aux = batch["utt"] >= len(dm.rows)
        assert int(aux.sum()) == 2
        assert (batch["emotion"][aux] == -1).all()  # LibriSpeech has no emotion label
        assert (batch["speaker"] >= 0).all() and (batch["gender"] >= 0).all()
        assert (batch["emotion"][~aux] >= 0).all()  # training utterances are the labelled 4-class ones
    test_speakers = {dm.rows[i].speaker for i in dm.split.test}
    val_speakers = {dm.rows[i].speaker for i in dm.split.val}
    train_speakers = {dm.rows[i].speaker for i in dm.split.train}
    assert len(test_speakers) == len(val_speakers) == 1 and not (test_speakers | val_speakers) & train_speakers
    test_batch = next(iter(dm.test_dataloader()))
    assert (test_batch["speaker"] == -1).all()  # a held-out speaker is outside the training label space


def test_normalisation_uses_the_training_split_only(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path)
    dm.setup("fit")
    mean, std = running_stats(dm.stores["primary"], sorted(dm.split.train))
    np.testing.assert_allclose(dm.mean, mean)
    np.testing.assert_allclose(dm.std, std)
    everything, _ = running_stats(dm.stores["primary"], range(len(dm.rows)))
    assert not np.allclose(dm.mean, everything)  # would pass if test utterances leaked in
    x = torch.cat([b["x"] for b in dm.train_dataloader()])  # (N, 1, F, T) normalised segments
    assert abs(float(x.mean())) < 0.5


def test_segments_know_their_utterance(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path, scheme="10fold")
    dm.setup("test")
    utts = torch.cat([b["utt"] for b in dm.test_dataloader()])
    assert set(utts.tolist()) == set(dm.split.test)  # every test utterance gives segments
    lengths = dm.stores["primary"].lengths[dm.split.test]
    expected = sum(1 if n <= 32 else 1 + int(np.ceil((n - 32) / 16)) for n in lengths)
    assert len(utts) == expected


def test_auxiliary_speaker_draw_is_seeded(corpora, tmp_path):
    one = _datamodule(corpora, tmp_path, aux_speakers=2, seed=1)
    same = _datamodule(corpora, tmp_path, aux_speakers=2, seed=1)
    assert len({r.speaker for r in one.aux_rows}) == 2
    assert [r.utt_id for r in one.aux_rows] == [r.utt_id for r in same.aux_rows]
    with pytest.raises(ValueError, match="aux_speakers"):
        _datamodule(corpora, tmp_path, aux_speakers=10_000)


def test_unlabelled_utterances_of_training_speakers_can_join(corpora, tmp_path):
    plain = _datamodule(corpora, tmp_path)
    extra = _datamodule(corpora, tmp_path, use_unlabelled=True)
    train_speakers = {plain.rows[i].speaker for i in plain.split.train}
    n_unlabelled = sum(1 for r in plain.rows if not r.emotion and r.speaker in train_speakers)
    assert n_unlabelled > 0
    assert len(extra._train_indices()) == len(plain.split.train) + n_unlabelled


def test_bad_fold_and_missing_corpus_are_clear_errors(corpora, tmp_path):
    with pytest.raises(ValueError, match="data.fold=6 is out of range"):
        _datamodule(corpora, tmp_path, fold=6)
    with pytest.raises(Exception, match="does not exist"):
        _datamodule(corpora, tmp_path, root=str(tmp_path / "nowhere"))


def test_checkpoint_state_carries_the_preprocessing(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path)
    dm.setup("fit")
    state = dm.state_dict()
    assert state["classes"] == dm.class_names and len(state["mean"]) == 32
    assert state["features"]["n_bins"] == 32 and state["segment_frames"] == 32
    fresh = _datamodule(corpora, tmp_path)
    fresh.load_state_dict(state)
    np.testing.assert_allclose(fresh.mean, dm.mean)


def test_spec_augment_masks_one_band_and_one_span_of_training_segments(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path, spec_augment=(8, 16))
    dm.setup("fit")
    assert dm.train_set.spec_augment == (8, 16) and dm.val_set.spec_augment == (0, 0)
    masked_items = 0
    for i in range(20):
        augmented = dm.train_set[i]["x"][0].numpy()  # (F, T) = (32, 32)
        dm.train_set.spec_augment = (0, 0)
        plain = dm.train_set[i]["x"][0].numpy()
        dm.train_set.spec_augment = (8, 16)
        changed = augmented != plain
        assert (augmented[changed] == 0).all()  # masked cells hold the normalised mean
        band = np.flatnonzero((augmented == 0).all(axis=1))  # fully masked rows
        span = np.flatnonzero((augmented == 0).all(axis=0))  # fully masked frames
        outside = changed.copy()
        outside[band, :] = False
        outside[:, span] = False
        assert not outside.any()  # nothing changed outside one band and one span
        assert len(band) <= 8 or len(span) > 0  # a band is at most 8 rows (unless a span covers all rows)
        masked_items += bool(changed.any())
    assert masked_items >= 10


def test_utterance_mean_normalisation_removes_a_constant_level(corpora, tmp_path):
    dm = _datamodule(corpora, tmp_path, utterance_norm="mean")
    dm.setup("fit")
    assert dm.state_dict()["utterance_norm"] == "mean"
    mean, std = running_stats(dm.stores["primary"], sorted(dm.split.train), center_utterances=True)
    np.testing.assert_allclose(dm.mean, mean)
    np.testing.assert_allclose(dm.std, std)
    ds = dm.val_set
    local, offset = (int(v) for v in ds.index[0])
    frames = dm.stores["primary"].frames(int(ds.labels.store_index[local])).astype(np.float32)  # (F, L)
    seg = frames[:, offset:offset + 32]
    expected = (seg - frames.mean(axis=1, keepdims=True) - ds.mean) * ds.inv_std  # (F, <=32)
    np.testing.assert_allclose(ds[0]["x"][0, :, :seg.shape[1]].numpy(), expected, atol=1e-5)

    # a recording 6 dB louder (every log-power row + ln(10**0.6)) gives the very same input
    class Louder:
        def __init__(self, store):
            self.store, self.lengths = store, store.lengths

        def frames(self, i):
            return (self.store.frames(i).astype(np.float32) + np.log(10 ** 0.6)).astype(np.float16)

    louder = SegmentDataset(Louder(ds.store), ds.labels, dm.mean, dm.std, 32, 16, utterance_norm="mean")
    np.testing.assert_allclose(louder[0]["x"].numpy(), ds[0]["x"].numpy(), atol=2e-2)  # float16 rounding
    dm_abs = _datamodule(corpora, tmp_path)
    dm_abs.setup("fit")
    assert dm_abs.val_set.utterance_norm == "none"


def test_frequency_warp_moves_a_spectral_peak_and_only_in_training(corpora, tmp_path):
    from ser_mtl.data.datasets import warp_rows

    seg = np.zeros((64, 5), dtype=np.float32)
    seg[20] = 1.0  # one bright row
    assert int(warp_rows(seg, 1.1)[:, 0].argmax()) == 22
    assert int(warp_rows(seg, 0.9)[:, 0].argmax()) == 18
    np.testing.assert_array_equal(warp_rows(seg, 1.0), seg)
    # linear interpolation: the peak's energy is spread, never created
    assert warp_rows(seg, 1.05).max() <= 1.0 and warp_rows(seg, 1.05).sum() > 0

    dm = _datamodule(corpora, tmp_path, freq_warp=0.1)
    dm.setup("fit")
    assert dm.train_set.freq_warp == 0.1 and dm.val_set.freq_warp == 0.0
    assert not np.allclose(dm.train_set[0]["x"].numpy(), dm.train_set[0]["x"].numpy())  # a new factor per item
    assert np.array_equal(dm.val_set[0]["x"].numpy(), dm.val_set[0]["x"].numpy())
    with pytest.raises(ValueError, match="freq_warp"):
        _datamodule(corpora, tmp_path, freq_warp=0.6)
