"""On-disk feature store: every utterance featurized once per front-end, read as a memory map.

LibriSpeech train-clean-360 is ~33 GB of float16 frames, so features never sit in RAM: utterance i is
one contiguous (rows, length) block of ``features.f16``, read through ``np.memmap``. The folder
``cache_dir/<key>/`` is keyed by every row's audio (id, corpus, path, duration) and the `FeatureExtractor`'s
``key()`` (for a pretrained model: its name, weights hash, layers and settings) but not the corpus root or
the labels, so other audio, settings or weights never read stale frames, while a moved or relabelled corpus
keeps its store:

- ``features.f16``  raw float16, utterance i at frames [offsets[i], offsets[i] + lengths[i])
- ``index.npz``     ``offsets``, ``lengths``: (U,) int64 frames, in the order of ``rows``
- ``COMPLETE.json`` written last, atomically; a folder without it is never read as a store
- ``build.lock``    fcntl lock: one process (DDP rank, SLURM task) builds, the others wait

Resumable build: chunks of rows become ``parts/<k>.f16`` + ``.json`` (written last: chunk done), then
are appended to ``features.f16.partial`` one by one (progress recorded, part deleted): peak disk use is
one store plus one chunk. Unreadable audio is logged, listed in ``skipped`` and gets length 0. A chunk's
utterances go to the extractor together (``extract_batch``: a pretrained model batches them on its device).
Spawned workers need the ``if __name__ == "__main__":`` guard in the calling script.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_mtl.data.audio import load_audio
from ser_mtl.data.extractor import FeatureExtractor, NoSpeechError
from ser_mtl.data.manifest import CorpusError, ManifestRow, Skip
from ser_mtl.io_utils import DiskFullError, atomic_open, atomic_write_text, disk_full_message, is_disk_full

log = logging.getLogger(__name__)

_FORMAT = 2  # part of the key: a new on-disk format never opens an old folder (2: labels no longer hashed)
DTYPE = np.float16  # frames are stored as float16 (range +-65504, ~3 significant digits)
COMPLETE = "COMPLETE.json"
DATA = "features.f16"
INDEX = "index.npz"


class StoreNotBuiltError(RuntimeError):
    """The store folder has no COMPLETE marker (never built, or a build is in progress/was killed)."""


def store_key(rows: Sequence[ManifestRow], cfg: FeatureExtractor) -> str:
    """16 hex digits hashing the format, the extractor's key and, in order, what decides each row's audio
    (utt_id, corpus, path, duration): labels, speakers and sessions do not change features, so a relabelled
    corpus (another class set, a new label column) keeps its store."""
    digest = hashlib.sha256(f"ser-mtl-store-v{_FORMAT}|{cfg.key()}|{len(rows)}\n".encode())
    for row in rows:
        digest.update(json.dumps([row.utt_id, row.corpus, row.path, row.duration]).encode() + b"\n")
    return digest.hexdigest()[:16]


def _write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another process is building this feature store; waiting for it", path.parent)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@dataclass
class _ChunkJob:
    """Everything a worker needs to featurize rows [start, start + len(rows)) into part k."""

    k: int
    start: int
    rows: list[ManifestRow]
    root: str
    cfg: FeatureExtractor
    parts: str


def _run_chunk(job: _ChunkJob) -> list[dict]:
    """Write part k (data, then json); returns the skipped utterances as dicts."""
    parts = Path(job.parts)
    reasons: dict[int, str] = {}
    waves: dict[int, torch.Tensor] = {}
    for j, row in enumerate(job.rows):
        try:
            waves[j] = load_audio(Path(job.root) / row.path, job.cfg.sample_rate)  # (T,)
        except CorpusError as exc:
            reasons[j] = str(exc).removeprefix(f"{Path(job.root) / row.path}: ")  # Skip.path names the file
    feats = dict(zip(waves, job.cfg.extract_batch(list(waves.values()))))  # j -> (rows, frames) float16
    lengths: list[int] = []
    skipped: list[dict] = []
    with atomic_open(parts / f"{job.k:06d}.f16", "wb") as f:
        for j, row in enumerate(job.rows):
            out = feats.get(j)
            if isinstance(out, NoSpeechError):
                reasons[j] = str(out)
            if j in reasons:
                skipped.append({"utt": job.start + j, "path": row.path, "reason": reasons[j]})
                lengths.append(0)
                continue
            f.write(np.ascontiguousarray(out).tobytes())
            lengths.append(int(out.shape[1]))
    _write_json(parts / f"{job.k:06d}.json", {"start": job.start, "lengths": lengths, "skipped": skipped})
    return skipped


class FeatureStore:
    """Features of `rows` (audio under `root`) for `cfg`, stored under `cache_dir`/<key>."""

    def __init__(self, rows: list[ManifestRow], root: str, cfg: FeatureExtractor, cache_dir: str,
                 chunk_size: int = 256) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.rows, self.root, self.cfg, self.chunk_size = list(rows), Path(root), cfg, chunk_size
        self.path = Path(cache_dir) / store_key(self.rows, cfg)
        self._offsets: np.ndarray | None = None
        self._lengths: np.ndarray | None = None
        self._skipped: list[Skip] = []
        self._data: np.ndarray | None = None

    # -- reading -----------------------------------------------------------------------------
    def is_complete(self) -> bool:
        return (self.path / COMPLETE).is_file()

    def __len__(self) -> int:
        return len(self.rows)

    def open(self) -> FeatureStore:
        """Load the index of a complete store; StoreNotBuiltError if it is not complete."""
        if not self.is_complete():
            raise StoreNotBuiltError(f"{self.path}: feature store is not complete (no {COMPLETE}); "
                                     f"call build() first")
        fix = f"delete {self.path} and run `ser-mtl cache` (or the fit) again to rebuild it"
        try:
            meta = json.loads((self.path / COMPLETE).read_text())
            n_utts, config, skipped = meta["n_utterances"], meta["config"], meta["skipped"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StoreNotBuiltError(f"{self.path / COMPLETE}: damaged (expected the JSON record of a finished "
                                     f"store: {type(err).__name__}: {err}); {fix}") from None
        if n_utts != len(self.rows) or config != self.cfg.settings():
            raise StoreNotBuiltError(f"{self.path / COMPLETE}: written for another manifest or config "
                                     f"({n_utts} utterances, config {config}); {fix}")
        try:
            with np.load(self.path / INDEX) as index:
                self._offsets, self._lengths = index["offsets"], index["lengths"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise StoreNotBuiltError(f"{self.path / INDEX}: damaged (expected 'offsets' and 'lengths' arrays: "
                                     f"{type(err).__name__}: {err}); {fix}") from None
        if self._lengths.shape != (len(self.rows),) or self._offsets.shape != (len(self.rows),):
            raise StoreNotBuiltError(f"{self.path / INDEX}: {self._lengths.shape[0]} lengths for {len(self.rows)} "
                                     f"utterances; {fix}")
        expected = int(self._lengths.sum()) * self.cfg.rows * np.dtype(DTYPE).itemsize
        size = (self.path / DATA).stat().st_size if (self.path / DATA).is_file() else -1
        if size != expected:
            raise StoreNotBuiltError(f"{self.path / DATA}: expected {expected} bytes (the index's "
                                     f"{int(self._lengths.sum())} frames x {self.cfg.rows} rows x 2), found "
                                     f"{'no file' if size < 0 else size}; {fix}")
        self._skipped = [Skip(s["path"], None, s["reason"]) for s in skipped]
        self._data = None
        if self._skipped:
            log.warning("%s: %d of %d utterances have no features (unusable audio), see "
                        "skipped in %s", self.path, len(self._skipped), len(self.rows), COMPLETE)
        return self

    def _require_open(self) -> None:
        if self._lengths is None:
            raise StoreNotBuiltError(f"{self.path}: call build() or open() before reading the store")

    @property
    def lengths(self) -> np.ndarray:
        """(U,) int64 frames per utterance, in the order of rows (0 for skipped ones)."""
        self._require_open()
        return self._lengths

    @property
    def offsets(self) -> np.ndarray:
        """(U,) int64 first frame of each utterance in the data file."""
        self._require_open()
        return self._offsets

    @property
    def skipped(self) -> list[Skip]:
        """Utterances whose audio could not be featurized (path relative to the corpus root)."""
        self._require_open()
        return self._skipped

    def frames(self, i: int) -> np.ndarray:
        """(rows, lengths[i]) float16 read-only view of utterance i in the memory map."""
        self._require_open()
        if not 0 <= i < len(self.rows):
            raise IndexError(f"utterance index {i} out of range for a store of {len(self.rows)}")
        if self._data is None:
            total = int(self._lengths.sum()) * self.cfg.rows
            # np.memmap cannot map an empty file (every utterance skipped).
            self._data = (np.memmap(self.path / DATA, dtype=DTYPE, mode="r", shape=(total,))
                          if total else np.zeros(0, DTYPE))
        n_bins, start, length = self.cfg.rows, int(self._offsets[i]), int(self._lengths[i])
        return self._data[start * n_bins:(start + length) * n_bins].reshape(n_bins, length)

    def __getstate__(self) -> dict:
        # DataLoader workers get the index, not a pickled copy of the whole memory map.
        return {**self.__dict__, "_data": None}

    # -- building ----------------------------------------------------------------------------
    def build(self, num_workers: int = 0, progress: bool = True, device: str | None = None) -> FeatureStore:
        """Featurize every row unless the store is complete; safe to call from many processes. ``device``:
        where the extractor runs (None: its ``default_device``; a pretrained model prefers the GPU)."""
        if not self.is_complete():
            self.path.mkdir(parents=True, exist_ok=True)
            with _exclusive_lock(self.path / "build.lock"):
                if not self.is_complete():  # another process may have finished while we waited
                    try:
                        self._build_locked(num_workers, progress, device or self.cfg.default_device)
                    except OSError as err:
                        if is_disk_full(err) and not isinstance(err, DiskFullError):
                            raise DiskFullError(err.errno, disk_full_message(
                                err, f"feature store {self.path}")) from err
                        raise
        return self.open()

    def _build_locked(self, num_workers: int, progress: bool, device: str) -> None:
        parts = self.path / "parts"
        parts.mkdir(exist_ok=True)
        for stale in [*parts.glob(".*.tmp"), *self.path.glob(".*.tmp")]:  # from a killed build; we hold the lock
            stale.unlink()
        plan_path = parts / "plan.json"
        chunk_size = json.loads(plan_path.read_text())["chunk_size"] if plan_path.exists() else self.chunk_size
        _write_json(plan_path, {"chunk_size": chunk_size})  # a resumed build keeps the first chunking
        starts = list(range(0, len(self.rows), chunk_size))
        todo = [k for k in range(len(starts)) if not (parts / f"{k:06d}.json").exists()]
        if len(todo) < len(starts):
            log.warning("%s: resuming a build, %d of %d chunks already done",
                        self.path, len(starts) - len(todo), len(starts))
        if not self.cfg.parallel_build and num_workers > 0:  # one model in this process, not one per worker
            log.info("%s: %s runs in this process on %s (num_workers=%d is for the training loaders)",
                     self.path, type(self.cfg).__name__, device, num_workers)
            num_workers = 0
        extractor = self.cfg.to(device) if todo else self.cfg
        jobs = [_ChunkJob(k, starts[k], self.rows[starts[k]:starts[k] + chunk_size], str(self.root),
                          extractor, str(parts)) for k in todo]
        done = len(self.rows) - sum(len(job.rows) for job in jobs)
        with tqdm(total=len(self.rows), initial=done, unit="utt", desc=f"features {self.path.name}",
                  disable=not progress) as bar:
            for job, skipped in self._run_jobs(jobs, num_workers, single_thread=self.cfg.parallel_build):
                for s in skipped:
                    log.warning("skipping utterance %d (%s): %s: %s", s["utt"], self.rows[s["utt"]].utt_id,
                                self.root / s["path"], s["reason"])
                bar.update(len(job.rows))
        self._assemble(parts, len(starts))

    @staticmethod
    def _run_jobs(jobs: list[_ChunkJob], num_workers: int,
                  single_thread: bool) -> Iterator[tuple[_ChunkJob, list[dict]]]:
        if num_workers <= 0:
            # One small STFT per utterance: intra-op threads only add contention (13 ms vs 181 ms
            # per utterance measured on a loaded 2-core machine), so featurise single-threaded; a
            # pretrained model's large matrix products keep every thread (single_thread=False).
            threads = torch.get_num_threads()
            torch.set_num_threads(1 if single_thread else threads)
            try:
                for job in jobs:
                    yield job, _run_chunk(job)
            finally:
                torch.set_num_threads(threads)
            return
        # spawn: fork + torch threads can deadlock; num_workers processes x 1 thread, not x all cores
        pool = ProcessPoolExecutor(max_workers=num_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=torch.set_num_threads, initargs=(1,))
        try:
            pending = {pool.submit(_run_chunk, job): job for job in jobs}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield pending.pop(fut), fut.result()  # re-raises a worker's error here
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on error: keep finished chunks, drop the rest

    def _assemble(self, parts: Path, n_chunks: int) -> None:
        """Append the parts into one data file (resumable), then write the index and COMPLETE."""
        partial, state_path = self.path / f"{DATA}.partial", parts / "assemble.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {"next": 0, "bytes": 0}
        if not partial.exists() and (self.path / DATA).exists():
            os.replace(self.path / DATA, partial)  # killed between the final rename and COMPLETE
        if state["next"] > 0 and not partial.exists():
            raise StoreNotBuiltError(f"{partial}: missing although {state_path} says parts were "
                                     f"appended to it; delete {self.path} to rebuild")
        with open(partial, "r+b" if partial.exists() else "wb") as out:
            out.truncate(state["bytes"])  # drop a part half-appended by a killed build
            out.seek(state["bytes"])
            for k in range(state["next"], n_chunks):
                part = parts / f"{k:06d}.f16"
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
                out.flush()
                os.fsync(out.fileno())
                _write_json(state_path, {"next": k + 1, "bytes": out.tell()})
                part.unlink()
        lengths = np.zeros(len(self.rows), np.int64)
        skipped: list[dict] = []
        for k in range(n_chunks):
            meta = json.loads((parts / f"{k:06d}.json").read_text())
            lengths[meta["start"]:meta["start"] + len(meta["lengths"])] = meta["lengths"]
            skipped += meta["skipped"]
        offsets = np.cumsum(lengths) - lengths  # (U,) frames before each utterance
        with atomic_open(self.path / INDEX, "wb") as f:
            np.savez(f, offsets=offsets, lengths=lengths)
        os.replace(partial, self.path / DATA)
        _write_json(self.path / COMPLETE, {
            "format": _FORMAT, "config": self.cfg.settings(), "n_utterances": len(self.rows),
            "n_bins": self.cfg.rows, "total_frames": int(lengths.sum()), "dtype": "float16",
            "data": DATA, "index": INDEX, "skipped": skipped})
        shutil.rmtree(parts)


def running_stats(store: FeatureStore, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(F,) float64 mean and std (ddof=0) over all frames of `indices`, by Chan et al.'s parallel update."""
    n_bins = store.cfg.rows
    count, mean, m2 = 0, np.zeros(n_bins), np.zeros(n_bins)
    for i in indices:
        x = store.frames(int(i)).astype(np.float64)  # (F, L)
        n = x.shape[1]
        if n == 0:
            continue
        m = x.mean(axis=1)
        d = m - mean
        total = count + n
        m2 += ((x - m[:, None]) ** 2).sum(axis=1) + d * d * count * n / total
        mean += d * n / total
        count = total
    if count == 0:
        raise ValueError(f"{store.path}: running_stats over {len(indices)} utterances with no frames")
    return mean, np.sqrt(m2 / count)
