"""UtteranceAccuracy against scikit-learn on utterance-averaged posteriors; EER against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_curve

from ser_mtl.metrics import UtteranceAccuracy, equal_error_rate

C = 4


def _segments(seed: int, n_utt: int = 60, max_seg: int = 5, missing: int = 7):
    """Random segment posteriors (N, C), utterance ids (N,), labels (N,) with some utterances unlabelled."""
    g = torch.Generator().manual_seed(seed)
    utt_ids = torch.randperm(1000, generator=g)[:n_utt] * 3  # sparse, unsorted global indices
    utt_label = torch.randint(0, C, (n_utt,), generator=g)
    utt_label[:missing] = -1
    n_seg = torch.randint(1, max_seg + 1, (n_utt,), generator=g)
    utt = torch.repeat_interleave(utt_ids, n_seg)  # (N,)
    labels = torch.repeat_interleave(utt_label, n_seg)  # (N,)
    probs = torch.softmax(3 * torch.randn(len(utt), C, generator=g), dim=1)  # (N, C)
    return probs, utt, labels


def _reference(probs, utt, labels):
    """Utterance mean posteriors and labels computed with plain numpy loops, then sklearn scores."""
    p, u, y = probs.numpy(), utt.numpy(), labels.numpy()
    keep = y != -1
    ids = sorted(set(u[keep].tolist()))
    mean = np.stack([p[keep & (u == i)].mean(axis=0) for i in ids])
    y_utt = np.array([y[keep & (u == i)][0] for i in ids])
    pred = mean.argmax(axis=1)
    return ids, mean, y_utt, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_utterance_means(seed):
    probs, utt, labels = _segments(seed)
    metric = UtteranceAccuracy(C)
    metric.update(probs, utt, labels)
    out = metric.compute()
    ids, mean, y_utt, pred = _reference(probs, utt, labels)
    assert len(ids) == 53  # 60 utterances, 7 unlabelled
    assert out["wa"].item() == pytest.approx(accuracy_score(y_utt, pred), abs=1e-6)
    assert out["ua"].item() == pytest.approx(balanced_accuracy_score(y_utt, pred), abs=1e-6)
    np.testing.assert_array_equal(out["confmat"].numpy(), confusion_matrix(y_utt, pred, labels=range(C)))
    table_utt, table_probs, table_labels = metric.utterance_table()
    assert table_utt.tolist() == ids
    np.testing.assert_allclose(table_probs.numpy(), mean, atol=1e-6)
    assert table_labels.tolist() == y_utt.tolist()


def test_averaging_is_per_utterance_not_per_segment():
    # utt 0 (label 0): three segments mildly for class 1, one segment strongly for class 0 -> mean wins class 0
    probs = torch.tensor([[0.4, 0.6, 0, 0]] * 3 + [[1.0, 0, 0, 0]] + [[0, 0, 0.9, 0.1]])  # (5, C)
    utt = torch.tensor([0, 0, 0, 0, 1])
    labels = torch.tensor([0, 0, 0, 0, 3])
    metric = UtteranceAccuracy(C)
    metric.update(probs, utt, labels)
    out = metric.compute()
    # utt 0 mean = [0.55, 0.45, 0, 0] -> correct; utt 1 predicted 2, true 3 -> wrong
    assert out["wa"].item() == pytest.approx(0.5)
    assert out["ua"].item() == pytest.approx(0.5)  # recall 1.0 (class 0) and 0.0 (class 3); 1, 2 absent
    assert out["confmat"].tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]


def test_batches_and_order_do_not_matter():
    probs, utt, labels = _segments(5)
    whole = UtteranceAccuracy(C)
    whole.update(probs, utt, labels)
    expected = whole.compute()

    perm = torch.randperm(len(utt), generator=torch.Generator().manual_seed(9))
    batched = UtteranceAccuracy(C)
    for chunk in torch.split(perm, 13):  # shuffled segments in batches of 13: utterances split across batches
        batched.update(probs[chunk], utt[chunk], labels[chunk])
    got = batched.compute()
    assert got["wa"].item() == pytest.approx(expected["wa"].item(), abs=1e-7)
    assert got["ua"].item() == pytest.approx(expected["ua"].item(), abs=1e-7)
    assert torch.equal(got["confmat"], expected["confmat"])

    batched.reset()
    part = perm[:20]
    batched.update(probs[part], utt[part], labels[part])  # reset() dropped the earlier segments
    assert batched.utterance_table()[0].tolist() == sorted(set(utt[part][labels[part] != -1].tolist()))


def test_inconsistent_label_and_bad_input_raise():
    metric = UtteranceAccuracy(C)
    metric.update(torch.full((2, C), 0.25), torch.tensor([7, 7]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="utterance 7 has segments with different labels"):
        metric.compute()
    with pytest.raises(ValueError, match=r"probs must be \(B, 4\)"):
        metric.update(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be -1 or in \[0, 4\)"):
        metric.update(torch.zeros(2, C), torch.tensor([0, 1]), torch.tensor([0, 4]))
    empty = UtteranceAccuracy(C)
    empty.update(torch.zeros(2, C), torch.tensor([0, 1]), torch.tensor([-1, -1]))
    with pytest.raises(RuntimeError, match="no labelled segment"):
        empty.compute()


def _bracket(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Brute-force threshold sweep: max_t min(FAR, FRR) <= EER <= min_t max(FAR, FRR)."""
    tar, non = scores[labels == 1], scores[labels == 0]
    lo, hi = 0.0, 1.0
    for t in np.concatenate([np.unique(scores), [np.inf]]):
        far, frr = np.mean(non >= t), np.mean(tar < t)
        lo, hi = max(lo, min(far, frr)), min(hi, max(far, frr))
    return lo, hi


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_eer_against_threshold_sweep_and_brentq(seed):
    rng = np.random.default_rng(seed)
    n_tar, n_non = 150 + 10 * seed, 400
    scores = np.concatenate([rng.normal(1.0, 1.0, n_tar), rng.normal(0.0, 1.0, n_non)])
    labels = np.concatenate([np.ones(n_tar), np.zeros(n_non)]).astype(int)
    eer = equal_error_rate(scores, labels)
    lo, hi = _bracket(scores, labels)
    assert lo - 1e-12 <= eer <= hi + 1e-12
    assert hi - lo <= 1.0 / n_tar + 1e-12
    # the widely used d-vector recipe: solve 1 - x = tpr(x) on the interpolated ROC
    fpr, tpr, _ = roc_curve(labels, scores)
    assert eer == pytest.approx(brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0), abs=1e-9)
    # N(1,1) vs N(0,1): the theoretical EER is Phi(-0.5) = 0.3085
    assert abs(eer - 0.3085) < 0.06
    assert equal_error_rate(torch.tensor(scores), torch.tensor(labels)) == eer


def test_eer_known_cases():
    # perfectly separated
    assert equal_error_rate([0.9, 0.8, 0.7, 0.1, 0.2], [1, 1, 1, 0, 0]) == 0.0
    # identical scores everywhere: the ROC is the diagonal
    assert equal_error_rate(np.zeros(10), [1, 0] * 5) == pytest.approx(0.5)
    # identical distributions, large sample
    rng = np.random.default_rng(0)
    assert abs(equal_error_rate(rng.normal(size=20000), rng.integers(0, 2, 20000)) - 0.5) < 0.02
    # targets .9 .8 .3, non-targets .7 .2 .1: at t = .7, FAR = FRR = 1/3 on an ROC point
    assert equal_error_rate([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0]) == pytest.approx(1 / 3)
    # tie at 1: one of two targets and two of three non-targets; ROC goes (0, 0) -> (2/3, 1/2).
    # On that segment fpr = 2s/3 and fnr = 1 - s/2 meet at s = 6/7: EER = 4/7
    assert equal_error_rate([1, 0, 1, 1, 0], [1, 1, 0, 0, 0]) == pytest.approx(4 / 7)
    # everything reversed: EER 1
    assert equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_eer_bad_input():
    with pytest.raises(ValueError, match="needs both target"):
        equal_error_rate([0.1, 0.5], [1, 1])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        equal_error_rate([0.1, 0.5], [1, 2])
    with pytest.raises(ValueError, match="differ in shape"):
        equal_error_rate([0.1, 0.5, 0.3], [1, 0])
    with pytest.raises(ValueError, match="not finite"):
        equal_error_rate([0.1, np.nan], [1, 0])


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    probs, utt, labels = _segments(11)
    mine = torch.arange(len(utt)) % world == rank  # alternate segments: most utterances span both ranks
    metric = UtteranceAccuracy(C)
    metric.update(probs[mine], utt[mine], labels[mine])
    out = metric.compute()
    table = metric.utterance_table()
    torch.save({"out": out, "table": table}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_ranks_average_each_utterance_over_all_segments(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    probs, utt, labels = _segments(11)
    ids, mean, y_utt, pred = _reference(probs, utt, labels)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["out"]["wa"].item() == pytest.approx(accuracy_score(y_utt, pred), abs=1e-6)
        assert got["out"]["ua"].item() == pytest.approx(balanced_accuracy_score(y_utt, pred), abs=1e-6)
        assert got["table"][0].tolist() == ids
        np.testing.assert_allclose(got["table"][1].numpy(), mean, atol=1e-6)
