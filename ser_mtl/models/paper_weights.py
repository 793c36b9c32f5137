"""The paper's loss weights alpha (reconstruction, eq. 1) and beta (emotion vs auxiliary tasks, eq. 2).

Paper 5.1 chose them on the validation set per model family and label kind:

=============  ===========  ==========================================
family         categorical  dimensional (activation, valence, av3, av5)
=============  ===========  ==========================================
AE  (decoder, no discriminator)   alpha 0.3, beta 0.7   alpha 0.6, beta 0.4
AAE (discriminator)               alpha 0.4, beta 0.6   alpha 0.3, beta 0.7
=============  ===========  ==========================================

The CNN models have no reconstruction loss and the paper gives them no beta: they take the AAE's.
Looked up from the model's parts and ``label_task`` (linked from ``data.task``), the weights follow
whatever order the configs are stacked in; an explicit ``--model.alpha``/``--model.beta`` still wins.
"""

from __future__ import annotations

CATEGORICAL = "categorical"
DIMENSIONAL_TASKS = ("activation", "valence", "av3", "av5")

PAPER_WEIGHTS: dict[tuple[str, str], tuple[float, float]] = {
    ("ae", "categorical"): (0.3, 0.7),
    ("ae", "dimensional"): (0.6, 0.4),
    ("aae", "categorical"): (0.4, 0.6),
    ("aae", "dimensional"): (0.3, 0.7),
}


def model_family(use_decoder: bool, use_discriminator: bool) -> str:
    """``aae`` (with a discriminator), ``ae`` (decoder only) or ``cnn`` (neither)."""
    if use_discriminator:
        return "aae"
    return "ae" if use_decoder else "cnn"


def label_kind(label_task: str) -> str:
    if label_task == CATEGORICAL:
        return "categorical"
    if label_task in DIMENSIONAL_TASKS:
        return "dimensional"
    raise ValueError(f"label_task must be {CATEGORICAL!r} or one of {DIMENSIONAL_TASKS}, got {label_task!r}")


def paper_weights(use_decoder: bool, use_discriminator: bool, label_task: str = CATEGORICAL) -> tuple[float, float]:
    """(alpha, beta) of paper 5.1 for this model family and label task (table in the module docstring)."""
    family = model_family(use_decoder, use_discriminator)
    return PAPER_WEIGHTS[("aae" if family == "cnn" else family, label_kind(label_task))]
