"""Featurization throughput and feature-store build cost on generated audio.

Measures, on `--n-utts` synthetic utterances (2-8 s, tones + noise with pauses, 16 kHz WAV):
  1. load_audio alone, and load_audio of the same audio stored at 44.1 kHz stereo (resampling);
  2. speech_only + features (default LogSpectrogram: trimming + 128 log-mel rows) on CPU, and on CUDA
     when available: utterances/s and real-time factor (compute seconds per audio second);
  3. FeatureStore.build with num_workers=0 and with --workers processes: wall time and size;
  4. random 256-frame segment reads from the finished store (cut_segment on the memory map).

    .venv/bin/python bench/bench_features.py                  # ~1-2 min on 2 cores
    .venv/bin/python bench/bench_features.py --n-utts 400 --workers 8

Audio and stores are written to a temporary folder (or --work-dir) and deleted afterwards.
Recorded results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser_mtl.data.audio import load_audio
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.manifest import ManifestRow
from ser_mtl.data.segments import cut_segment, segment_index
from ser_mtl.data.store import FeatureStore

SR = 16000


def synth(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Harmonic 'voiced' stretches separated by pauses (~25 % of the time), plus faint noise."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    gate = (np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t) > -0.6).astype(float)
    return (0.2 * x * gate + 0.001 * rng.standard_normal(len(t))).astype(np.float32)  # pauses at -50 dB


def make_corpus(root: Path, n: int) -> tuple[list[ManifestRow], float]:
    rng = np.random.default_rng(0)
    rows, total = [], 0.0
    for i in range(n):
        seconds = float(rng.uniform(2.0, 8.0))
        x = synth(rng, seconds, SR)
        sf.write(root / f"u{i:04d}.wav", x, SR, subtype="PCM_16")
        if i < 20:  # a few 44.1 kHz stereo copies for the resampling cost
            x44 = synth(np.random.default_rng(i), seconds, 44100)
            sf.write(root / f"u{i:04d}_44k.wav", np.stack([x44, x44], 1), 44100, subtype="PCM_16")
        rows.append(ManifestRow(f"u{i:04d}", "bench", f"u{i:04d}.wav", len(x) / SR, "s", "F", "1",
                                "", "", None, None, None))
        total += len(x) / SR
    return rows, total


def timed(fn, repeats: int = 1):
    """fn()'s result and its fastest wall time over `repeats` runs (the CPU is shared: best-of)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-utts", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", type=str, default=None)
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_features_"))
    root = work / "audio"
    root.mkdir(parents=True, exist_ok=True)
    cfg = LogSpectrogram()
    try:
        rows, audio_s = make_corpus(root, args.n_utts)
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
              f"{torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
        print(f"corpus: {len(rows)} utterances, {audio_s / 60:.1f} min of audio\n")
        print("| step | utterances/s | real-time factor (s per audio s) |\n|---|---|---|")

        waves, t_load = timed(lambda: [load_audio(root / r.path) for r in rows], repeats=3)
        print(f"| load_audio, 16 kHz mono WAV | {len(rows) / t_load:.0f} | {t_load / audio_s:.5f} |")
        n44 = min(20, len(rows))
        audio44 = sum(r.duration for r in rows[:n44])
        _, t44 = timed(lambda: [load_audio(root / f"{r.utt_id}_44k.wav") for r in rows[:n44]], repeats=3)
        print(f"| load_audio, 44.1 kHz stereo -> 16 kHz mono | {n44 / t44:.0f} | {t44 / audio44:.5f} |")

        cfg.features(cfg.speech_only(waves[0]))  # builds the cached transforms
        _, t_feat = timed(lambda: [cfg.features(cfg.speech_only(w)) for w in waves], repeats=3)
        print(f"| speech_only + features, CPU | {len(rows) / t_feat:.0f} | {t_feat / audio_s:.5f} |")
        if torch.cuda.is_available():
            gpu = [w.cuda() for w in waves]
            cfg.features(cfg.speech_only(gpu[0]))
            torch.cuda.synchronize()
            start = time.perf_counter()
            for w in gpu:
                cfg.features(cfg.speech_only(w))
            torch.cuda.synchronize()
            t_gpu = time.perf_counter() - start
            print(f"| speech_only + features, {torch.cuda.get_device_name()} | {len(rows) / t_gpu:.0f} | "
                  f"{t_gpu / audio_s:.5f} |")

        print("\n| store build | wall s | utterances/s | real-time factor |\n|---|---|---|---|")
        builds = {}
        for workers in (0, args.workers):
            store = FeatureStore(rows, str(root), cfg, str(work / f"cache{workers}"))
            start = time.perf_counter()  # once: a second build of the same store is a no-op
            store.build(num_workers=workers, progress=False)
            t_build = time.perf_counter() - start
            builds[workers] = store
            print(f"| num_workers={workers} | {t_build:.1f} | {len(rows) / t_build:.0f} | {t_build / audio_s:.5f} |")

        store = builds[0]
        size = (store.path / "features.f16").stat().st_size
        frames = int(store.lengths.sum())
        print(f"\nstore: {frames} frames ({frames / audio_s:.1f} per audio second after silence trimming), "
              f"{size / 2**20:.1f} MiB = {size / 2**30 / (audio_s / 3600):.2f} GiB per hour of audio; "
              f"without trimming 100 frames/s x 128 x 2 B = {100 * 3600 * 128 * 2 / 2**30:.3f} GiB/h "
              f"(LibriSpeech train-clean-360, ~364 h: {364 * 100 * 3600 * 128 * 2 / 1e9:.0f} GB)")

        index = segment_index(store.lengths, 256, 128)
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(index), size=5000)
        start = time.perf_counter()
        for utt, offset in index[picks]:
            cut_segment(store.frames(int(utt)), int(offset), 256).astype(np.float32)
        t_seg = time.perf_counter() - start
        print(f"segments: {len(index)} of 256 frames (hop 128); random reads from the memory map "
              f"(page cache warm): {5000 / t_seg:.0f} segments/s")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
