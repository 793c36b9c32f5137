"""Packed runs (`ser_mtl.models.packed.PackedAAE`) vs sequential fits: aggregate segments/s and peak memory.

    .venv/bin/python bench/bench_packed.py [--device cuda] [--size paper|demo|tiny] [--packs 1 2 4 8 16]

Side by side in one process: (a) one unpacked `MultiTaskAAE` fit's real ``training_step`` under a
Lightning Trainer (K sequential fits run at that same rate, whatever K, with one fit's memory), and
(b) one packed step of K runs (the same three phases, four optimizer steps per run) for each K, each
run on its own batch of ``--batch_size`` segments. Aggregate segments/s = K x batch / step time.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per measurement; on the CPU the process's
peak RSS so far (it only grows, so read it as an upper bound for the later rows). Results belong in
bench/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from bench_training import make_batch, time_fit

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.packed import PackedAAE

SIZES = {
    "paper": {"input_size": (128, 256), "encoder_channels": (16, 32, 32), "encoder_pools": ((2, 2), (2, 2), (2, 4)),
              "head_conv_channels": 32, "head_hidden": 128, "num_speakers": 610},
    "demo": {"input_size": (64, 128), "encoder_channels": (16, 24, 32), "encoder_pools": ((2, 2), (2, 2), (2, 2)),
             "head_conv_channels": 32, "head_hidden": 64, "head_pool": "stats", "num_speakers": 100},
    "tiny": {"input_size": (32, 64), "encoder_channels": (4, 8, 8), "head_conv_channels": 8, "head_hidden": 16,
             "num_speakers": 5},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unpacked(hp: dict, batch_size: int, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Seconds per step and peak MiB of one fit's training_step under a Trainer."""
    _reset_peak(device)
    model = MultiTaskAAE(**hp)
    times = time_fit(model, make_batch(batch_size, hp["input_size"], hp["num_speakers"]), steps + warmup,
                     device.type, "32-true")[warmup:]
    return sum(times) / len(times), _peak_mib(device)


def packed(hp: dict, k: int, batch_size: int, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Seconds per packed step of k runs and peak MiB."""
    _reset_peak(device)
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(MultiTaskAAE(**hp))
    pack = PackedAAE(models, list(range(k)), device=device)
    del models
    g = torch.Generator().manual_seed(0)
    f, t = hp["input_size"]
    batch = {"x": torch.randn(k, batch_size, 1, f, t, generator=g).to(device),
             "emotion": torch.randint(0, 4, (k, batch_size), generator=g).to(device),
             "gender": torch.randint(0, 2, (k, batch_size), generator=g).to(device),
             "speaker": torch.randint(0, hp["num_speakers"], (k, batch_size), generator=g).to(device)}
    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        pack.step(batch)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times), _peak_mib(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_packed: --device cuda but torch sees no CUDA device")
    hp = {**SIZES[args.size], "optimizer": args.optimizer}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# bench_packed: {args.size} size, batch {args.batch_size} per run, {args.optimizer}, {name}, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    base_s, base_mem = unpacked(hp, args.batch_size, args.steps, args.warmup, device)
    base_rate = args.batch_size / base_s
    print(f"sequential fits (Trainer, any K): {base_s * 1e3:.1f} ms/step, {base_rate:.0f} segments/s, "
          f"peak {base_mem:.0f} MiB")
    print("| K | packed ms/step | packed segments/s | x sequential | peak MiB |")
    print("|---|---|---|---|---|")
    for k in args.packs:
        s, mem = packed(hp, k, args.batch_size, args.steps, args.warmup, device)
        rate = k * args.batch_size / s
        print(f"| {k} | {s * 1e3:.1f} | {rate:.0f} | {rate / base_rate:.2f} | {mem:.0f} |", flush=True)


if __name__ == "__main__":
    main()
