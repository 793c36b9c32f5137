"""Feature-store build with a pretrained speech model against a bare transformers loop over the same audio.

A full-size WavLM Base (``WavLMConfig()``: 12 layers, 768 dims, ~95 M parameters) with random weights (no
download) is saved with ``save_pretrained`` to a temporary folder, with a Wav2Vec2FeatureExtractor;
``--utterances`` synthetic utterances of 2-8 s (harmonics + noise, no pauses, so trimming keeps them) are
written as 16 kHz WAV files. Then, in one process:

1. ``FeatureStore(rows, root, PretrainedFeatures(...), cache).build()``: load + trim + batched model +
   float16 write, the model already loaded and warmed up (its load and weights hash are timed apart);
2. a bare loop: ``AutoModel.from_pretrained``, then for the same batches (sorted by length, the same
   grouping, chunks of 256 utterances as the store) soundfile read + feature extractor +
   ``model(input_values, output_hidden_states=True)`` under ``torch.inference_mode()``, the chosen layer
   copied to the CPU.

Prints seconds of audio per second for both, the ratio store/bare (goal >= 0.8), the largest difference
between the stored and the bare features of the first utterances, and a Markdown table row.

    .venv/bin/python bench/bench_ssl_store.py --device cpu --utterances 8
    python bench/bench_ssl_store.py --device cuda --utterances 200 --layers 6

WavLMConfig's default ``feat_extract_norm`` is "group" (as wavlm-base-plus): only equal lengths share a
batch, so on real (all different) lengths every batch holds one utterance; ``--feat-extract-norm layer``
shows padded batches.
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser_mtl.data.manifest import ManifestRow
from ser_mtl.data.pretrained import PretrainedFeatures, plan_batches
from ser_mtl.data.store import FeatureStore

SR = 16000
CHUNK = 256  # the store's default chunk_size: utterances per extract_batch call


def synth(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """(n,) float32 'voiced' harmonics on a gliding f0 plus noise bursts; the envelope never drops by 20 dB."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)  # syllable-rate, >= 0.1
    noise = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0.5)
    return (0.15 * envelope * voiced + 0.02 * noise).astype(np.float32)


def make_corpus(root: Path, n: int) -> tuple[list[ManifestRow], float]:
    rng = np.random.default_rng(0)
    rows, total = [], 0.0
    for i in range(n):
        x = synth(rng, float(rng.uniform(2.0, 8.0)))
        sf.write(root / f"u{i:04d}.wav", x, SR, subtype="PCM_16")
        rows.append(ManifestRow(f"u{i:04d}", "bench", f"u{i:04d}.wav", len(x) / SR, "s", "F", "1",
                                "", "", None, None, None))
        total += len(x) / SR
    return rows, total


def make_model(folder: Path, feat_extract_norm: str) -> None:
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(feat_extract_norm=feat_extract_norm)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, return_attention_mask=True,
                             do_normalize=True).save_pretrained(folder)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_model(folder: Path, device: str) -> tuple[torch.nn.Module, object]:
    """``AutoModel.from_pretrained`` in eval mode on ``device``, warmed up, and its feature extractor."""
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval().to(device)
    with torch.inference_mode():  # warm-up (CUDA context, kernels), as the store's extractor gets
        model(torch.randn(1, SR, device=device), output_hidden_states=True)
    sync(device)
    return model, AutoFeatureExtractor.from_pretrained(folder)


def bare_loop(model: torch.nn.Module, pre, root: Path, rows: list[ManifestRow], layer: int, device: str,
              batch_seconds: float, keep: int) -> list[np.ndarray]:
    """(768, frames) float32 features of the first ``keep`` utterances (the caller times the loop)."""
    equal_only = model.config.feat_extract_norm == "group"
    kept: dict[int, np.ndarray] = {}
    for c in range(0, len(rows), CHUNK):
        chunk = rows[c:c + CHUNK]
        waves = [sf.read(root / row.path, dtype="float32")[0] for row in chunk]  # (T,) each
        for batch in plan_batches([len(w) for w in waves], round(batch_seconds * SR), equal_only):
            inputs = pre([waves[i] for i in batch], sampling_rate=SR, padding=True, return_tensors="pt")
            padded = len({len(waves[i]) for i in batch}) > 1
            with torch.inference_mode():
                hidden = model(inputs["input_values"].to(device), output_hidden_states=True,
                               attention_mask=inputs["attention_mask"].to(device) if padded else None
                               ).hidden_states[layer].float().cpu()  # (B, frames, 768)
            for b, i in enumerate(batch):
                if c + i < keep:
                    kept[c + i] = hidden[b].T.numpy()  # (768, frames of the longest)
    sync(device)
    return [kept[i] for i in sorted(kept)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--layers", type=int, nargs="+", default=[12], help="hidden states (0..12) to store")
    parser.add_argument("--layer-mode", choices=["mean", "stack"], default="mean")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch-seconds", type=float, default=200.0)
    parser.add_argument("--feat-extract-norm", choices=["group", "layer"], default="group")
    parser.add_argument("--repeats", type=int, default=2, help="alternating store/bare passes; best of each")
    parser.add_argument("--work-dir", type=str, default=None)
    args = parser.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_ssl_"))
    (work / "audio").mkdir(parents=True, exist_ok=True)
    try:
        model_dir = work / "wavlm-base-random"
        start = time.perf_counter()
        make_model(model_dir, args.feat_extract_norm)
        rows, audio_s = make_corpus(work / "audio", args.utterances)
        print(f"{args.utterances} utterances, {audio_s:.1f} s of audio; model + corpus written in "
              f"{time.perf_counter() - start:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{torch.cuda.get_device_name() if args.device == 'cuda' else platform.processor() or 'cpu'}")

        extractor = PretrainedFeatures(str(model_dir), layers=args.layers, layer_mode=args.layer_mode,
                                       dtype=args.dtype, batch_seconds=args.batch_seconds)
        start = time.perf_counter()
        extractor.to(args.device).check()  # weights hash + model load
        extractor.extract(torch.from_numpy(synth(np.random.default_rng(1), 1.0)))  # warm-up
        sync(args.device)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        model, pre = bare_model(model_dir, args.device)
        loaded = time.perf_counter() - start

        # Alternate the order: CPU kernels (oneDNN) are set up per input shape, so a second pass over the
        # same lengths is faster, whichever method runs it.
        keep, layer, times = min(4, len(rows)), extractor.settings()["layers"][0], {"store": [], "bare": []}
        for r in range(args.repeats):
            for method in ("store", "bare") if r % 2 == 0 else ("bare", "store"):
                start = time.perf_counter()
                if method == "store":
                    store = FeatureStore(rows, str(work / "audio"), extractor, str(work / f"cache{r}"))
                    store.build(progress=False, device=args.device)
                    sync(args.device)
                else:
                    bare = bare_loop(model, pre, work / "audio", rows, layer, args.device, args.batch_seconds, keep)
                times[method].append(time.perf_counter() - start)
        print("pass times (s): " + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in times.items()))
        store_s, bare_s = min(times["store"]), min(times["bare"])
        diff = math.nan
        if args.layer_mode == "mean" and len(args.layers) == 1:
            diff = max(float(np.abs(store.frames(i).astype(np.float32) - bare[i][:, :store.lengths[i]]).max())
                       for i in range(keep))
        frames = int(store.lengths.sum())
        print(f"store: {store_s:.2f} s ({audio_s / store_s:.1f} audio s/s), setup (hash + load + warm-up) "
              f"{setup:.1f} s; {frames} frames ({frames / audio_s:.1f}/s), "
              f"{(store.path / 'features.f16').stat().st_size / 2**20:.0f} MiB")
        print(f"bare:  {bare_s:.2f} s ({audio_s / bare_s:.1f} audio s/s), from_pretrained + warm-up {loaded:.1f} s")
        print(f"ratio store/bare throughput: {bare_s / store_s:.2f} (goal >= 0.8); stored vs bare features of the "
              f"first {keep} utterances: max |diff| {diff:.2e} (float16 storage)")
        print("| device | model | feat_extract_norm | layers | dtype | utterances | audio s | store audio s/s | "
              "bare audio s/s | store/bare | max diff |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {args.device} | WavLM Base (random) | {args.feat_extract_norm} | {args.layers} {args.layer_mode} | "
              f"{args.dtype} | {args.utterances} | {audio_s:.0f} | {audio_s / store_s:.1f} | {audio_s / bare_s:.1f} | "
              f"{bare_s / store_s:.2f} | {diff:.1e} |")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
