"""Whether sweeping the loss weights alpha and beta can change anything (``ser-mtl sweep`` asks first).

`MultiTaskAAE` gives every training phase its own optimizer. Adam's update m / (sqrt(v) + eps) is
invariant to a constant factor on the loss (up to eps), so under ``model.optimizer adam``:

* beta with one task: L_c = beta * L_E (or (1 - beta) * (L_G + L_S) without emotion) is the only loss of
  the classification optimizer -> beta has no effect. With emotion and an auxiliary task it sets their
  relative weight, which does matter.
* alpha: alpha * L_rec shares the ``autoencoder`` optimizer with the generator step only when there is
  a discriminator. Without one it is that optimizer's only loss -> no effect. With one, alpha only
  changes the reconstruction's weight against the generator loss inside Adam's shared moment estimates,
  a far weaker lever than under SGD, where it scales the reconstruction gradient itself (paper Fig. 5).
* alpha without a decoder is unused under any optimizer.

Measured (tests/test_loss_weights.py: tiny model, random segments, 4 Adam steps), alpha 0.1 vs 1.0, how
far apart the encoder weights end, as a fraction of how far they moved: 0.39 with a discriminator;
without one 1.2e-6 with eps -> 0 (float rounding) and 3.3e-2 with the default eps 1e-8 (an artefact:
alpha then only rescales eps against the smallest gradients).
(``model.grad_clip`` or ``model.weight_decay`` let a pure-scale weight act only through the clipping
threshold or the decay's relative strength, not as the loss weight the paper sweeps.)
`check_loss_weight_sweep` returns the warnings and raises `LossWeightError` for the no-effect cases.
"""

from __future__ import annotations

from typing import Any

SGD_HINT = "use --model.optimizer sgd (the paper's optimizer, section 4.3) for this sweep"


class LossWeightError(ValueError):
    """The swept loss weight cannot change the training; the message says why and what to do."""


def _model(resolved: dict[str, Any] | None) -> dict[str, Any] | None:
    model = (resolved or {}).get("model")
    if isinstance(model, dict) and isinstance(model.get("init_args"), dict):  # class_path form
        model = model["init_args"]
    return model if isinstance(model, dict) else None


def check_loss_weight_sweep(params: list[str], resolved: dict[str, Any] | None) -> list[str]:
    """Refuse (``LossWeightError``) a swept ``model.alpha``/``model.beta`` that cannot have an effect under
    the resolved configuration ``resolved`` (``backend.resolve_config``); return warnings for weak ones."""
    model = _model(resolved)
    swept = [p for p in params if p in ("model.alpha", "model.beta")]
    if not swept or model is None:
        return []
    adam = model.get("optimizer") == "adam"
    tasks = list(model.get("tasks") or [])
    warnings: list[str] = []
    if "model.alpha" in swept:
        if model.get("use_decoder") is False:
            raise LossWeightError("--sweep.param model.alpha: the model has no decoder (model.use_decoder false), "
                                  "so alpha weights no loss; sweep another parameter")
        if adam and model.get("use_discriminator") is False:
            raise LossWeightError(
                "--sweep.param model.alpha under model.optimizer adam without a discriminator: alpha * L_rec is "
                "the only loss of the autoencoder optimizer and Adam is invariant to a constant loss scale, so "
                f"alpha has no effect (beyond rescaling Adam's eps); {SGD_HINT}")
        if adam:
            warnings.append(
                "model.alpha under model.optimizer adam: the reconstruction shares the autoencoder optimizer "
                "with the generator step, so alpha only changes their relative weight inside Adam's moment "
                f"estimates, not the size of the reconstruction update as under SGD (paper Fig. 5); {SGD_HINT}")
    if "model.beta" in swept and adam:
        has_emotion = "emotion" in tasks
        has_aux = bool({"gender", "speaker"} & set(tasks))
        if not (has_emotion and has_aux):
            which = "beta * L_E" if has_emotion else "(1 - beta) * (L_G + L_S)"
            raise LossWeightError(
                f"--sweep.param model.beta under model.optimizer adam with tasks {tasks}: L_c = {which} is the "
                "only loss of the classification optimizer and Adam is invariant to a constant loss scale, so "
                f"beta has no effect (beyond rescaling Adam's eps); {SGD_HINT}")
    return warnings
