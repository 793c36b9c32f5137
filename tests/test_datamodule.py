"""SERDataModule on miniature corpora in the real layouts: sizes, splits, batches, masks, statistics."""

from pathlib import Path

import numpy as np
import pytest
import torch
from corpus_trees import make_iemocap, make_librispeech

from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.labels import make_label_scheme
from ser_mtl.data.store import running_stats

FEATURES = LogSpectrogram(n_bins=32, trim_silence=False)


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
    n_unlabelled = sum(1 for r in plain.rows if plain.label_scheme.category(r) is None and r.speaker in train_speakers)
    assert n_unlabelled > 0
    assert len(extra.train_indices()) == len(plain.split.train) + n_unlabelled


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
    assert state["features"]["init_args"]["n_bins"] == 32 and state["segment_frames"] == 32
    fresh = _datamodule(corpora, tmp_path)
    fresh.load_state_dict(state)
    np.testing.assert_allclose(fresh.mean, dm.mean)


KNOWN_CENTROIDS = [[4.5, 1.5], [1.5, 3.0], [3.0, 4.5]]  # (k, 2) valence, activation; not what K-means finds here


def _known_scheme_state() -> dict:
    scheme = make_label_scheme("av3", "iemocap")
    scheme.centroids = np.array(KNOWN_CENTROIDS)
    return {"label_scheme": scheme.state_dict()}


def _nearest(rows, centroids) -> np.ndarray:
    """(U,) numpy reference: index of the nearest centroid of each row's (valence, activation)."""
    pts = np.array([[r.valence, r.activation] for r in rows])  # (U, 2)
    return np.argmin(((pts[:, None, :] - np.asarray(centroids)[None]) ** 2).sum(-1), axis=1)


def test_restored_kmeans_scheme_is_kept_by_setup(corpora, tmp_path):
    """`ser-mtl test` restores the checkpoint's scheme: setup must not refit it on this training split."""
    refit = _datamodule(corpora, tmp_path, task="av3")
    refit.setup("test")
    assert not np.allclose(refit.label_scheme.centroids, KNOWN_CENTROIDS)  # a refit would be visible
    dm = _datamodule(corpora, tmp_path, task="av3")
    dm.load_state_dict(_known_scheme_state())
    dm.setup("test")
    np.testing.assert_array_equal(dm.label_scheme.centroids, KNOWN_CENTROIDS)
    test_rows = [dm.rows[i] for i in dm.split.test]
    want = np.where(refit.label_scheme.encode_all(test_rows) >= 0, _nearest(test_rows, KNOWN_CENTROIDS), -1)
    np.testing.assert_array_equal(dm.test_set.labels.emotion, want)
    assert (want >= 0).sum() > 0 and not np.array_equal(want, refit.test_set.labels.emotion)
    assert dm.frontend.label_scheme is dm.label_scheme  # and it travels into the next checkpoint
    np.testing.assert_array_equal(dm.state_dict()["label_scheme"]["centroids"], KNOWN_CENTROIDS)


def test_scheme_restored_after_setup_relabels_the_datasets(corpora, tmp_path):
    """Lightning's order (setup, then load_state_dict): the datasets built in setup get the checkpoint's classes."""
    dm = _datamodule(corpora, tmp_path, task="av3")
    dm.setup("test")
    dm.load_state_dict(_known_scheme_state())
    for dataset, idx in ((dm.test_set, dm.split.test), (dm.val_set, dm.split.val), (dm.train_set, dm.split.train)):
        rows = [dm.rows[i] for i in idx]
        labelled = dm.label_scheme.encode_all(rows) >= 0
        np.testing.assert_array_equal(dataset.labels.emotion, np.where(labelled, _nearest(rows, KNOWN_CENTROIDS), -1))
    with pytest.raises(ValueError, match="label scheme is task 'av3' but data.task is 'av5'"):
        _datamodule(corpora, tmp_path, task="av5").load_state_dict(_known_scheme_state())
