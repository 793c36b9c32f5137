"""Speaker draws: one seeded permutation, nested sizes, the same speakers for pretraining and fine-tuning."""

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus_trees import make_iemocap

from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.speaker_draw import draw_rows, draw_speakers
from ser_mtl.data.store import store_key
from ser_mtl.data.synth_librispeech import write_librispeech

FEATURES = LogSpectrogram(n_bins=16, trim_silence=False)
LIBRI_SPEAKERS, LIBRI_UTTS = 6, 12  # >= 10 utterances each: every speaker is in every 10fold fold


def test_draw_is_a_prefix_of_one_seeded_permutation():
    ids = ["s1", "s2", "s3", "s4", "s5", "s6"]
    # numpy.random.default_rng(0).permutation(6) == [3, 2, 5, 4, 0, 1]: s4, s3, s6, s5, s1, s2 in draw order
    assert np.random.default_rng(0).permutation(6).tolist() == [3, 2, 5, 4, 0, 1]
    assert [draw_speakers(ids, n, 0) for n in range(4)] == [[], ["s4"], ["s3", "s4"], ["s3", "s4", "s6"]]
    # input order and duplicates do not matter: the pool is the sorted unique ids
    assert draw_speakers(["s6", "s1", "s4", "s4", "s2", "s5", "s3", "s1"], 3, 0) == ["s3", "s4", "s6"]
    assert draw_speakers(reversed(ids), None, 5) == ids


@pytest.mark.parametrize("seed", range(8))
def test_draws_of_different_sizes_are_nested(seed):
    ids = [f"{i}" for i in range(14, 135)]  # 121 speakers, ids as LibriSpeech's (numbers as strings)
    draws = [set(draw_speakers(ids, n, seed)) for n in range(0, len(ids) + 1, 10)]
    assert [len(d) for d in draws] == list(range(0, len(ids) + 1, 10))
    assert all(small <= big for small, big in pairwise(draws))


def test_seeds_give_different_draws_and_bad_sizes_are_clear_errors():
    ids = [f"spk{i}" for i in range(50)]
    assert len({tuple(draw_speakers(ids, 5, seed)) for seed in range(20)}) == 20
    with pytest.raises(ValueError, match=r"data.aux_speakers=51: /x \(train-clean-360\): asked for 51 speakers "
                                         r"but it has only 50"):
        draw_speakers(ids, 51, 0, "data.aux_speakers=51: /x (train-clean-360)")
    with pytest.raises(ValueError, match="integer >= 0 or null, got -1"):
        draw_speakers(ids, -1, 0)


# ----------------------------------------------------------------------------- on corpus trees
@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("draw_trees")
    write_librispeech(root / "LibriSpeech", 0, {
        "librispeech_train_speakers": LIBRI_SPEAKERS, "librispeech_train_utterances": LIBRI_UTTS,
        "librispeech_test_speakers": 0, "librispeech_test_utterances": 0, "librispeech_seconds": (0.4, 0.6)})
    make_iemocap(root / "IEMOCAP_full_release", sessions=(1, 2, 3), utts_per_dialog=6)
    return {"libri": str(root / "LibriSpeech"), "iemocap": str(root / "IEMOCAP_full_release"),
            "cache": str(root / "cache")}


def _pretrain(trees, **overrides) -> SERDataModule:
    """LibriSpeech alone, as configs/librispeech_pretrain.yaml (speaker + gender tasks, 10fold)."""
    args = {"corpus": "librispeech", "root": trees["libri"], "subset": "train-clean-360", "aux_root": None,
            "scheme": "10fold", "fold": 0, "batch_size": 8, "segment_frames": 16, "segment_hop": 16,
            "features": FEATURES, "cache_dir": trees["cache"], "model_tasks": ["gender", "speaker"]}
    return SERDataModule(**{**args, **overrides})


def _finetune(trees, **overrides) -> SERDataModule:
    """IEMOCAP with LibriSpeech train-clean-360 as the auxiliary corpus, as configs/iemocap.yaml."""
    args = {"corpus": "iemocap", "root": trees["iemocap"], "aux_root": trees["libri"],
            "aux_subset": "train-clean-360", "scheme": "loso", "fold": 0, "batch_size": 8, "segment_frames": 16,
            "segment_hop": 16, "features": FEATURES, "cache_dir": trees["cache"], "verification_subset": None}
    return SERDataModule(**{**args, **overrides})


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7])
def test_auxiliary_draws_are_nested(trees, seed):
    """Fails with a draw per size (rng.choice of `size` speakers): for 6 speakers most seeds are not nested."""
    draws = [{r.speaker for r in _finetune(trees, aux_speakers=n, seed=seed).aux_rows}
             for n in range(LIBRI_SPEAKERS + 1)]
    assert [len(d) for d in draws] == list(range(LIBRI_SPEAKERS + 1))
    assert all(small <= big for small, big in pairwise(draws)), draws


@pytest.mark.parametrize("seed", [0, 3])
def test_pretraining_draws_the_fine_tunings_auxiliary_speakers(trees, seed):
    previous: set[str] = set()
    for n in (1, 2, 4, LIBRI_SPEAKERS):
        pre, fine = _pretrain(trees, speakers=n, seed=seed), _finetune(trees, aux_speakers=n, seed=seed)
        drawn = {r.speaker for r in pre.rows}
        assert len(drawn) == n and drawn == {r.speaker for r in fine.aux_rows}
        assert previous <= drawn
        previous = drawn
        assert len(pre.rows) == n * LIBRI_UTTS  # every utterance of a drawn speaker, none of the others
        assert [r.utt_id for r in pre.rows] == [r.utt_id for r in fine.aux_rows]  # manifest order: one store
        assert store_key(pre.rows, FEATURES) == store_key(fine.aux_rows, FEATURES)
        assert pre.num_speakers == n  # pretraining's speaker classes are the drawn speakers
        assert f"primary: {n} of {LIBRI_SPEAKERS} speakers drawn (data.seed {seed})" in pre.describe()
        assert f"aux: {n} of {LIBRI_SPEAKERS} speakers drawn (data.seed {seed})" in fine.describe()
    rows, draw = draw_rows(pre.rows, 2, seed)
    assert draw.available == LIBRI_SPEAKERS and len(draw.speakers) == 2 and len(rows) == 2 * LIBRI_UTTS


def test_primary_draw_errors_and_no_draw(trees):
    with pytest.raises(ValueError, match=r"data.speakers=7: .*LibriSpeech \(train-clean-360\): asked for 7 speakers "
                                         r"but it has only 6"):
        _pretrain(trees, speakers=7)
    with pytest.raises(ValueError, match="data.speakers=0: expected a number of primary-corpus speakers >= 1"):
        _pretrain(trees, speakers=0)
    every = _pretrain(trees)
    assert len({r.speaker for r in every.rows}) == LIBRI_SPEAKERS and "primary:" not in every.describe()
    assert "aux: all 6 speakers" in _finetune(trees, aux_speakers=None).describe()


def test_librispeech_test_split_scores_held_out_utterances_of_training_speakers(trees):
    """10fold on LibriSpeech alone: test/speaker_acc is speaker identification on unseen utterances of the
    training speakers, so every test segment carries the valid speaker index of its utterance's speaker."""
    dm = _pretrain(trees, speakers=4, seed=1)
    dm.setup("test")
    train = set(dm.split.train)
    assert train.isdisjoint(dm.split.test) and train.isdisjoint(dm.split.val)
    train_speakers = {dm.rows[i].speaker for i in train}
    assert {dm.rows[i].speaker for i in dm.split.test} == train_speakers == set(dm.speakers)
    # 48 utterances dealt round-robin into 10 folds: test fold 0 gets deals 0, 10, 20, 30, 40
    assert len(dm.speakers) == 4 and len(dm.split.test) == 5
    batches = list(dm.test_dataloader())
    speaker = torch.cat([b["speaker"] for b in batches])  # (S,)
    utt = torch.cat([b["utt"] for b in batches])  # (S,) global index = row index for the primary corpus
    assert (speaker >= 0).all() and set(utt.tolist()) == set(dm.split.test)
    want = torch.tensor([dm.speakers.index(dm.rows[int(u)].speaker) for u in utt])
    assert torch.equal(speaker, want)
    assert (torch.cat([b["gender"] for b in batches]) >= 0).all()  # gender accuracy, likewise


@pytest.mark.parametrize("pretrain, finetunes", [
    ("librispeech_pretrain.yaml", ["iemocap.yaml", "msp_improv.yaml", "cross_corpus.yaml"]),
    ("demo_pretrain.yaml", ["demo.yaml"])])
def test_configs_pretrain_on_the_fine_tunings_auxiliary_speakers(pretrain, finetunes):
    """The shipped pretraining configs draw (data.speakers, data.seed) what fine-tuning's auxiliary draw
    (data.aux_speakers, data.seed, train-clean-360) does; paper 4.1.3: 600 speakers."""
    import yaml

    configs = Path(__file__).resolve().parents[1] / "configs"
    pre = yaml.safe_load((configs / pretrain).read_text())["data"]
    for name in finetunes:
        fine = yaml.safe_load((configs / name).read_text())["data"]
        assert (pre["speakers"], pre["seed"], pre["subset"]) == (fine["aux_speakers"], fine.get("seed", 0),
                                                                fine["aux_subset"]), name
    assert pre["speakers"] == (600 if pretrain == "librispeech_pretrain.yaml" else None)
