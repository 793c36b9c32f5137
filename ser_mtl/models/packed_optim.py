"""`PackedOptimizer`: K runs' SGD or Adam optimizer over stacked (K, ...) parameters, one lr per run.

`torch.optim.SGD` and `torch.optim.Adam` are elementwise, so one of them over stacked tensors would
equal K separate optimizers, except for two things a pack needs: each run has its own learning rate
(its own restore-best-halve schedule, `ser_mtl.models.packed_schedule`), and a parameter that gets no
gradient in a run (a head without labelled samples in that run's batch, the decoder in the generator
step, every parameter of a stopped run) must be skipped for that run: no momentum, weight-decay or
Adam-moment update, exactly as torch skips a parameter whose ``grad`` is None. So the update is
written here, over the stacked tensors, with a per-run mask per parameter; the arithmetic follows
torch's single-tensor implementations (``torch/optim/sgd.py``, ``torch/optim/adam.py``, dampening 0,
no Nesterov, no AMSGrad) so that run k's state equals that of the unpacked optimizer.

`run_state_dict(k)` / `load_run_state_dict(k, ...)` convert run k's slice to and from the
``torch.optim.Optimizer.state_dict()`` layout (parameter indices in the optimizer's parameter order),
which is what a Lightning checkpoint's ``optimizer_states`` holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) -> (K, 1, ..., 1) to broadcast against a stacked (K, ...) tensor."""
    return v.view(-1, *([1] * (like.ndim - 1)))


class PackedOptimizer:
    """SGD (momentum, weight decay) or Adam over the stacked parameters ``names`` of K runs.

    Args:
        names: parameter names, in the unpacked optimizer's parameter order (state-dict indices).
        params: name -> stacked (K, ...) parameter, updated in place.
        kind: "sgd" or "adam" (`MultiTaskAAE.configure_optimizers`).
        lrs: the K runs' learning rates.
        momentum: SGD momentum. weight_decay: L2 added to the gradient (both kinds, as in torch).
        betas, eps: Adam's (torch defaults).
    """

    def __init__(self, names: Sequence[str], params: Mapping[str, torch.Tensor], kind: Literal["sgd", "adam"],
                 lrs: Sequence[float], momentum: float = 0.9, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if kind not in ("sgd", "adam"):
            raise ValueError(f"PackedOptimizer: kind must be 'sgd' or 'adam', got {kind!r}")
        self.names = list(names)
        self.params = {n: params[n] for n in self.names}
        self.kind, self.momentum, self.weight_decay, self.betas, self.eps = kind, momentum, weight_decay, betas, eps
        self.k = len(lrs)
        device = next(iter(self.params.values())).device
        self.lrs = [float(lr) for lr in lrs]  # host copy: the schedule reads and halves these
        self._lr = torch.tensor(self.lrs, dtype=torch.float64, device=device)  # (K,)
        # per parameter: which runs have state yet (SGD momentum buffer / Adam moments), and the state
        self.has_state = {n: torch.zeros(self.k, dtype=torch.bool, device=device) for n in self.names}
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        for n, p in self.params.items():
            if kind == "sgd":
                self.state[n] = {"momentum_buffer": torch.zeros_like(p)} if momentum else {}
            else:
                self.state[n] = {"step": torch.zeros(self.k, dtype=torch.float32, device=device),
                                 "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def set_lr(self, k: int, lr: float) -> None:
        self.lrs[k] = float(lr)
        self._lr[k] = float(lr)

    @torch.no_grad()
    def step(self, grads: Mapping[str, torch.Tensor | None], masks: Mapping[str, torch.Tensor]) -> None:
        """Update every parameter of ``grads`` (stacked (K, ...) grads) for the runs where ``masks[name]`` (K,)
        is True; a name missing from ``grads`` or with grad None is skipped for all runs."""
        for n in self.names:
            g = grads.get(n)
            if g is None:
                continue
            self._update(n, g, masks[n])

    def _update(self, n: str, g: torch.Tensor, mask: torch.Tensor) -> None:
        p, st = self.params[n], self.state[n]
        m = _bcast(mask, p)  # (K, 1, ...)
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        if self.kind == "sgd":
            if self.momentum:
                buf = st["momentum_buffer"]
                first = _bcast(~self.has_state[n], p)
                new_buf = torch.where(first, g, buf * self.momentum + g)  # torch: clone on the first step
                buf.copy_(torch.where(m, new_buf, buf))
                g = buf
            p.copy_(torch.where(m, p - _bcast(self._lr.to(p.dtype), p) * g, p))
        else:
            beta1, beta2 = self.betas
            step = st["step"]
            step.copy_(torch.where(mask, step + 1, step))
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
            exp_avg.copy_(torch.where(m, exp_avg.lerp(g, 1 - beta1), exp_avg))
            exp_avg_sq.copy_(torch.where(m, exp_avg_sq * beta2 + (1 - beta2) * g * g, exp_avg_sq))
            s = step.clamp(min=1).double()  # (K,); torch computes the corrections in Python floats
            step_size = _bcast((self._lr.double() / (1 - beta1 ** s)).to(p.dtype), p)
            bias2_sqrt = _bcast((1 - beta2 ** s).sqrt().to(p.dtype), p)
            denom = exp_avg_sq.sqrt() / bias2_sqrt + self.eps
            p.copy_(torch.where(m, p - step_size * exp_avg / denom, p))
        self.has_state[n] |= mask

    # ----------------------------------------------------------------- one run's torch layout
    def _defaults(self) -> dict[str, Any]:
        if self.kind == "sgd":
            return {"momentum": self.momentum, "dampening": 0, "weight_decay": self.weight_decay, "nesterov": False,
                    "maximize": False, "foreach": None, "differentiable": False, "fused": None}
        return {"betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay, "amsgrad": False,
                "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None}

    def run_state_dict(self, k: int) -> dict[str, Any]:
        """Run k's state in ``torch.optim.Optimizer.state_dict()`` layout (CPU tensors)."""
        state: dict[int, dict[str, torch.Tensor]] = {}
        for i, n in enumerate(self.names):
            if not bool(self.has_state[n][k]):
                continue
            if self.kind == "sgd":
                state[i] = {"momentum_buffer": self.state[n]["momentum_buffer"][k].detach().cpu().clone()}
            else:
                st = self.state[n]
                state[i] = {"step": st["step"][k].detach().cpu().clone(),
                            "exp_avg": st["exp_avg"][k].detach().cpu().clone(),
                            "exp_avg_sq": st["exp_avg_sq"][k].detach().cpu().clone()}
        group = {"lr": self.lrs[k], **self._defaults(), "params": list(range(len(self.names)))}
        return {"state": state, "param_groups": [group]}

    @torch.no_grad()
    def load_run_state_dict(self, k: int, sd: Mapping[str, Any], load_lr: bool = True) -> None:
        """Inverse of `run_state_dict` (e.g. a restore of the best epoch's optimizer state)."""
        groups = sd["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.names):
            raise ValueError(f"PackedOptimizer: a state dict with {len(groups)} group(s) of "
                             f"{[len(g['params']) for g in groups]} params does not fit {len(self.names)} parameters")
        for i, n in enumerate(self.names):
            entry = sd["state"].get(i, sd["state"].get(str(i)))
            self.has_state[n][k] = entry is not None
            for key, buf in self.state[n].items():
                buf[k] = entry[key].to(buf.device, buf.dtype) if entry is not None else 0
        if load_lr:
            self.set_lr(k, groups[0]["lr"])
