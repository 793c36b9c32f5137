"""`PackedAAE`: K runs of `MultiTaskAAE` trained as one batched network on one device.

The K runs' parameters and BatchNorm buffers are stacked (``torch.func.stack_module_state``) into
(K, ...) tensors, and every forward is ``torch.func.vmap`` over ``functional_call`` of the modules of
``ser_mtl/models/components.py``: one kernel launch serves K runs (vmap turns the K convolutions into
one grouped convolution). Each run gets its own batch, inputs (K, B, 1, F, T) and labels (K, B).

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

Random draws (prior samples, dropout masks) come from each run's own ``torch.Generator``; `step`
also takes them explicitly (``noise``), which is how the tests give a packed step and three unpacked
steps the same draws. Optimizers: `ser_mtl.models.packed_optim.PackedOptimizer` (per-run lr and skip
masks); run k's weights and optimizer states convert to the unpacked layout with `run_state_dict`,
`optimizer_state_dicts` and `unpack` (checkpoints: ``ser_mtl/models/packed_checkpoint.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.losses import ACC_NAME
from ser_mtl.models.packed_optim import PackedOptimizer, _bcast

PARTS = ("encoder", "decoder", "discriminator", "heads")


def _sub(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed (a submodule's own names)."""
    return {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}


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
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
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
    def _state(self, *prefixes: str) -> dict[str, torch.Tensor]:
        return {n: t for d in (self.params, self.buffers) for n, t in d.items() if n.startswith(prefixes)}

    def _call(self, part: str, tensors: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One run's ``part`` (a dotted module path) on x; called inside vmap with that run's tensors."""
        return functional_call(self.template.get_submodule(part), _sub(tensors, part + "."), (x,))

    def _head(self, task: str, t: Mapping[str, torch.Tensor], z: torch.Tensor,
              drop: torch.Tensor | None) -> torch.Tensor:
        """`ClassifierHead.forward` with the dropout mask given: (B, C, H, W) -> logits (B, n_classes)."""
        h = self._call(f"heads.{task}.hidden", t, self._call(f"heads.{task}.features", t, z))  # (B, hidden)
        return self._call(f"heads.{task}.out", t, h if drop is None else h * drop)

    @contextmanager
    def _buffers_only_for(self, mask: torch.Tensor, *prefixes: str) -> Iterator[None]:
        """BatchNorm statistics under ``prefixes`` change only in the runs where ``mask`` (K,) is True."""
        names = [n for n in self.buffers if n.startswith(prefixes)]
        before = {n: self.buffers[n].clone() for n in names}
        yield
        for n in names:  # new tensors: the updated ones may be saved for the backward
            b = self.buffers[n]
            self.buffers[n] = torch.where(_bcast(mask, b), b, before[n])

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self._buffers_only_for(mask, "encoder."):
            return vmap(lambda t, xi: self._call("encoder", t, xi))(self._state("encoder."), x)  # (K, B, C, H, W)

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
        if "decoder" in self.template:
            self._reconstruction(x, out)
        if "discriminator" in self.template:
            self._regularisation(x, noise["prior"], out)
        self._classification(x, batch, noise["dropout"], out)
        return out

    def _ok(self, loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(loss)
        self.diverged |= mask & ~finite
        return mask & finite

    def _reconstruction(self, x: torch.Tensor, out: dict) -> None:
        def mse(t, xi):  # (B, 1, F, T) -> ()
            return F.mse_loss(self._call("decoder", t, self._call("encoder", t, xi)), xi)

        with self._buffers_only_for(self._on, "encoder.", "decoder."):
            loss = vmap(mse)(self._state("encoder.", "decoder."), x)  # (K,)
        names = self.optimizers["autoencoder"].names
        ok = self._ok(loss, self._on)
        self._apply("autoencoder", self.hparams["alpha"] * loss, names, {n: ok for n in names}, ok)
        out["loss_rec"] = loss.detach()

    def _regularisation(self, x: torch.Tensor, prior: torch.Tensor, out: dict) -> None:
        z = self._encode(x, self._on)  # (K, B, C, H, W), graph kept for the generator step
        ones = x.new_ones(x.shape[1], 1)

        def disc(t, d, zi):  # prior samples d and codes zi (B, C, H, W)
            d_real, d_fake = self._call("discriminator", t, d), self._call("discriminator", t, zi)  # (B, 1)
            loss = (F.binary_cross_entropy_with_logits(d_real, ones)
                    + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(ones)))
            return loss, ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2

        loss, acc = vmap(disc)(self._state("discriminator."), prior, z.detach())  # (K,), (K,)
        names = self.optimizers["discriminator"].names
        ok = self._ok(loss, self._on)
        self._apply("discriminator", loss, names, {n: ok for n in names}, ok)
        out["loss_disc"], out["disc_acc"] = loss.detach(), acc

        def gen(t, zi):
            return F.binary_cross_entropy_with_logits(self._call("discriminator", t, zi), ones)

        loss = vmap(gen)(self._state("discriminator."), z)  # (K,), the just-updated discriminator
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

    def _classification(self, x: torch.Tensor, batch: Mapping[str, torch.Tensor],
                        drop: Mapping[str, torch.Tensor], out: dict) -> None:
        labels = {t: self._labels(batch, t) for t in self.tasks}  # (K, B) each
        present = {t: (lab >= 0).any(1) & self._on for t, lab in labels.items()}  # (K,)
        runs = torch.stack(list(present.values())).any(0)  # (K,) runs with any label: the phase runs
        k, b = x.shape[:2]
        beta = float(self.hparams["beta"])
        z = self._encode(x, runs)
        total = x.new_zeros(k)
        for task in self.tasks:
            with self._buffers_only_for(present[task], f"heads.{task}."):
                logits = vmap(lambda t, zi, d, task=task: self._head(task, t, zi, d))(
                    self._state(f"heads.{task}."), z, drop[task])  # (K, B, n_classes)
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
            z = vmap(lambda t, xi: self._call("encoder", t, xi))(self._state("encoder."), x)
            return {task: vmap(lambda t, zi, task=task: self._head(task, t, zi, None))(
                self._state(f"heads.{task}."), z) for task in self.tasks}
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
