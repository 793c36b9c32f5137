"""openSMILE functionals per utterance (eGeMAPSv02: 88, ComParE_2016: 6373), cached one file per utterance.

``audio="trimmed"`` reads exactly the samples the feature store turns into the network's spectrogram
(so pause-related eGeMAPS parameters describe the trimmed signal); ``raw`` the whole file, silences
included, as most published eGeMAPS baselines do. The cache, under ``data.cache_dir``::

    opensmile/<corpus>/<set>_<audio>_<key>/feature_names.json   the set's names, in column order
    opensmile/<corpus>/<set>_<audio>_<key>/<utt>.npy            (D,) float32 of one utterance

``<utt>`` hashes the utterance's id, path and duration, so another tree of the same corpus gets other
files. Files are written atomically: a killed run keeps what it finished, a re-run computes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ser_mtl.data.audio import load_audio
from ser_mtl.data.extractor import FeatureExtractor, NoSpeechError
from ser_mtl.data.manifest import CorpusError, ManifestRow
from ser_mtl.io_utils import atomic_open, atomic_write_json

SmileSet = Literal["egemaps", "compare"]
Audio = Literal["trimmed", "raw"]
AUDIO = get_args(Audio)
# our option name -> (opensmile.FeatureSet member, functionals per utterance, label for tables)
FEATURE_SETS = {"egemaps": ("eGeMAPSv02", 88, "eGeMAPS"), "compare": ("ComParE_2016", 6373, "ComParE")}
_STALE_TMP_SECONDS = 3600  # a temporary file this old belongs to a killed run, not a running one


class BaselineError(ValueError):
    """A baseline that cannot run as asked (missing package, bad option, unusable audio); names the cause."""


def import_opensmile():
    """The ``opensmile`` module, or BaselineError with the one line that says how to get it."""
    try:
        import opensmile
    except ImportError:
        raise BaselineError("--baseline.features egemaps/compare needs audEERING's opensmile package: "
                            "pip install opensmile") from None
    return opensmile


def _smile(feature_set: str):
    opensmile = import_opensmile()
    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[feature_set][0]),
                           feature_level=opensmile.FeatureLevel.Functionals)


def utterance_samples(path: Path, cfg: FeatureExtractor, audio: str = "trimmed") -> np.ndarray:
    """(T,) float32 samples openSMILE reads for one file: the store's trimmed speech, or the whole file."""
    wave = load_audio(path, cfg.sample_rate)  # (T,)
    if audio == "trimmed":
        wave = cfg.speech_only(wave)  # (T',) the samples the front-end turns into frames
    return wave.numpy().astype(np.float32)


def functionals(smile, samples: np.ndarray, sample_rate: int, path: Path | str = "signal") -> np.ndarray:
    """(D,) float32 functionals of one signal; BaselineError naming ``path`` if any is not finite."""
    values = smile.process_signal(samples, sample_rate).to_numpy(dtype=np.float32)  # (1, D)
    if values.shape[0] != 1 or not np.isfinite(values).all():
        raise BaselineError(f"{path}: openSMILE gave {values.shape} values, "
                            f"{int((~np.isfinite(values)).sum())} not finite; expected one finite row")
    return values[0]


def utterance_file_name(row: ManifestRow) -> str:
    """``<16 hex>.npy``: the hash of the utterance's id, path and duration (not its labels)."""
    text = json.dumps([row.utt_id, row.corpus, row.path, row.duration])
    return hashlib.sha256(text.encode()).hexdigest()[:16] + ".npy"


@dataclass
class _Job:
    feature_set: str
    audio: str
    cfg: FeatureExtractor
    items: list[tuple[str, str]]  # (audio file, cache file)


_WORKER_SMILE: dict[str, object] = {}  # one Smile per process and feature set


def _extract(job: _Job) -> int:
    """Write the cache file of every item of ``job``; returns how many were extracted."""
    smile = _WORKER_SMILE.get(job.feature_set)
    if smile is None:
        smile = _WORKER_SMILE[job.feature_set] = _smile(job.feature_set)
    for audio_path, cache_path in job.items:
        try:
            samples = utterance_samples(Path(audio_path), job.cfg, job.audio)  # (T,)
        except NoSpeechError as err:
            raise BaselineError(f"{audio_path}: {err}") from None
        except CorpusError as err:
            raise BaselineError(str(err)) from None
        values = functionals(smile, samples, job.cfg.sample_rate, audio_path)  # (D,)
        with atomic_open(cache_path, "wb") as handle:
            np.save(handle, values)
    return len(job.items)


class SmileCache:
    """openSMILE functionals of a feature set for utterances of any corpus, cached under ``cache_dir``."""

    def __init__(self, feature_set: SmileSet, cfg: FeatureExtractor, cache_dir: str | os.PathLike,
                 audio: Audio = "trimmed") -> None:
        if feature_set not in FEATURE_SETS:
            raise BaselineError(f"openSMILE feature set must be one of {sorted(FEATURE_SETS)}, got {feature_set!r}")
        if audio not in AUDIO:
            raise BaselineError(f"--baseline.audio must be one of {AUDIO}, got {audio!r}")
        self.opensmile = import_opensmile()
        self.feature_set, self.cfg, self.audio = feature_set, cfg, audio
        self.dim = FEATURE_SETS[feature_set][1]
        self.cache_dir = Path(cache_dir)

    def key(self) -> str:
        """12 hex digits over what decides the numbers: opensmile version, set, and the samples' settings."""
        c = self.cfg
        samples = [c.sample_rate] + (c.speech_key() if self.audio == "trimmed" else [])
        text = json.dumps([self.opensmile.__version__, FEATURE_SETS[self.feature_set][0], self.audio, samples])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def folder(self, corpus: str) -> Path:
        return self.cache_dir / "opensmile" / corpus / f"{self.feature_set}_{self.audio}_{self.key()}"

    def _read(self, path: Path) -> np.ndarray | None:
        """A cached (D,) vector, or None when the file is missing or not a finite (D,) vector."""
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, a folder, or damaged
            return None
        return values if values.shape == (self.dim,) and np.isfinite(values).all() else None

    def features(self, rows: list[ManifestRow], root: str | os.PathLike, indices, num_workers: int = 0,
                 ) -> tuple[np.ndarray, int]:
        """(U, D) float32 functionals of ``rows[indices]`` (audio in ``root``); how many were not cached."""
        indices = [int(i) for i in indices]
        paths = {i: self.folder(rows[i].corpus) / utterance_file_name(rows[i]) for i in indices}
        for folder in {p.parent for p in paths.values()}:
            self._prepare(folder)
        cached = {i: self._read(p) for i, p in paths.items()}
        todo = [i for i in indices if cached[i] is None]
        if todo:
            items = [(str(Path(root) / rows[i].path), str(paths[i])) for i in todo]
            self._run(items, num_workers)
            for i in todo:
                cached[i] = self._read(paths[i])
                if cached[i] is None:
                    raise BaselineError(f"{paths[i]}: written but not readable as a ({self.dim},) vector")
        matrix = np.stack([cached[i] for i in indices]) if indices else np.zeros((0, self.dim), np.float32)
        return matrix, len(todo)  # (U, D)

    def _prepare(self, folder: Path) -> None:
        """Create ``folder``, drop temporary files of killed runs, record the set's feature names once."""
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for stale in folder.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):  # its writer renamed it meanwhile
                if now - stale.stat().st_mtime > _STALE_TMP_SECONDS:
                    stale.unlink()
        names = folder / "feature_names.json"
        if not names.is_file():
            atomic_write_json(names, list(_smile(self.feature_set).feature_names))

    def _run(self, items: list[tuple[str, str]], num_workers: int) -> None:
        if num_workers <= 0 or len(items) < 2:
            _extract(_Job(self.feature_set, self.audio, self.cfg, items))
            return
        n_jobs = min(len(items), 4 * num_workers)  # a few chunks per worker: a kill loses little, load balances
        jobs = [_Job(self.feature_set, self.audio, self.cfg, items[k::n_jobs]) for k in range(n_jobs)]
        ctx = multiprocessing.get_context("spawn")  # as the feature store: fork + torch threads can deadlock
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=ctx) as pool:
            list(pool.map(_extract, jobs))  # re-raises a worker's error here

    def feature_names(self, corpus: str) -> list[str]:
        return json.loads((self.folder(corpus) / "feature_names.json").read_text(encoding="utf-8"))
