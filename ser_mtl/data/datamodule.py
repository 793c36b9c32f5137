"""SERDataModule: corpus -> fold split -> labels -> normalised segments -> mixed batches.

    ser-mtl fit --config configs/iemocap.yaml --data.root /corpora/IEMOCAP_full_release \
        --data.aux_root /corpora/LibriSpeech --data.fold 3

``__init__`` reads the (cached) manifests, draws the speakers and makes the fold split and the speaker
label space, so ``num_classes`` and ``num_speakers`` exist for LightningCLI's argument links.
``prepare_data`` builds the feature stores; ``setup`` fits the label scheme (K-means for av3/av5) and
the normalisation statistics on the training split only, unless ``load_state_dict`` restored a
checkpoint's. Batches (docs/interfaces.md): ``x`` (B, C, F, T) (C = 1 but for model layers kept apart); ``emotion``, ``gender``, ``speaker``,
``utt`` (B,), -1 where a label is missing; and per value task of the model (``ser_mtl/tasks.py``: ``activation``,
``valence``, ``dominance``, ``age``) its (B,) float32 values on [0, 1], NaN where missing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ser_mtl.data.data_summary import describe, skip_summary
from ser_mtl.data.datasets import SegmentDataset, UtteranceLabels
from ser_mtl.data.emobox_folds import emobox_scheme
from ser_mtl.data.extractor import FeatureExtractor, extractor_from_config
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.folds import FoldError, Split, make_split, num_folds
from ser_mtl.data.labels import make_label_scheme, restored_scheme
from ser_mtl.data.manifest import ManifestRow
from ser_mtl.data.manifest_cache import cached_manifest
from ser_mtl.data.sampling import MixedBatchSampler, SamplingError, ShardedEvalSampler
from ser_mtl.data.speaker_draw import draw_rows, draw_source
from ser_mtl.data.store import FeatureStore, running_stats
from ser_mtl.frontend import FrontEnd
from ser_mtl.tasks import TASKS, TaskError, regression_tasks, value_range

Task = Literal["categorical", "activation", "valence", "av3", "av5"]
Scheme = Literal["10fold", "loso", "loso_session", "speaker5fold", "speaker10fold", "official", "emobox", "cross_corpus"]
_GENDER_INDEX = {"F": 0, "M": 1}
DEFAULT_FEATURES = LogSpectrogram()  # paper 4.2 settings


class SERDataModule(pl.LightningDataModule):
    """Speech-emotion data with an auxiliary speaker/gender corpus, one fold of one scheme.

    Args:
        corpus: the labelled (primary) corpus: a reader registered in ``ser_mtl/data/corpora/__init__.py``
            (iemocap, msp_improv, librispeech, csv, crema_d, ravdess, msp_podcast).
        root: root of the primary corpus as it unpacks (e.g. ``.../IEMOCAP_full_release``).
        subset: LibriSpeech only: the primary corpus's subset (e.g. ``train-clean-360`` to pretrain on it).
        speakers: primary-corpus speakers drawn with ``seed`` before the split (``None``: all), drawn as
            ``aux_speakers``: ``speakers: N`` pretrains on a fine-tuning's ``aux_speakers: N`` (paper: 600).
        aux_corpus: reader of the auxiliary corpus (speaker and gender labels, no emotion).
        aux_root: root of the auxiliary corpus; ``None`` trains without auxiliary data.
        aux_subset: auxiliary subset (paper: ``train-clean-360``).
        aux_speakers: number of auxiliary speakers drawn with ``seed`` (paper: 600); ``None`` takes all,
            0 none (Figure 4a sweeps this). Draws of different sizes with one seed are nested.
        aux_fraction: share of every training batch drawn from the auxiliary corpus.
        target_corpus: the test corpus of the ``cross_corpus`` scheme (paper: MSP-IMPROV).
        target_root: root of ``target_corpus``.
        task: label scheme: ``categorical`` (the ``classes``), ``activation`` or ``valence``
            (3 levels, paper Table 2), ``av3``/``av5`` (K-means on valence-activation, fitted on training).
        classes: the emotion classes, in class-index order, from the corpus's labels (the manifest's
            ``emotion`` column after ``class_map``); None: the paper's four (angry, happy, neutral, sad).
            Rows with another label are unlabelled speech (see ``use_unlabelled``), never dropped.
        class_map: label -> class merges applied first (None: IEMOCAP's excited -> happy, as the paper;
            no merge for other corpora); e.g. ``{excited: happy}`` or ``{calm: neutral}``.
        scheme: ``10fold`` (speaker-stratified), ``loso`` (leave one speaker out), ``loso_session``
            (leave one session out), ``speaker5fold`` / ``speaker10fold`` (speaker-independent k-fold),
            ``official`` (the corpus's published partition: MSP-Podcast), ``emobox`` (EmoBox's fold files,
            ``folds_file``) or ``cross_corpus`` (``ser_mtl/data/folds.py``).
        fold: which fold of ``scheme`` this run trains/validates/tests.
        seed: seed of the fold assignment, both speaker draws and batch shuffling.
        folds_file: ``scheme: emobox`` only: EmoBox's ``data/<dataset>/`` folder (``fold_1/...jsonl``); fold k
            is EmoBox's fold_<k+1>; without an official validation file, a seeded 20 % of the training
            speakers validates (``ser_mtl/data/emobox_folds.py``).
        use_unlabelled: let training-speaker utterances outside the task's classes join training
            (reconstruction, adversarial, gender and speaker losses; no emotion label).
        batch_size: segments per batch (paper: 32).
        segment_frames: frames per segment (paper: 256, i.e. 2.56 s).
        segment_hop: hop between training segments in frames (50 % overlap by default).
        eval_hop: hop between validation/test segments; ``None`` = ``segment_hop``.
        features: the front-end, a `FeatureExtractor` (``class_path`` + ``init_args``): the paper's log
            spectrogram (``LogSpectrogram``, the default) or a pretrained speech model's layers
            (``ser_mtl.data.pretrained.PretrainedFeatures``); a change (or new weights) gives a new store.
        feature_device: where the store's features are computed (``cpu``, ``cuda``, ``cuda:1``); None: the
            extractor's choice (a pretrained model takes the GPU when there is one, the spectrogram the CPU).
        cache_dir: where manifests and feature stores live.
        num_workers: DataLoader worker processes (also used to build feature stores).
        max_stats_utterances: cap on the training utterances read for normalisation statistics
            (a seeded random sample beyond it; keeps LibriSpeech pretraining start-up short).
        verification_subset: auxiliary subset enrolled with the emotion test speakers for speaker verification
            at test time (paper: ``test-clean``); speaker-independent schemes only; ``None`` disables it.
        verification_enrol: utterances per speaker for enrolment (paper: 20).
        model_tasks: the model's tasks (linked from ``model.tasks``; None: the paper's three). Without a gender or
            speaker task the auxiliary corpus is not used, whatever ``aux_root`` says (``describe`` says so). Its
            value tasks (``activation``, ``valence``, ``dominance``, ``age``) get targets from the manifest; a
            model without the emotion task folds (and tests) the utterances that have one of those values.
        value_ranges: per value task, the [low, high] of the corpus's scale, mapped onto the [0, 1] the model
            learns (e.g. ``{valence: [1, 7]}``); None: each corpus's own (IEMOCAP and MSP-IMPROV 1-5, MSP-Podcast
            1-7; age 0-100 years). A value outside its range is an error naming the utterance.
    """

    def __init__(
        self,
        corpus: str = "iemocap", root: str = "data/IEMOCAP_full_release", subset: str | None = None,
        speakers: int | None = None,
        aux_corpus: str = "librispeech", aux_root: str | None = None, aux_subset: str = "train-clean-360",
        aux_speakers: int | None = 600, aux_fraction: float = 0.5,
        target_corpus: str | None = None, target_root: str | None = None,
        task: Task = "categorical", classes: list[str] | None = None, class_map: dict[str, str] | None = None,
        scheme: Scheme = "10fold", fold: int = 0, seed: int = 0, folds_file: str | None = None,
        use_unlabelled: bool = False,
        batch_size: int = 32, segment_frames: int = 256, segment_hop: int = 128, eval_hop: int | None = None,
        features: FeatureExtractor = DEFAULT_FEATURES, feature_device: str | None = None,
        cache_dir: str = ".cache/ser-mtl", num_workers: int = 0,
        max_stats_utterances: int = 4000,
        verification_subset: str | None = "test-clean", verification_enrol: int = 20,
        model_tasks: list[str] | None = None, value_ranges: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # a checkpoint's hyper-parameters hold the settings as a dict (SERDataModule.load_from_checkpoint)
        self.features = extractor_from_config(features)
        if batch_size < 1:
            raise SamplingError(f"data.batch_size={batch_size}: expected a number of segments per batch >= 1")
        if speakers is not None and speakers < 1:
            raise ValueError(f"data.speakers={speakers}: expected a number of primary-corpus speakers >= 1, or null "
                             "for all of them")
        self.rows, self.primary_draw = draw_rows(cached_manifest(corpus, root, cache_dir, subset), speakers, seed,
                                                 draw_source("data.speakers", speakers, root, subset))
        self.aux_unused = bool(aux_root) and model_tasks is not None and not {"gender", "speaker"} & set(model_tasks)
        aux_root = None if self.aux_unused else aux_root
        self.aux_rows, self.aux_draw = draw_rows(
            cached_manifest(aux_corpus, aux_root, cache_dir, aux_subset), aux_speakers, seed,
            draw_source("data.aux_speakers", aux_speakers, aux_root, aux_subset)) if aux_root else ([], None)
        self.target_rows: list[ManifestRow] = []
        if scheme == "cross_corpus":
            if not (target_corpus and target_root):
                raise FoldError("scheme 'cross_corpus' needs data.target_corpus and data.target_root")
            self.target_rows = cached_manifest(target_corpus, target_root, cache_dir)
        self.verification_rows: list[ManifestRow] = []
        if verification_subset and aux_root and scheme != "10fold":
            if (Path(aux_root) / verification_subset).is_dir():
                self.verification_rows = cached_manifest(aux_corpus, aux_root, cache_dir, verification_subset)
            else:
                warnings.warn(f"speaker verification disabled: no {verification_subset!r} folder in {aux_root} "
                              f"(set data.verification_subset, or null to silence this)", stacklevel=2)
        self.label_scheme = make_label_scheme(task, corpus, classes=classes, class_map=class_map)
        self._scheme_restored = False  # True once load_state_dict put a checkpoint's (fitted) scheme in place
        self.value_tasks = regression_tasks(model_tasks or [])
        if unknown := sorted(set(value_ranges or {}) - {t for t, spec in TASKS.items() if spec.column}):
            raise TaskError(f"data.value_ranges names {unknown}; expected value tasks of "
                             f"{[t for t, spec in TASKS.items() if spec.column]}")
        self._has_emotion = any(self.label_scheme.category(r) is not None for r in self.rows)
        if self.value_tasks and "emotion" not in model_tasks:  # fold the utterances the model learns from
            labelled = [any(getattr(r, TASKS[t].column) is not None for t in self.value_tasks) for r in self.rows]
            self._has_emotion = False
        else:
            labelled = [self.label_scheme.category(r) is not None or not self._has_emotion for r in self.rows]
        if scheme == "emobox":
            self.num_folds, self.split = emobox_scheme(folds_file, self.rows, labelled, fold, seed)
        else:
            self.num_folds = num_folds(self.rows, scheme, labelled) if scheme != "cross_corpus" else 1
            if not 0 <= fold < self.num_folds:
                raise FoldError(f"data.fold={fold} is out of range: scheme {scheme!r} on {corpus} has "
                                f"{self.num_folds} folds (0..{self.num_folds - 1})")
            self.split: Split = make_split(self.rows, scheme, fold, seed, target_rows=self.target_rows or None,
                                           labelled=labelled)
        train_rows = [self.rows[i] for i in self.train_indices()]
        self.speakers = sorted({r.speaker for r in train_rows} | {r.speaker for r in self.aux_rows})
        self._speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.mean: np.ndarray | None = None  # (F,) normalisation, from the training split
        self.std: np.ndarray | None = None  # (F,)
        self.frontend: FrontEnd | None = None  # features + statistics + segmenting, once mean/std exist

    # ----------------------------------------------------------------- sizes for the model
    @property
    def num_classes(self) -> int:
        """Number of emotion classes of ``task`` (linked into ``model.num_emotions``)."""
        return len(self.label_scheme.classes)

    @property
    def num_speakers(self) -> int:
        """Training speakers of both corpora (linked into ``model.num_speakers``)."""
        return max(1, len(self.speakers))

    @property
    def input_size(self) -> tuple[int, int]:
        """(F, T) of a segment: rows per channel, frames (linked into ``model.input_size``)."""
        return (self.features.rows_per_channel, self.hparams.segment_frames)

    @property
    def input_channels(self) -> int:
        """C of a segment (B, C, F, T): the layers a pretrained front-end keeps apart, else 1 (linked into
        ``model.input_channels``)."""
        return self.features.channels

    @property
    def class_names(self) -> list[str]:
        return list(self.label_scheme.classes)

    @property
    def utterances(self) -> list[ManifestRow]:
        """Every utterance by its global index ``utt``: primary, then auxiliary, then target rows."""
        return self.rows + self.aux_rows + self.target_rows + self.verification_rows

    # ----------------------------------------------------------------- splits, stores, datasets
    def train_indices(self) -> list[int]:
        """``split.train`` (into ``rows``) plus, with ``use_unlabelled``, its speakers' unlabelled rows."""
        train = list(self.split.train)
        if self.hparams.use_unlabelled and self._has_emotion:
            speakers = {self.rows[i].speaker for i in train}
            train += [i for i, r in enumerate(self.rows)
                      if self.label_scheme.category(r) is None and r.speaker in speakers]
        return train

    def evaluation_split(self) -> tuple[list[ManifestRow], int]:
        """The rows ``split.val``/``split.test`` index (cross_corpus: ``target_rows``) and the first one's ``utt``."""
        if self.hparams.scheme == "cross_corpus":
            return self.target_rows, len(self.rows) + len(self.aux_rows)
        return self.rows, 0

    def feature_stores(self) -> dict[str, FeatureStore]:
        """Unbuilt feature stores: ``primary``, and ``aux``, ``target``, ``verification`` where those rows exist."""
        hp = self.hparams
        sources = {"primary": (self.rows, hp.root), "aux": (self.aux_rows, hp.aux_root),
                   "target": (self.target_rows, hp.target_root),
                   "verification": (self.verification_rows, hp.aux_root)}
        return {name: FeatureStore(rows, root, self.features, hp.cache_dir)
                for name, (rows, root) in sources.items() if rows or name == "primary"}

    def make_dataset(self, store: FeatureStore, rows: list[ManifestRow], indices, utt_offset: int,
                     hop: int) -> SegmentDataset:
        """Segments of ``rows[indices]`` every ``hop`` frames, labelled; ``utt`` is ``utt_offset`` + index."""
        indices = np.asarray(list(indices), dtype=np.int64)
        labels = UtteranceLabels(
            store_index=indices,
            emotion=np.array([self.label_scheme.encode(rows[i]) for i in indices], dtype=np.int64),
            gender=np.array([_GENDER_INDEX.get(rows[i].gender, -1) for i in indices], dtype=np.int64),
            speaker=np.array([self._speaker_index.get(rows[i].speaker, -1) for i in indices], dtype=np.int64),
            utt=indices + utt_offset,
            values={task: np.array([self.scaled_value(task, rows[i]) for i in indices], dtype=np.float32)
                    for task in self.value_tasks},
        )
        return SegmentDataset(store, labels, self.frontend, hop)

    def value_scale(self, task: str, row: ManifestRow) -> tuple[float, float]:
        """(low, high) of ``task``'s values in ``row``'s corpus (``data.value_ranges`` or the corpus's scale)."""
        return value_range(task, row.corpus, self.hparams.value_ranges)

    def scaled_value(self, task: str, row: ManifestRow) -> float:
        """``row``'s value for ``task`` mapped from its corpus's scale onto [0, 1]; NaN without one; TaskError
        naming the utterance when it lies outside the scale."""
        value = getattr(row, TASKS[task].column)
        if value is None:
            return float("nan")
        low, high = self.value_scale(task, row)
        if not low <= value <= high:
            raise TaskError(f"utterance {row.utt_id} ({row.corpus}, {row.path}): {TASKS[task].column} {value} lies "
                             f"outside the scale [{low:g}, {high:g}]; set data.value_ranges, e.g. "
                             f"{{{task}: [{min(low, value):g}, {max(high, value):g}]}}")
        return (value - low) / (high - low)

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        for store in self.feature_stores().values():
            store.build(num_workers=self.hparams.num_workers, device=self.hparams.feature_device)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.stores = {name: store.build(num_workers=hp.num_workers, device=hp.feature_device)
                       for name, store in self.feature_stores().items()}
        for line in skip_summary(self.stores):
            rank_zero_info(line)
        train = self.train_indices()
        if not self._scheme_restored:  # a checkpoint's scheme (its training split's centroids) is kept as is
            self.label_scheme.fit([self.rows[i] for i in self.split.train])
        if self.mean is None:  # restored from a checkpoint otherwise
            sample, cap = np.asarray(train), hp.max_stats_utterances
            if len(sample) > cap:
                sample = np.random.default_rng(hp.seed).choice(sample, size=cap, replace=False)
            self.mean, self.std = running_stats(self.stores["primary"], sorted(sample.tolist()))
        self.frontend = self._make_frontend()
        eval_rows, offset = self.evaluation_split()
        eval_store = self.stores["target" if self.target_rows else "primary"]
        eval_hop = hp.eval_hop or hp.segment_hop
        self.train_set = self.make_dataset(self.stores["primary"], self.rows, train, 0, hp.segment_hop)
        self.val_set = self.make_dataset(eval_store, eval_rows, self.split.val, offset, eval_hop)
        self.test_set = self.make_dataset(eval_store, eval_rows, self.split.test, offset, eval_hop)
        self.aux_set = (self.make_dataset(self.stores["aux"], self.aux_rows, range(len(self.aux_rows)),
                                          len(self.rows), hp.segment_hop) if self.aux_rows else None)

    def _make_frontend(self) -> FrontEnd:
        hp = self.hparams
        return FrontEnd(self.features, self.mean, self.std, hp.segment_frames, hp.eval_hop or hp.segment_hop,
                        self.class_names, label_scheme=self.label_scheme,
                        value_scales={task: value_range(task, hp.corpus, hp.value_ranges) for task in self.value_tasks})

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        rank, world = self._rank()
        parts = [self.train_set] + ([self.aux_set] if self.aux_set is not None else [])
        # Batch order follows data.seed and the run's global seed (seed_everything): the repeats of a
        # cross-validation differ in batch order as well as initialisation; data.seed alone fixes the folds.
        # Ranks share the seed. Every loader has its own generator: the workers' base seed is not drawn
        # from the global stream dropout uses (`ser_mtl.random_state`).
        shuffle_seed = hp.seed * 1_000_003 + torch.initial_seed() % 1_000_003
        sampler = MixedBatchSampler(len(self.train_set), len(self.aux_set) if self.aux_set else 0,
                                    hp.batch_size, hp.aux_fraction, seed=shuffle_seed, rank=rank, world_size=world,
                                    epoch_fn=self._current_epoch, skip_fn=self._batches_done_this_epoch)
        return DataLoader(ConcatDataset(parts), batch_sampler=sampler, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0,
                          generator=torch.Generator().manual_seed(shuffle_seed))

    def _current_epoch(self) -> int:
        """The epoch the loader's next iterator serves (``trainer.current_epoch`` lags in a restored fit)."""
        trainer = getattr(self, "trainer", None)
        return int(trainer.fit_loop.epoch_progress.current.processed) if trainer is not None else 0

    def _batches_done_this_epoch(self) -> int:
        """Batches of this epoch done before the mid-epoch checkpoint a fit resumes (hpc_ckpt), else 0."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.fit_loop.restarting:
            return 0
        # FitLoop.update_restart_stage's mid-epoch test, which Lightning runs only after the iterator exists
        total = trainer.fit_loop.epoch_progress.total
        if not (total.started == total.ready and total.processed == total.started - 1
                and total.completed == total.processed):
            return 0  # restored at an epoch's end: the next epoch starts at its first batch
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def _eval_loader(self, dataset: Dataset, shard: bool = True) -> DataLoader:
        hp = self.hparams
        return DataLoader(dataset, batch_size=hp.batch_size, num_workers=hp.num_workers,
                          sampler=ShardedEvalSampler(len(dataset), *self._rank()) if shard else None,
                          generator=torch.Generator().manual_seed(hp.seed))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def verification_dataloader(self) -> DataLoader | None:
        """Unsharded segments of the auxiliary test subset + emotion test speakers; ``None`` without them."""
        if not self.verification_rows:
            return None
        offset = len(self.rows) + len(self.aux_rows) + len(self.target_rows)
        hop = self.hparams.eval_hop or self.hparams.segment_hop
        sets = [self.make_dataset(self.stores["verification"], self.verification_rows,
                                   range(len(self.verification_rows)), offset, hop), self.test_set]
        return self._eval_loader(ConcatDataset(sets), shard=False)

    # ----------------------------------------------------------------- checkpointed preprocessing
    def state_dict(self) -> dict:
        """`FrontEnd.state_dict`'s keys, the label scheme and the speakers: preprocessing as in training."""
        front = self.frontend.state_dict() if self.frontend is not None else {"mean": None}  # before setup()
        return {**front, "label_scheme": self.label_scheme.state_dict(), "speakers": self.speakers}

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint's label scheme (not refitted), statistics, speakers (warns if they differ)."""
        self.features.check_recorded(state.get("feature_settings"), "checkpoint")
        scheme = restored_scheme(state.get("label_scheme"), self.hparams.task, current=self.label_scheme)
        if scheme is not None:
            self.label_scheme, self._scheme_restored = scheme, True
            eval_rows, _ = self.evaluation_split()  # relabel what setup built (store_index points into rows)
            for name, rows in (("train_set", self.rows), ("val_set", eval_rows), ("test_set", eval_rows)):
                if (dataset := getattr(self, name, None)) is not None:
                    dataset.labels.emotion = self.label_scheme.encode_all(
                        [rows[i] for i in dataset.labels.store_index])
        if state.get("speakers") is not None and list(state["speakers"]) != self.speakers:
            warnings.warn(f"the checkpoint's {len(state['speakers'])} training speakers differ from the "
                          f"{len(self.speakers)} of these data settings: speaker labels (test/speaker_acc) do not "
                          "match the model's speaker classes", stacklevel=2)
        if state.get("mean") is not None:
            self.mean = np.asarray(state["mean"], dtype=np.float64)
            self.std = np.asarray(state["std"], dtype=np.float64)
        if self.mean is not None and (state.get("mean") is not None or self._scheme_restored):
            self.frontend = self._make_frontend()
            for name in ("train_set", "val_set", "test_set", "aux_set"):
                if (dataset := getattr(self, name, None)) is not None:
                    dataset.frontend = self.frontend

    def describe(self) -> str:
        """The sizes that matter, printed at start (see `ser_mtl.data.data_summary.describe`)."""
        return describe(self)
