"""`PackedAAE`: K runs of `MultiTaskAAE` trained as one batched network on one device.

The K runs' parameters and BatchNorm buffers are stacked (``torch.func.stack_module_state``) into
(K, ...) tensors, and every forward runs the layers of ``ser_mtl/models/components.py`` as one grouped
network (`ser_mtl.models.packed_layers.grouped_forward`: convolutions with groups = K, BatchNorm over
the K runs' channels, batched matrix products): one kernel launch serves K runs. Each run gets its own
batch, inputs (K, B, 1, F, T) and labels (K, B); inside, image-like activations are (B, K*C, H, W).

`PackedAAE.step` is `MultiTaskAAE.training_step` for every run at once, with the same math, phase by
phase (``ser_mtl/models/aae.py``): reconstruction alpha * MSE -> autoencoder optimizer; discriminator
BCE on prior samples vs detached codes -> discriminator optimizer; generator BCE(D(z), 1) on the same
codes -> encoder only (the decoder is skipped, as torch skips its None grads); classification
L_c over the tasks with labelled samples -> encoder + those heads. What the unpacked model decides
per batch is decided here per run, with masks (K,): a head without labelled samples in a run's batch
gets no update, no optimizer-state change and no BatchNorm-statistics update in that run; a run
without any label skips the classification phase; grad-norm clipping (``grad_clip``) is per run per
phase over that optimizer's parameters. A stopped run (``active`` False) changes nothing at all.
A non-finite loss does not raise (one run must not kill the pack): the run's update is skipped and
the run is marked in ``diverged``, for the training loop to report and stop.

Random draws (prior samples, dropout masks) come from each run's own ``torch.Generator`` (seeded with
`noise_seed` of the run's seed); `step`
also takes them explicitly (``noise``), which is how the tests give a packed step and three unpacked
steps the same draws. Optimizers: `ser_mtl.models.packed_optim.PackedOptimizer` (per-run lr and skip
masks); run k's weights and optimizer states convert to the unpacked layout with `run_state_dict`,
`optimizer_state_dicts` and `unpack` (checkpoints: ``ser_mtl/models/packed_checkpoint.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.losses import ACC_NAME
from ser_mtl.models.packed_layers import grouped_forward, to_grouped
from ser_mtl.models.packed_optim import PackedOptimizer, _bcast

PARTS = ("encoder", "decoder", "discriminator", "heads")


def noise_seed(seed: int) -> int:
    """Seed of a run's generator of prior samples and dropout masks, derived from (not equal to) the run's
    seed: the run's initial weights were drawn from a stream seeded with ``seed`` itself, and a second stream
    with the same seed would replay those numbers as the first steps' draws."""
    return int(np.random.SeedSequence([int(seed), 0x9ACC]).generate_state(1, dtype=np.uint64)[0] >> 1)


class PackedAAE:
    """K `MultiTaskAAE` runs of one architecture as stacked tensors, trained together by `step`.

    Args:
        models: the K runs, each initialised with its own seed; their hyper-parameters must agree
            except ``lr`` (each run keeps its own) and ``init_from`` (applied before packing).
        seeds: seed of each run's generator of prior samples and dropout masks.
        device: where the pack lives (default: the first model's device).
    """

    def __init__(self, models: Sequence[MultiTaskAAE], seeds: Sequence[int],
                 device: str | torch.device | None = None) -> None:
        if len(models) < 1 or len(seeds) != len(models):
            raise ValueError(f"PackedAAE: need >= 1 models and one seed per model, got {len(models)} models "
                             f"and {len(seeds)} seeds")
        self.hparams = dict(models[0].hparams)
        for i, m in enumerate(models[1:], 1):
            diff = sorted(k for k in set(self.hparams) | set(m.hparams) if k not in ("lr", "init_from")
                          and self.hparams.get(k) != m.hparams.get(k))
            if diff:
                raise ValueError(f"PackedAAE: run {i} differs from run 0 in {diff}; packed runs share the "
                                 "architecture and optimizer settings (only model.lr may differ)")
        self.k = len(models)
        self.device = torch.device(device) if device is not None else next(models[0].parameters()).device
        ref = models[0]
        self.tasks, self.n_classes, self.latent_shape = list(ref.tasks), dict(ref.n_classes), ref.latent_shape
        self.optimizer_names = list(ref.optimizer_names)
        self.keys = list(ref.state_dict())  # the unpacked state-dict order (parameters and buffers)
        self.template = nn.ModuleDict({p: copy.deepcopy(getattr(ref, p)) for p in PARTS
                                       if getattr(ref, p) is not None}).to("meta")
        self.template.train()
        params, buffers = stack_module_state([nn.ModuleDict({p: getattr(m, p) for p in self.template})
                                              for m in models])
        self.params = {n: p.detach().to(self.device).requires_grad_(True) for n, p in params.items()}  # (K, ...)
        self.buffers = {n: b.to(self.device) for n, b in buffers.items()}  # (K, ...)
        missing = set(self.keys) ^ (set(self.params) | set(self.buffers))
        if missing:
            raise RuntimeError(f"PackedAAE: state-dict entries outside {PARTS}: {sorted(missing)}")
        self.generators = [torch.Generator(device=self.device).manual_seed(noise_seed(s)) for s in seeds]
        self.active = torch.ones(self.k, dtype=torch.bool, device=self.device)  # (K,) False once a run stopped
        self.diverged = torch.zeros(self.k, dtype=torch.bool, device=self.device)  # (K,)
        self.initial_lrs = [float(m.hparams.lr) for m in models]
        self.optimizers = self._build_optimizers(ref, self.initial_lrs)

    def _build_optimizers(self, ref: MultiTaskAAE, lrs: list[float]) -> dict[str, PackedOptimizer]:
        """The unpacked model's optimizers (`MultiTaskAAE.configure_optimizers`), same parameter order."""
        names = [n for n, _ in ref.named_parameters()]
        parts = {"autoencoder": [n for n in names if n.startswith(("encoder.", "decoder."))],
                 "discriminator": [n for n in names if n.startswith("discriminator.")],
                 "classification": [n for n in names if n.startswith(("encoder.", "heads."))]}
        hp = self.hparams
        return {name: PackedOptimizer(parts[name], self.params, hp["optimizer"], lrs, momentum=hp["momentum"],
                                      weight_decay=hp["weight_decay"]) for name in self.optimizer_names}

    # ----------------------------------------------------------------- functional pieces
    SEQUENCES: ClassVar[dict[str, str]] = {"encoder": "encoder.blocks", "decoder": "decoder.blocks", "discriminator": "discriminator.net"}

    def _run(self, part: str, x: torch.Tensor) -> torch.Tensor:
        """The K runs' ``part`` (encoder, decoder, discriminator or a head's features/hidden/out) on x in the
        grouped layout (`ser_mtl.models.packed_layers`)."""
        path = self.SEQUENCES.get(part, part)
        return grouped_forward(self.template.get_submodule(path), path, {**self.params, **self.buffers}, x, self.k,
                               self.template.training, bool(self.hparams.get("channels_last", False)))

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, C, H, W) -> (B, K*C, H, W), channels-last when the runs' convolutions are."""
        return to_grouped(x, bool(self.hparams.get("channels_last", False)))

    def _head(self, task: str, z: torch.Tensor, drop: torch.Tensor | None) -> torch.Tensor:
        """`ClassifierHead.forward` with the dropout mask (K, B, hidden) given: z (B, K*C, H, W) -> logits
        (K, B, n_classes)."""
        h = self._run(f"heads.{task}.hidden", self._run(f"heads.{task}.features", z))  # (K, B, hidden)
        return self._run(f"heads.{task}.out", h if drop is None else h * drop)

    @contextmanager
    def _buffers_only_for(self, mask: torch.Tensor, *prefixes: str) -> Iterator[None]:
        """BatchNorm statistics under ``prefixes`` change only in the runs where ``mask`` (K,) is True."""
        names = [n for n in self.buffers if n.startswith(prefixes)]
        before = {n: self.buffers[n].clone() for n in names}
        yield
        for n in names:  # new tensors: the updated ones may be saved for the backward
            b = self.buffers[n]
            self.buffers[n] = torch.where(_bcast(mask, b), b, before[n])

    def _encode(self, xg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self._buffers_only_for(mask, "encoder."):
            return self._run("encoder", xg)  # (B, 1*K, F, T) -> (B, K*C, H, W)

    def _apply(self, opt_name: str, loss: torch.Tensor, names: Sequence[str], masks: Mapping[str, torch.Tensor],
               ok: torch.Tensor) -> None:
        """Grads of the per-run losses (K,) for ``names``; per-run clip; step where ``masks[n] & ok``."""
        grads = dict(zip(names, torch.autograd.grad(loss.sum(), [self.params[n] for n in names])))
        masks = {n: masks[n] & ok for n in names}
        clip = self.hparams.get("grad_clip")
        if clip is not None:
            sq = sum((g.flatten(1).pow(2).sum(1) * masks[n]) for n, g in grads.items())  # (K,)
            coef = (clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)  # torch.nn.utils.clip_grad_norm_
            grads = {n: g * _bcast(coef, g) for n, g in grads.items()}
        self.optimizers[opt_name].step(grads, masks)

    # ----------------------------------------------------------------- training
    def draw_noise(self, batch_size: int, runs: Sequence[bool] | None = None
                   ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Each run's prior samples (K, B, C, H, W) and scaled dropout masks {task: (K, B, hidden)} (0 or
        1 / (1 - p), as ``nn.Dropout``), drawn from the run's own generator; a run outside ``runs``
        draws nothing (zeros), so its stream does not depend on the other runs' batches."""
        runs = [True] * self.k if runs is None else list(runs)
        shape = (batch_size, *self.latent_shape)
        dt = {"device": self.device, "dtype": next(iter(self.params.values())).dtype}
        prior = torch.stack([torch.randn(shape, generator=g, **dt) if on else torch.zeros(shape, **dt)
                             for g, on in zip(self.generators, runs)])
        p, hidden = float(self.hparams["dropout"]), int(self.hparams["head_hidden"])
        drop = {}
        for task in self.tasks:
            masks = [torch.empty(batch_size, hidden, **dt).bernoulli_(1 - p, generator=g) / (1 - p)
                     if on and p < 1 else torch.zeros(batch_size, hidden, **dt) for g, on in zip(self.generators, runs)]
            drop[task] = torch.stack(masks)
        return {"prior": prior, "dropout": drop}

    def step(self, batch: Mapping[str, torch.Tensor], noise: Mapping | None = None,
             runs: Sequence[bool] | None = None) -> dict[str, torch.Tensor]:
        """One training step of every active run on its own batch: ``x`` (K, B, 1, F, T), each task's
        labels (K, B) int64 (-1 = missing). ``runs``: only these runs take the step (the others' rows
        of the batch are ignored, nothing of theirs changes or draws). Returns per-run values (K,) under
        the unpacked model's logged names without ``train/`` (NaN where that run did not compute it)."""
        x = batch["x"]
        if x.ndim != 5 or x.shape[0] != self.k:
            raise ValueError(f"PackedAAE.step: expected x of shape (K={self.k}, B, 1, F, T), got {tuple(x.shape)}")
        if runs is not None and len(runs) != self.k:
            raise ValueError(f"PackedAAE.step: runs must have K={self.k} flags, got {len(runs)}")
        # (K,) runs taking this step; a host-to-device copy only when some run sits it out
        self._on = self.active if runs is None or all(runs) else self.active & torch.tensor(list(runs),
                                                                                             device=self.device)
        noise = noise if noise is not None else self.draw_noise(x.shape[1], runs)
        out: dict[str, torch.Tensor] = {}
        xg = self._grouped(x)  # (B, K*1, F, T)
        if "decoder" in self.template:
            self._reconstruction(xg, out)
        if "discriminator" in self.template:
            self._regularisation(xg, self._grouped(noise["prior"]), out)
        self._classification(xg, batch, noise["dropout"], out)
        return out

    def _ok(self, loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(loss)
        self.diverged |= mask & ~finite
        return mask & finite

    def _per_run_mean(self, g: torch.Tensor) -> torch.Tensor:
        """Mean of a grouped (B, K*C, H, W) tensor over each run's own elements -> (K,)."""
        return g.reshape(g.shape[0], self.k, -1).mean(dim=(0, 2))

    def _reconstruction(self, xg: torch.Tensor, out: dict) -> None:
        with self._buffers_only_for(self._on, "encoder.", "decoder."):
            rec = self._run("decoder", self._run("encoder", xg))  # (B, K*1, F, T)
            loss = self._per_run_mean((rec - xg).pow(2))  # (K,) F.mse_loss of each run
        names = self.optimizers["autoencoder"].names
        ok = self._ok(loss, self._on)
        self._apply("autoencoder", self.hparams["alpha"] * loss, names, {n: ok for n in names}, ok)
        out["loss_rec"] = loss.detach()

    def _regularisation(self, xg: torch.Tensor, prior: torch.Tensor, out: dict) -> None:
        """``prior``: the runs' prior samples, grouped (B, K*C, H, W) like the codes."""
        z = self._encode(xg, self._on)  # (B, K*C, H, W), graph kept for the generator step
        d_real, d_fake = self._run("discriminator", prior), self._run("discriminator", z.detach())  # (K, B, 1)
        ones = torch.ones_like(d_real)

        def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # (K, B, 1) -> (K,)
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2))

        loss = bce(d_real, ones) + bce(d_fake, torch.zeros_like(ones))  # (K,)
        acc = ((d_real > 0).float().mean(dim=(1, 2)) + (d_fake < 0).float().mean(dim=(1, 2))) / 2  # (K,)
        names = self.optimizers["discriminator"].names
        ok = self._ok(loss, self._on)
        self._apply("discriminator", loss, names, {n: ok for n in names}, ok)
        out["loss_disc"], out["disc_acc"] = loss.detach(), acc

        loss = bce(self._run("discriminator", z), ones)  # (K,), the just-updated discriminator
        enc = [n for n in self.optimizers["autoencoder"].names if n.startswith("encoder.")]
        ok = self._ok(loss, self._on)
        self._apply("autoencoder", loss, enc, {n: ok for n in enc}, ok)  # the decoder: no grad, skipped
        out["loss_gen"] = loss.detach()

    def _labels(self, batch: Mapping[str, torch.Tensor], task: str) -> torch.Tensor:
        if task not in batch:
            raise ValueError(f"PackedAAE.step: the batch has no '{task}' labels (keys {sorted(batch)}); "
                             f"tasks {self.tasks} need them as (K, B) int64, -1 where missing")
        labels = batch[task]  # (K, B)
        if labels.dtype != torch.int64 or tuple(labels.shape) != tuple(batch["x"].shape[:2]):
            raise ValueError(f"PackedAAE.step: '{task}' labels must be (K, B) = {tuple(batch['x'].shape[:2])} "
                             f"int64, got {labels.dtype} of shape {tuple(labels.shape)}")
        return labels

    def _classification(self, xg: torch.Tensor, batch: Mapping[str, torch.Tensor],
                        drop: Mapping[str, torch.Tensor], out: dict) -> None:
        labels = {t: self._labels(batch, t) for t in self.tasks}  # (K, B) each
        present = {t: (lab >= 0).any(1) & self._on for t, lab in labels.items()}  # (K,)
        runs = torch.stack(list(present.values())).any(0)  # (K,) runs with any label: the phase runs
        k, b = batch["x"].shape[:2]
        beta = float(self.hparams["beta"])
        z = self._encode(xg, runs)  # (B, K*C, H, W)
        total = xg.new_zeros(k)
        for task in self.tasks:
            with self._buffers_only_for(present[task], f"heads.{task}."):
                logits = self._head(task, z, drop[task])  # (K, B, n_classes)
            lab = labels[task]
            mask = lab >= 0  # (K, B)
            n = mask.sum(1)  # (K,)
            ce = F.cross_entropy(logits.flatten(0, 1), lab.clamp(min=0).flatten(), reduction="none").view(k, b)
            loss = (ce * mask).sum(1) / n.clamp(min=1)  # (K,) mean over the labelled samples; 0 without
            acc = ((logits.argmax(-1) == lab) & mask).sum(1) / n.clamp(min=1)
            total = total + (beta if task == "emotion" else 1.0 - beta) * loss
            nan = torch.full_like(loss, float("nan"))
            out[f"loss_{task}"] = torch.where(present[task], loss.detach(), nan)
            out[ACC_NAME[task]] = torch.where(present[task], acc, nan)
        names = self.optimizers["classification"].names
        masks = {n: present[n.split(".")[1]] if n.startswith("heads.") else runs for n in names}
        ok = self._ok(total, runs)
        self._apply("classification", total, names, masks, ok)
        out["loss_cls"] = torch.where(runs, total.detach(), torch.full_like(total, float("nan")))

    # ----------------------------------------------------------------- evaluation and unpacking
    @torch.no_grad()
    def forward_eval(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval-mode logits {task: (K, B, n_classes)} of every run on its own segments x (K, B, 1, F, T)."""
        self.template.eval()
        try:
            z = self._run("encoder", self._grouped(x))  # (B, K*C, H, W)
            return {task: self._head(task, z, None) for task in self.tasks}
        finally:
            self.template.train()

    def run_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Run k's `MultiTaskAAE.state_dict()` (CPU copies, the unpacked keys in their order)."""
        both = {**self.params, **self.buffers}
        return {n: both[n][k].detach().cpu().clone() for n in self.keys}

    @torch.no_grad()
    def load_run_state_dict(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        missing = set(self.keys) ^ set(state)
        if missing:
            raise KeyError(f"PackedAAE.load_run_state_dict: keys differ from MultiTaskAAE's: {sorted(missing)[:5]}")
        for n in self.keys:
            target = self.params[n] if n in self.params else self.buffers[n]
            target[k] = state[n].to(target.device, target.dtype)

    def optimizer_state_dicts(self, k: int) -> list[dict]:
        """Run k's optimizer states in `MultiTaskAAE.configure_optimizers` order, torch layout."""
        return [self.optimizers[name].run_state_dict(k) for name in self.optimizer_names]

    def hyper_parameters(self, k: int) -> dict:
        """Run k's `MultiTaskAAE` hyper-parameters (its own ``lr``: the initial one)."""
        return {**self.hparams, "lr": self.initial_lrs[k]}

    def unpack(self, k: int) -> MultiTaskAAE:
        """Run k as an ordinary `MultiTaskAAE` on the CPU (weights and buffers; no optimizer)."""
        hp = {key: v for key, v in self.hyper_parameters(k).items() if not key.startswith("_")}
        model = MultiTaskAAE(**hp)
        model.load_state_dict(self.run_state_dict(k))
        return model
