"""Batch samplers: the paper's mixed labelled/auxiliary training batches, and DDP sharding.

Lightning's ``DistributedSampler`` cannot be used: training batches are *composed* (a fixed auxiliary
share in each), and it pads ranks with repeated samples, which would bias the per-utterance posterior
averages. Both samplers shard by rank themselves (the CLI sets ``use_distributed_sampler=False``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from torch.utils.data import Sampler


class SamplingError(ValueError):
    """Batch settings the training data cannot satisfy (bad ``batch_size``/``aux_fraction``, no segment)."""


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices, ``n_aux_per_batch`` of them from the auxiliary pool.

    Indices ``[0, n_primary)`` are primary segments, the next ``n_aux`` auxiliary ones (a ``ConcatDataset``).
    An epoch is one pass over the primary segments (over the auxiliary ones when ``n_primary == 0``);
    the auxiliary pool is drawn without replacement and reshuffled when exhausted. Under DDP, rank ``r``
    of ``w`` takes batches ``r, r + w, ...`` of one shared permutation, truncated so every rank runs the
    same number of steps (the manual optimizer steps synchronise gradients: unequal counts would hang).
    """

    def __init__(self, n_primary: int, n_aux: int, batch_size: int, aux_fraction: float,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 epoch_fn: Callable[[], int] | None = None, skip_fn: Callable[[], int] | None = None) -> None:
        if batch_size < 1:
            raise SamplingError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= aux_fraction <= 1.0:
            raise SamplingError(f"aux_fraction must be in [0, 1], got {aux_fraction}")
        if n_primary + n_aux == 0:
            raise SamplingError("no training segments: the training split is empty")
        self.n_primary, self.n_aux = n_primary, n_aux
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        # Lightning never calls set_epoch on a batch sampler: the datamodule passes the trainer's epoch, and
        # skip_fn the batches of this epoch trained before a mid-epoch checkpoint.
        self.epoch, self.epoch_fn, self.skip_fn = 0, epoch_fn, skip_fn
        self.n_aux_per_batch = (batch_size if n_primary == 0 else 0 if n_aux == 0
                                else min(batch_size - 1, round(batch_size * aux_fraction)))
        self.n_primary_per_batch = batch_size - self.n_aux_per_batch

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for ``epoch`` (used when no ``epoch_fn`` is given)."""
        self.epoch = epoch

    def _total_batches(self) -> int:
        if self.n_primary > 0:
            return math.ceil(self.n_primary / self.n_primary_per_batch)
        return math.ceil(self.n_aux / self.n_aux_per_batch)

    def __len__(self) -> int:
        return self._total_batches() // self.world_size if self.world_size > 1 else self._total_batches()

    def __iter__(self) -> Iterator[list[int]]:
        # epoch and skip are read now, when the loader's iterator is made, not at the first batch
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        skip = self.skip_fn() if self.skip_fn is not None else 0
        return self._batches(epoch, skip)

    def _batches(self, epoch: int, skip: int) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        primary = rng.permutation(self.n_primary)
        aux_stream = self._aux_stream(rng)
        for b in range(len(self) * self.world_size):
            batch = primary[b * self.n_primary_per_batch:(b + 1) * self.n_primary_per_batch].tolist()
            batch += [self.n_primary + next(aux_stream) for _ in range(self.n_aux_per_batch)]
            if b % self.world_size == self.rank and b // self.world_size >= skip:
                yield batch

    def _aux_stream(self, rng: np.random.Generator) -> Iterator[int]:
        while self.n_aux > 0:
            yield from rng.permutation(self.n_aux).tolist()


class ShardedEvalSampler(Sampler[int]):
    """Contiguous, unpadded shard of ``range(n)`` for ``rank``: each segment once, as in one process."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        bounds = np.linspace(0, n, world_size + 1).round().astype(int)
        self.start, self.stop = int(bounds[rank]), int(bounds[rank + 1])

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))
