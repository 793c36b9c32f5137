"""`MultiTaskAAE`: the paper's multi-task semi-supervised adversarial autoencoder (sections 3 and 4.3).

Per training batch, in the paper's order (section 3, "these three phases run in serial"):

1. reconstruction  alpha * MSE(x, D_delta(E_theta(x)))                        -> encoder + decoder
2. regularisation  discriminator: BCE(D_omega(d), 1) + BCE(D_omega(z), 0),
                   d ~ N(0, I), z = E_theta(x) detached                        -> discriminator
                   generator: BCE(D_omega(z), 1) (non-saturating form)         -> encoder only
3. classification  L_c = beta * L_E + (1 - beta) * (L_G + L_S)                 -> encoder + heads
                   (over the tasks of ``ser_mtl/tasks.py``: primary ones beta, auxiliary ones 1 - beta)

Each phase encodes x afresh, so it sees the encoder as the previous phase left it. The paper's
comparison models switch parts off: single-task AAE ``tasks=["emotion"]``; supervised CNN also
``use_decoder=False, use_discriminator=False`` (two encoder blocks); AE ``use_discriminator=False``.
An ``input_stage`` (``ser_mtl/models/input_stage.py``) may sit in front of the encoder, e.g. a per-frame
projection of a pretrained model's layers to the encoder's rows; the reconstruction target is then still
the input features x (frozen, standardised), reached through the stage's way back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch import nn

from ser_mtl.metrics import UtteranceAccuracy
from ser_mtl.models.components import ClassifierHead, Decoder, Discriminator, Encoder, full_precision
from ser_mtl.models.evaluation import EvaluationSteps
from ser_mtl.models.init_from import InitReport, load_matching_weights
from ser_mtl.models.input_stage import StageSpec, build_input_stage
from ser_mtl.models.losses import (
    ACC_NAME,
    LABELLED,
    check_label_tensor,
    classification_loss,
    labelled_index,
    task_loss,
)
from ser_mtl.models.paper_weights import paper_weights
from ser_mtl.models.step_hooks import StepHooks
from ser_mtl.tasks import DIMENSIONS, TASKS, TaskError, check_tasks


class MultiTaskAAE(StepHooks, EvaluationSteps):
    """Encoder, decoder, discriminator and one head per task (class logits, or one value), trained in three phases.

    One optimizer (SGD in the paper), with its own momentum, per existing part: ``autoencoder`` (encoder +
    decoder; also stepped by the generator step, which leaves the decoder's grads None), ``discriminator``,
    ``classification`` (encoder + heads); the paper updates the encoder in all three phases. ``global_step``
    counts optimizer steps (up to 4 per batch): count in epochs. Under DDP
    (``ddp_find_unused_parameters_true``) every rank runs the same collectives: a rank without labels joins
    the classification backward with a zero loss and logs evaluation keys with weight 0.
    ``trainer.precision`` must be in `ser_mtl.models.step_hooks.PRECISIONS` (fp16 would need loss scaling).

    Args:
        num_emotions: emotion classes (linked from the DataModule).
        num_speakers: speaker classes, i.e. training speakers of all corpora (linked from the DataModule).
        num_genders: gender classes (F = 0, M = 1).
        tasks: the tasks to build and train, a subset of the registry ``ser_mtl/tasks.py``: ``emotion``,
            ``gender``, ``speaker`` (the paper's), ``activation``, ``valence``, ``dominance`` (values, scored by
            CCC) and ``age`` (years); each gets a head (class logits or one value) on the code.
        task_losses: per task, a loss other than its registry default (``ccc`` or ``mse`` for a value task,
            e.g. ``{valence: mse}``); None: the registry's (1 - CCC for dimensions, MSE for age).
        use_decoder: build the decoder and run the reconstruction phase.
        use_discriminator: build the discriminator and run the regularisation phase.
        alpha: weight of the reconstruction loss (paper eq. 1); None = paper 5.1's value for this model.
        beta: weight of the emotion loss in L_c; the auxiliary tasks get 1 - beta (paper eq. 2); None as alpha.
        label_task: the emotion label scheme (``data.task``, linked by the CLI): picks the paper's alpha/beta.
        lr: learning rate of all three optimizers (paper: SGD with 1e-4).
        optimizer: ``sgd`` as in the paper (4.3), or ``adam``: far fewer epochs on small data (the CPU demo).
        momentum: SGD momentum (not given in the paper).
        weight_decay: SGD weight decay.
        input_size: (F, T) of an input segment (linked from the DataModule); without an ``input_stage`` it must
            be divisible by the products of ``encoder_pools``.
        input_channels: C of an input segment (B, C, F, T): 1, or the layers a pretrained front-end keeps
            apart (linked from the DataModule); more than 1 needs an ``input_stage``.
        input_stage: the part between the features and the encoder (``class_path`` + ``init_args``, e.g.
            ``ser_mtl.models.input_stage.FrameProjection`` with ``out_rows: 128``); None: the encoder reads
            the features as they are (the paper's spectrogram).
        encoder_channels: output channels of the encoder blocks; the last is the latent depth (paper: 32).
        encoder_pools: (pool_h, pool_w) of each encoder block (128 x 256 -> 16 x 16 by default).
        head_conv_channels: conv channels of every classifier head and of the discriminator.
        head_hidden: hidden dense width of every head (the speaker d-vector size) and of the discriminator.
        dropout: dropout between the two dense layers of each head (paper: 0.3).
        head_pool: how each head pools its conv features: "flatten" (paper) or "stats" (mean, std over time).
        class_names: names of the emotion classes, in class-index order (for reports); None = indices.
        init_from: checkpoint whose tensors matching in name and shape initialise a fresh (not resumed) fit.
        grad_clip: clip each phase's gradient norm to this value (None = no clipping).
        channels_last: ``torch.channels_last`` memory format (faster on CPU, same numbers within rounding).
    """

    def __init__(
        self,
        num_emotions: int = 4,
        num_speakers: int = 1,
        num_genders: int = 2,
        tasks: Sequence[str] = ("emotion", "gender", "speaker"),
        task_losses: dict[str, str] | None = None,
        use_decoder: bool = True,
        use_discriminator: bool = True,
        alpha: float | None = None,
        beta: float | None = None,
        label_task: str = "categorical",
        lr: float = 1e-4,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        input_size: tuple[int, int] = (128, 256),
        input_channels: int = 1,
        input_stage: StageSpec | None = None,
        encoder_channels: Sequence[int] = (16, 32, 32),
        encoder_pools: Sequence[tuple[int, int]] = ((2, 2), (2, 2), (2, 4)),
        head_conv_channels: int = 32,
        head_hidden: int = 128,
        dropout: float = 0.3,
        head_pool: Literal["flatten", "stats"] = "flatten",
        class_names: Sequence[str] | None = None,
        init_from: str | None = None,
        grad_clip: float | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        paper_alpha, paper_beta = paper_weights(use_decoder, use_discriminator, label_task)
        self.hparams.alpha = paper_alpha if alpha is None else alpha  # the resolved values travel in checkpoints
        self.hparams.beta = paper_beta if beta is None else beta
        self.automatic_optimization = False
        self.tasks = list(tasks)
        n_classes = {"emotion": num_emotions, "gender": num_genders, "speaker": num_speakers}
        n_classes |= {task: 1 for task in self.tasks if task in TASKS and TASKS[task].kind == "regression"}
        self._check_arguments(n_classes, class_names)
        self.task_losses = self._resolve_losses(task_losses or {})
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_channels = int(input_channels)
        self.input_stage = build_input_stage(input_stage, self.input_channels, self.input_size[0])
        self.hparams.input_stage = self.input_stage.config() if self.input_stage is not None else None  # plain JSON
        if self.input_stage is None and self.input_channels != 1:
            raise ValueError(f"MultiTaskAAE: inputs with {self.input_channels} channels (layers kept apart by the "
                             "front-end) need model.input_stage, e.g. ser_mtl.models.input_stage.FrameProjection")
        encoder_rows = self.input_stage.out_rows if self.input_stage is not None else self.input_size[0]

        self.encoder = Encoder(encoder_channels, encoder_pools)
        c, h, w = self.latent_shape = self.encoder.output_shape((encoder_rows, self.input_size[1]))
        self.decoder = Decoder(encoder_channels, encoder_pools) if use_decoder else None
        self.discriminator = (Discriminator(c, (h, w), head_conv_channels, head_hidden)
                              if use_discriminator else None)
        # one head per task: class logits (n_classes) or one value (a regression task)
        self.heads = nn.ModuleDict({task: ClassifierHead(c, (h, w), n_classes[task], head_conv_channels,
                                                         head_hidden, dropout, head_pool) for task in self.tasks})
        self.n_classes = {task: n_classes[task] for task in self.tasks}
        has_emotion = "emotion" in self.tasks
        self.val_metric = UtteranceAccuracy(num_emotions) if has_emotion else None
        self.test_metric = UtteranceAccuracy(num_emotions) if has_emotion else None
        self._labelled_segments = {"val": 0, "test": 0}  # emotion-labelled segments seen this epoch, this rank

        self.optimizer_names = [name for name, built in (("autoencoder", use_decoder or use_discriminator),
                                                         ("discriminator", use_discriminator),
                                                         ("classification", True)) if built]
        self.init_report: InitReport | None = None
        self._init_done = False
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)  # once; load_state_dict copies into these layouts

    def _check_arguments(self, n_classes: dict[str, int], class_names: Sequence[str] | None) -> None:
        try:
            check_tasks(self.tasks)
        except TaskError as err:
            raise ValueError(f"MultiTaskAAE: {err}") from None
        for task in self.tasks:
            if TASKS[task].kind == "classification" and n_classes[task] < 2:
                raise ValueError(f"MultiTaskAAE: task '{task}' needs at least 2 classes, got {n_classes[task]} "
                                 f"(set num_{task}s, linked from the DataModule, or drop '{task}' from tasks)")
        if class_names is not None and len(class_names) != n_classes["emotion"]:
            raise ValueError(f"MultiTaskAAE: {len(class_names)} class_names {list(class_names)} for "
                             f"num_emotions={n_classes['emotion']}")
        if not 0.0 <= self.hparams.beta <= 1.0 or self.hparams.alpha < 0:
            raise ValueError(f"MultiTaskAAE: need alpha >= 0 and 0 <= beta <= 1, got alpha={self.hparams.alpha}, "
                             f"beta={self.hparams.beta}")

    def _resolve_losses(self, overrides: dict[str, str]) -> dict[str, str]:
        """task -> loss name: the registry's, or ``task_losses``' for a value task (``ccc`` or ``mse``)."""
        if unknown := sorted(set(overrides) - set(self.tasks)):
            raise ValueError(f"MultiTaskAAE: task_losses names {unknown}, not among tasks {self.tasks}")
        for task, loss in overrides.items():
            allowed = ("ccc", "mse") if TASKS[task].kind == "regression" else ("cross_entropy",)
            if loss not in allowed:
                raise ValueError(f"MultiTaskAAE: task_losses[{task!r}] = {loss!r}; expected one of {list(allowed)}")
        return {task: overrides.get(task, TASKS[task].loss) for task in self.tasks}

    def head_output(self, task: str, z: torch.Tensor) -> torch.Tensor:
        """Task ``task``'s head on codes z (B, C, H, W): logits (B, n_classes), or values (B,) of a value task."""
        out = self.heads[task](z)  # (B, n_classes) or (B, 1)
        return out.squeeze(-1) if TASKS[task].kind == "regression" else out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent code z (B, C, H, W) of feature segments x (B, input_channels, F, T)."""
        if x.ndim != 4 or x.shape[1] != self.input_channels or tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"MultiTaskAAE: expected x of shape (B, {self.input_channels}, {self.input_size[0]}, "
                             f"{self.input_size[1]}) (model input_channels, input_size), got {tuple(x.shape)}")
        if self.input_stage is not None:
            x = self.input_stage(x)  # (B, 1, out_rows, T)
        return self.encoder(self._formatted(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x_hat (B, input_channels, F, T) of codes z: the decoder, then the input stage's way back."""
        x_hat = self.decoder(z)  # (B, 1, F_enc, T)
        return self.input_stage.reconstruct(x_hat) if self.input_stage is not None else x_hat

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat of segments x (B, input_channels, F, T), same shape."""
        return self.decode(self.encode(x))

    def _formatted(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in the model's memory format (left alone while tracing: ONNX has no layouts)."""
        if self.memory_format is torch.contiguous_format or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return x
        return x.contiguous(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (B, n_classes[task]), or values (B,) on [0, 1] of a value task, of every task for segments
        x (B, input_channels, F, T)."""
        z = self.encode(x)
        return {task: self.head_output(task, z) for task in self.heads}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Speaker d-vectors (B, head_hidden): the speaker head's last hidden layer (call in eval mode)."""
        if "speaker" not in self.heads:
            raise RuntimeError(f"MultiTaskAAE.embed needs the speaker head; this model has tasks {self.tasks}")
        return self.heads["speaker"](self.encode(x), return_hidden=True)[1]

    def emotion_posteriors(self, x: torch.Tensor) -> torch.Tensor:
        """Emotion posteriors (B, C) of segments x (B, input_channels, F, T) (eval mode; predict, API, ONNX export)."""
        if "emotion" not in self.heads:
            raise RuntimeError(f"MultiTaskAAE: emotion posteriors need the emotion head; this model has tasks "
                               f"{self.tasks}")
        return self.heads["emotion"](self.encode(x)).softmax(dim=-1)

    def validation_metrics(self, labelled: Collection[str] | None = None) -> list[str]:
        """The keys validation logs every epoch for the tasks in ``labelled`` (None: every task)."""
        tasks = [task for task in self.tasks if labelled is None or task in labelled]
        keys = ["val/wa", "val/ua", "val/macro_f1"] if "emotion" in tasks else []
        keys += [f"val/{key}" for task in tasks if task in ACC_NAME for key in (ACC_NAME[task], f"loss_{task}")]
        keys += [f"val/{key}" for task in tasks if task not in ACC_NAME
                 for key in (f"loss_{task}", *(s.key for s in TASKS[task].scores if task in DIMENSIONS))]
        keys += ["val/ccc_mean"] if any(task in DIMENSIONS for task in tasks) else []
        return keys + (["val/loss_cls"] if tasks else []) + (["val/loss_rec"] if self.decoder is not None else [])

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int = 0,
                     dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Segment-level emotion posteriors {"utt": (B,), "probs": (B, C)}; the caller averages per utterance."""
        return {"utt": batch["utt"], "probs": self.emotion_posteriors(batch["x"])}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        # the input stage goes with the encoder (its way back gets gradients from reconstruction only)
        stage = list(self.input_stage.parameters()) if self.input_stage is not None else []
        parts = {
            "autoencoder": [*stage, *self.encoder.parameters(),
                            *(self.decoder.parameters() if self.decoder is not None else [])],
            "discriminator": list(self.discriminator.parameters()) if self.discriminator is not None else [],
            "classification": [*stage, *self.encoder.parameters(), *self.heads.parameters()],
        }
        hp = self.hparams
        kind, extra = ((torch.optim.Adam, {}) if hp.optimizer == "adam"
                       else (torch.optim.SGD, {"momentum": hp.momentum}))
        return [kind(parts[name], lr=hp.lr, weight_decay=hp.weight_decay, **extra)
                for name in self.optimizer_names]

    def _optimizer(self, name: str) -> pl.core.optimizer.LightningOptimizer:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        return opts[self.optimizer_names.index(name)]

    def _optimise(self, opt: pl.core.optimizer.LightningOptimizer, loss: torch.Tensor) -> None:
        """One step of ``opt`` on ``loss``; grads of the previous phase are dropped, not accumulated."""
        if self._defers_checks(loss):
            bad = ~torch.isfinite(loss.detach())  # () bool, stays on the device until the batch ends
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        elif not torch.isfinite(loss):
            # Every rank sees the same failure (DDP would hang if one rank skipped a step instead).
            raise self._diverged(f"({float(loss)})")
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip is not None:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        if self.decoder is not None:
            self._reconstruction_phase(batch)
        if self.discriminator is not None:
            self._regularisation_phase(batch)
        self._classification_phase(batch)

    def _reconstruction_phase(self, batch: Mapping[str, torch.Tensor]) -> None:
        """alpha * mean over all elements of (x - x_hat)^2 -> encoder + decoder (paper eq. 3)."""
        x = batch["x"]  # (B, C, F, T)
        opt = self._optimizer("autoencoder")
        with self.toggled_optimizer(opt):
            mse = F.mse_loss(full_precision(self.reconstruct(x)), full_precision(x))  # fp32 also under autocast
            self._optimise(opt, self.hparams.alpha * mse)
        self.log("train/loss_rec", mse, batch_size=x.shape[0])

    def _regularisation_phase(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Discriminator step, then generator step on the same codes (paper eq. 4 and first term of eq. 5)."""
        z = self.encode(batch["x"])  # (B, C, H, W), graph kept for the generator step
        self._discriminator_step(z.detach())
        self._generator_step(z)

    def _discriminator_step(self, z: torch.Tensor) -> None:
        """Prior samples d ~ N(0, I) of z's shape are real, codes z fake; BCE summed over the two halves."""
        opt = self._optimizer("discriminator")
        with self.toggled_optimizer(opt):
            # d drawn in fp32 and in logical order, so the draws do not depend on precision or memory format
            d_real = self.discriminator(self._formatted(torch.randn(z.shape, device=z.device)))  # (B, 1)
            d_fake = self.discriminator(z)  # (B, 1)
            loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                    + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            self._optimise(opt, loss)
        acc = ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2
        self.log_dict({"train/loss_disc": loss, "train/disc_acc": acc}, batch_size=z.shape[0])

    def _generator_step(self, z: torch.Tensor) -> None:
        """Encoder learns to have its codes called real: BCE(D(z), 1), the non-saturating form of
        min log(1 - D(z)); the discriminator is frozen by the toggle and not stepped."""
        opt = self._optimizer("autoencoder")
        with self.toggled_optimizer(opt):
            d_fake = self.discriminator(z)  # (B, 1)
            loss = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
            self._optimise(opt, loss)
        self.log("train/loss_gen", loss, batch_size=z.shape[0])

    def _classification_phase(self, batch: Mapping[str, torch.Tensor]) -> None:
        """L_c over the tasks some sample of the batch is labelled for -> encoder + those heads. A head
        without labels is not run, so SGD leaves it and its momentum alone (under DDP it gets the other
        ranks' averaged gradient); when no rank has a label the phase is skipped."""
        labelled = {task: self._labelled(batch, task) for task in self.heads}  # task -> (labels (B,), index (n,))
        present = {task: (labels, index) for task, (labels, index) in labelled.items() if len(index) > 0}
        if not self._any_rank(bool(present)):
            return
        opt = self._optimizer("classification")
        with self.toggled_optimizer(opt):
            z = self.encode(batch["x"])  # (B, C, H, W)
            losses = {}
            for task, (labels, index) in present.items():
                outputs = self.head_output(task, z).index_select(0, index)  # (n, n_classes) fp32, or values (n,)
                targets = labels.index_select(0, index)  # (n,)
                losses[task] = task_loss(self.task_losses[task], outputs, targets)
                self._log_task("train", task, losses[task], outputs, targets, len(index))
            # A rank without labels still joins the backward (DDP all-reduces inside it), with zero gradient.
            loss = classification_loss(losses, self.hparams.beta) if losses else 0.0 * z.sum()
            self._optimise(opt, loss)
        if losses:
            self.log("train/loss_cls", loss, batch_size=batch["x"].shape[0], prog_bar=True)

    def _any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any DDP rank (one all-reduce; no communication on a single device)."""
        if self.trainer.world_size == 1:
            return flag
        return bool(self.trainer.strategy.reduce(torch.tensor(float(flag), device=self.device), reduce_op="sum"))

    def _labels(self, batch: Mapping[str, torch.Tensor], task: str) -> tuple[torch.Tensor, int]:
        """The task's labels (B,) and how many are present; ValueError on a value outside [-1, n_classes)."""
        labels, index = self._labelled(batch, task)
        return labels, len(index)

    def _labelled(self, batch: Mapping[str, torch.Tensor], task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's labels (B,) and the indices (n,) of the labelled samples: ``batch[LABELLED]``
        where ``on_before_batch_transfer`` checked the host batch (no device read), else checked here."""
        if task not in batch:
            raise ValueError(f"MultiTaskAAE: the batch has no '{task}' labels (keys {sorted(batch)}); "
                             f"tasks {self.tasks} need them (-1 or NaN where missing; the DataModule adds them "
                             "when model.tasks is linked into data.model_tasks)")
        labels = check_label_tensor(batch[task], task)  # (B,)
        known = batch.get(LABELLED, {})
        return labels, known[task] if task in known else labelled_index(labels, task, self.n_classes[task])

    def on_fit_start(self) -> None:
        """Apply ``init_from`` once, before the first step of a fresh fit (a resumed fit keeps its checkpoint)."""
        path = self.hparams.init_from
        if not path or self._init_done:
            return
        self._init_done = True
        if self.trainer.ckpt_path is not None:  # resuming
            rank_zero_info(f"init_from {path} not applied: resuming from {self.trainer.ckpt_path}")
            return
        self.init_report = load_matching_weights(self, path)
        rank_zero_info(str(self.init_report))

