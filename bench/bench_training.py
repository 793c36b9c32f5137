"""Training-step throughput of MultiTaskAAE: the fit vs a bare PyTorch loop, per memory format and precision.

    .venv/bin/python bench/bench_training.py                  # CPU, paper size, fp32 and bf16-mixed
    .venv/bin/python bench/bench_training.py --device cuda    # one GPU
    .venv/bin/python bench/bench_training.py --quick          # smoke run: tiny model, 2 timed steps
    make bench                                                # features + this script (CPU)

Every row runs in this one process, side by side, on the same pre-built batch (paper size: 32 x 1 x 128
x 256, channels 16-32-32, 610 speakers, all labels present; ``--demo``: the demo's 64 x 128 model):

- ``fit``: `MultiTaskAAE.training_step` under a Lightning Trainer (logging, hooks and all), i.e. what
  ``ser-mtl fit`` runs: reconstruction, discriminator, generator and classification, four optimizer steps.
- ``bare``: the same modules and optimizers doing the same four steps in a plain loop (each phase
  freezes the parameters outside its optimizer, as ``toggled_optimizer`` does), no logging.
- ``fit_nolog`` (only with ``--loops``): the fit with ``self.log`` a no-op; ``fit`` minus ``fit_nolog`` is
  what Lightning's per-step logging costs (``--loops fit,fit_nolog --formats channels_last``).

for memory formats {contiguous, channels_last} and precisions {32-true, bf16-mixed} (autocast; on a
CPU bf16 runs too, slowly without AVX512-BF16/AMX); on a GPU with ``cudnn.benchmark`` on (what
``--trainer.benchmark true`` does for a fit). The median step over ``--steps`` timed steps after
``--warmup``, pooled over ``--rounds`` interleaved repeats of the whole table, gives segments/s. The
Markdown table it prints (date, machine, torch and Lightning versions) is what bench/RESULTS.md
records; the ratios compare the fit with the contiguous bare loop and with the bare loop in the
fit's own format (issue 9 targets on a CPU: >= 1.5 and >= 0.95).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import statistics
import time
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.losses import classification_loss

PAPER = {"input_size": (128, 256)}
DEMO = {"input_size": (64, 128), "encoder_channels": (16, 24, 32), "encoder_pools": ((2, 2), (2, 4), (2, 2)),
        "head_hidden": 64, "optimizer": "adam", "lr": 1e-3}
TINY = {"input_size": (32, 64), "encoder_channels": (4, 8, 8), "head_conv_channels": 8, "head_hidden": 16}


def make_batch(batch_size: int, size: tuple[int, int], n_speakers: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    i = torch.arange(batch_size)
    return {"x": torch.randn(batch_size, 1, *size, generator=g), "emotion": i % 4, "gender": i % 2,
            "speaker": i % n_speakers, "utt": i}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class UnloggedAAE(MultiTaskAAE):
    """The model with ``self.log`` a no-op: the fit's step without Lightning's logging."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass


LOOPS = ("fit", "fit_nolog", "bare")
FORMATS = ("contiguous", "channels_last")


class StepTimer(pl.Callback):
    """Wall time of every training batch (all four optimizer steps), the device drained at both ends."""

    def __init__(self, device: str) -> None:
        self.device, self.times = device, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        synchronize(self.device)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self.start)


def time_fit(model: MultiTaskAAE, batch: dict, n: int, device: str, precision: str) -> list[float]:
    timer = StepTimer(device)
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1,
                         precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(model, DataLoader([batch] * n, batch_size=None))
    return timer.times


@contextlib.contextmanager
def only(model: MultiTaskAAE, opt: torch.optim.Optimizer) -> Iterator[None]:
    """Freeze every parameter outside ``opt`` for one phase (what ``toggled_optimizer`` does)."""
    own = {id(p) for group in opt.param_groups for p in group["params"]}
    frozen = [p for p in model.parameters() if id(p) not in own and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bare_step(m: MultiTaskAAE, opts: list[torch.optim.Optimizer], batch: dict, index: dict) -> None:
    """The paper's four steps on ``batch`` with plain PyTorch calls (the inputs in ``m``'s memory format)."""
    ae, disc, cls = opts
    x = batch["x"].contiguous(memory_format=m.memory_format)  # (B, 1, F, T)
    with only(m, ae):
        step(ae, m.hparams.alpha * F.mse_loss(m.decoder(m.encoder(x)), x))
    z = m.encoder(x)  # (B, C, H, W)
    with only(m, disc):
        d_real = m.discriminator(torch.randn(z.shape, device=z.device).contiguous(memory_format=m.memory_format))
        d_fake = m.discriminator(z.detach())
        step(disc, F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
             + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    with only(m, ae):
        d_fake = m.discriminator(z)
        step(ae, F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake)))
    with only(m, cls):
        z = m.encoder(x)
        losses = {task: F.cross_entropy(head(z).index_select(0, index[task]), batch[task].index_select(0, index[task]))
                  for task, head in m.heads.items()}
        step(cls, classification_loss(losses, m.hparams.beta))


def time_bare(model: MultiTaskAAE, batch: dict, n: int, device: str, precision: str) -> list[float]:
    model.to(device).train()
    opts = model.configure_optimizers()
    index = {task: (batch[task] >= 0).nonzero().squeeze(1).to(device) for task in model.heads}  # (n,) each
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    times = []
    for _ in range(n):
        synchronize(device)
        start = time.perf_counter()
        on_device = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            bare_step(model, opts, on_device, index)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    text = (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads); torch {torch.__version__}, "
            f"Lightning {pl.__version__}, Python {platform.python_version()}")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        text = f"{props.name} ({props.total_memory // 2**20:,} MiB); " + text
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="run the whole table this many times, interleaved")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precisions", default="32-true,bf16-mixed", help="comma-separated trainer precisions")
    parser.add_argument("--loops", default="fit,bare", help=f"comma-separated loops of {LOOPS}")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated memory formats of {FORMATS}")
    parser.add_argument("--demo", action="store_true", help="the demo's 64 x 128 input and narrower network")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, 2 timed steps, 1 warm-up")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    loops, formats = args.loops.split(","), args.formats.split(",")
    if not set(loops) <= set(LOOPS) or not set(formats) <= set(FORMATS):
        parser.error(f"--loops must name loops of {LOOPS} and --formats formats of {FORMATS}")
    if args.quick:
        args.steps, args.warmup = 2, 1
    # fixed input shapes: cuDNN may pick its fastest algorithms, for both loops alike (`trainer.benchmark`)
    torch.backends.cudnn.benchmark = args.device == "cuda"
    config = TINY if args.quick else DEMO if args.demo else PAPER
    n_speakers = 610
    batch = make_batch(args.batch_size, config["input_size"], n_speakers)
    n = args.warmup + args.steps
    times: dict[tuple[str, str, str], list[float]] = {}
    peaks: dict[tuple[str, str, str], float | None] = {}
    for round_ in range(args.rounds):  # every round runs every row once, so drift in the machine hits all rows
        for precision in args.precisions.split(","):
            for memory_format in formats:
                for mode in loops:
                    key = (precision, memory_format, mode)
                    torch.manual_seed(0)
                    model = (UnloggedAAE if mode == "fit_nolog" else MultiTaskAAE)(
                        num_speakers=n_speakers, channels_last=memory_format == "channels_last", **config)
                    run = time_bare if mode == "bare" else time_fit
                    if args.device == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    timed = run(model, batch, n, args.device, precision)[args.warmup:]
                    times.setdefault(key, []).extend(timed)
                    peaks[key] = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
                    print(f"round {round_ + 1}: {key[0]:>10} {key[1]:>13} {mode:>4}: "
                          f"{1000 * statistics.median(timed):8.1f} ms/step", flush=True)
    rows = [(*key, statistics.median(t), peaks[key]) for key, t in times.items()]
    speed = {(p, f, m): args.batch_size / t for p, f, m, t, _ in rows}
    n_params = sum(p.numel() for p in model.parameters())
    size = "x".join(map(str, config["input_size"]))
    print(f"\n{datetime.date.today().isoformat()}, {args.device}: {machine(args.device)}")
    print(f"input 1 x {size}, batch {args.batch_size}, {n_params:,} parameters, median of {args.rounds} x {args.steps} "
          f"steps, each run after {args.warmup}; peak host RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB\n")
    print("| precision | memory format | loop | step (ms) | segments/s | vs bare contiguous | vs bare same format "
          "| peak GPU MiB |")
    print("|---|---|---|---|---|---|---|---|")
    ratio = lambda s, key: f"{s / speed[key]:.2f}" if key in speed else "-"
    for p, f, m, t, peak in rows:
        s = speed[(p, f, m)]
        print(f"| {p} | {f} | {m} | {1000 * t:.1f} | {s:.1f} | {ratio(s, (p, 'contiguous', 'bare'))} | "
              f"{ratio(s, (p, f, 'bare'))} | {'-' if peak is None else f'{peak:.0f}'} |")


if __name__ == "__main__":
    main()
