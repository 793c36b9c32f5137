"""Mixed training batches and DDP sharding (ser_mtl.data.sampling)."""

from collections import Counter

import pytest

from ser_mtl.data.sampling import MixedBatchSampler, ShardedEvalSampler


def test_every_batch_has_the_auxiliary_share_and_an_epoch_covers_the_primary_set():
    sampler = MixedBatchSampler(n_primary=100, n_aux=37, batch_size=32, aux_fraction=0.25, seed=1)
    batches = list(sampler)
    assert sampler.n_aux_per_batch == 8 and sampler.n_primary_per_batch == 24
    assert len(batches) == len(sampler) == 5  # ceil(100 / 24)
    primary = [i for b in batches for i in b if i < 100]
    aux = [i for b in batches for i in b if i >= 100]
    assert sorted(primary) == list(range(100))  # each primary segment exactly once
    assert all(sum(i >= 100 for i in b) == 8 for b in batches)
    assert len(aux) == 40 and set(aux) == set(range(100, 137))  # 40 draws cycle through all 37


def test_epochs_reshuffle_and_seed_is_deterministic():
    a = MixedBatchSampler(50, 10, 8, 0.5, seed=3)
    b = MixedBatchSampler(50, 10, 8, 0.5, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_auxiliary_only_pretraining_and_no_auxiliary():
    only_aux = MixedBatchSampler(0, 20, 8, 0.5)
    drawn = [i for b in only_aux for i in b]
    assert len(only_aux) == 3 and len(drawn) == 24 and set(drawn) == set(range(20))
    no_aux = MixedBatchSampler(20, 0, 8, 0.5)
    assert [len(b) for b in no_aux] == [8, 8, 4]


def test_ranks_share_an_epoch_without_overlap_and_with_equal_step_counts():
    ranks = [list(MixedBatchSampler(100, 0, 10, 0.0, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [3, 3, 3]  # 10 batches, truncated to 9 so every rank steps equally
    seen = Counter(i for r in ranks for b in r for i in b)
    assert max(seen.values()) == 1 and len(seen) == 90


def test_eval_shards_cover_every_segment_once():
    shards = [list(ShardedEvalSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(s) for s in shards] == [4, 3, 4]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="aux_fraction"):
        MixedBatchSampler(10, 10, 8, 1.5)
    with pytest.raises(ValueError, match="training split is empty"):
        MixedBatchSampler(0, 0, 8, 0.5)
