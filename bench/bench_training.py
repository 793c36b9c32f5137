"""Training-step throughput and peak memory of MultiTaskAAE (all three phases), CPU or GPU.

    .venv/bin/python bench/bench_training.py [--steps 20] [--device cpu|cuda] [--demo]

Runs the real ``training_step`` (reconstruction, discriminator, generator, classification: four
optimizer steps) under a Lightning Trainer on random batches of the paper's shape (32 x 1 x 128 x
256) or the demo's (32 x 1 x 64 x 128) and prints segments per second and peak memory. Results are
recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import resource
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ser_mtl.models.aae import MultiTaskAAE


class RandomBatches(Dataset):
    def __init__(self, n: int, size: tuple[int, int], n_speakers: int) -> None:
        self.n, self.size, self.n_speakers = n, size, n_speakers

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"x": torch.randn(1, *self.size, generator=g), "emotion": torch.tensor(i % 4),
                "gender": torch.tensor(i % 2), "speaker": torch.tensor(i % self.n_speakers),
                "utt": torch.tensor(i)}


class StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times = warmup, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--demo", action="store_true", help="the demo's 64 x 128 input and narrower network")
    args = parser.parse_args()
    if args.demo:
        size, kwargs = (64, 128), {"encoder_channels": (16, 24, 32), "encoder_pools": ((2, 2), (2, 4), (2, 2)),
                                       "head_hidden": 64, "optimizer": "adam", "lr": 1e-3}
    else:
        size, kwargs = (128, 256), {}
    n_speakers, warmup = 610, 3
    model = MultiTaskAAE(num_speakers=n_speakers, input_size=size, **kwargs)
    loader = DataLoader(RandomBatches(args.batch_size * (args.steps + warmup), size, n_speakers),
                        batch_size=args.batch_size)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, loader)
    step = sorted(timer.times)[len(timer.times) // 2]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device {args.device}, input {size}, batch {args.batch_size}, params {n_params:,}, threads "
          f"{torch.get_num_threads()}")
    print(f"median step (4 optimizer steps): {1000 * step:.1f} ms -> {args.batch_size / step:.0f} segments/s")
    print(f"peak host RSS {rss_mib:.0f} MiB" + (f", peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                                                 if args.device == "cuda" else ""))


if __name__ == "__main__":
    main()
