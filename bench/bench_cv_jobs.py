"""Wall time of one small cross-validation run with ``--cv.jobs 1`` and with ``--cv.jobs N``, side by side.

    .venv/bin/python bench/bench_cv_jobs.py [--jobs 1,2] [--folds 0-3] [--epochs 2] [--devices 0,1]
        [--tiny] [--work DIR] [-- EXTRA TRAINING ARGS]

Writes a synthetic corpus (``ser_mtl.data.synth``; ``--tiny``: the tests' 3 sessions x 32
utterances), builds its feature store once (so no timing includes featurisation), then runs the
same ``ser-mtl cv`` (configs/demo.yaml, ``--epochs`` epochs, one repeat of ``--folds``) once per
``--jobs`` value into ``WORK/jobs{N}`` through the real runner (each fit and test a child
process) and prints wall time, runs per minute and the speed-up over the first value, plus whether
every run's ``metrics.json`` is identical across the values (it is at equal threads per fit: run with
``OMP_NUM_THREADS=1`` to check; with more threads for one job the CPU sums in another order). Results are recorded in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from ser_mtl.analysis.summary import run_dir_name
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.cv_command import parse_int_list
from ser_mtl.runs.local import plan_slots

TINY = {"iemocap_sessions": 3, "iemocap_dialogs": 2, "iemocap_utterances": 16, "iemocap_seconds": (1.0, 2.0),
        "librispeech_train_speakers": 4, "librispeech_train_utterances": 4, "librispeech_test_speakers": 2,
        "librispeech_test_utterances": 4}


def machine() -> str:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return (f"{platform.node()}: {len(os.sched_getaffinity(0))} CPU cores ({platform.processor() or platform.machine()})"
            + (f", GPUs: {', '.join(gpus)}" if gpus else ", no GPU") + f", torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,2", help="values of --cv.jobs to compare, e.g. 1,2,4")
    parser.add_argument("--folds", default="0-3", help="folds of the demo's loso_session scheme")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", default=None, help="--cv.devices for every value (default: all visible)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny corpus (a smoke run)")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    jobs_values, folds = parse_int_list(args.jobs), parse_int_list(args.folds)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_cv_jobs_"))
    corpus = work / "corpus"
    if not (corpus / "IEMOCAP_full_release").is_dir():
        from ser_mtl.data.synth import synth

        synth(str(corpus), **(TINY if args.tiny else {}))
    config = ["--config", "configs/demo.yaml", "--data.root", str(corpus / "IEMOCAP_full_release"),
              "--data.aux_root", str(corpus / "LibriSpeech"), "--data.cache_dir", str(work / "cache"),
              "--trainer.max_epochs", str(args.epochs), "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false", *extra]
    if args.tiny:
        config += ["--data.segment_frames", "64", "--data.segment_hop", "32",
                   "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--data.verification_enrol", "3"]
    from ser_mtl.lightning_cli import build_datamodule

    build_datamodule(config).prepare_data()  # the feature stores, outside every timing

    print(machine())
    print(f"{len(folds)} runs (folds {args.folds}, 1 repeat), {args.epochs} epoch(s), "
          f"corpus {'tiny' if args.tiny else 'synth default'}; work {work}\n")
    rows, metrics = [], {}
    for jobs in jobs_values:
        out = work / f"jobs{jobs}"
        if out.exists():
            raise SystemExit(f"{out} exists: a re-run would skip its finished runs; use a fresh --work")
        slots = plan_slots(min(jobs, len(folds)), args.devices)
        start = time.perf_counter()
        run_cv(config, folds, 1, str(out), jobs=jobs, devices=args.devices)
        wall = time.perf_counter() - start
        metrics[jobs] = [(out / run_dir_name(f, 0) / "metrics.json").read_bytes() for f in folds]
        rows.append((jobs, "; ".join(sorted({s.describe() for s in slots})), wall))
    base = rows[0][2]
    print("| --cv.jobs | each job | wall s | runs/min | speed-up |")
    print("|---|---|---|---|---|")
    for jobs, where, wall in rows:
        print(f"| {jobs} | {where} | {wall:.1f} | {60 * len(folds) / wall:.2f} | {base / wall:.2f}x |")
    same = all(m == metrics[jobs_values[0]] for m in metrics.values())
    print(f"\nmetrics.json identical across --cv.jobs values: {'yes' if same else 'NO'}"
          + ("" if same or os.environ.get("OMP_NUM_THREADS") else
             " (the jobs ran with different threads per fit; OMP_NUM_THREADS=1 makes them comparable)"))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
