"""The paper's published numbers (Tables 3-6), keyed by protocol, for reports.

The paper: Latif et al., "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
Recognition", IEEE Trans. Affective Computing (Table 3: section 5.2, 4: 5.3, 5 and 6: 6.1). The
numbers are data (``paper_results.csv``), in percent, as printed; a report shows one beside ours,
labelled "paper", only when the whole protocol matches (`match`). The paper's "leave-one-speaker-out
(with five-fold cross-validation)" may be our ``loso`` or ``loso_session``. Table 3's other studies
have ``arch="other"``: never matched. Table 5's "Both" MSP-IMPROV UA (60.2 ± 1.2) differs from Table
3's (60.3 ± 1.1) for the same setting; both are kept. Table 6 does not say whether it reports WA or
UA: ``metric="unspecified"``, shown beside our UA with that caveat.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ser_mtl.data.manifest import EMOTIONS
from ser_mtl.tasks import DIMENSIONS

LOSO = ("loso", "loso_session")
DATA_FILE = "paper_results.csv"


@dataclass(frozen=True)
class PaperResult:
    table: str               # "3", "4", "5", "6"
    row: str                 # the paper's row label
    corpus: str              # training/test corpus (cross-corpus: training)
    schemes: tuple[str, ...]
    task: str
    arch: str                # "aae" | "ae" | "cnn" | "other" (another study; never matched)
    aux: str                 # "both" | "gender" | "speaker" | "none"
    metric: str              # "ua" | "wa" | "unspecified"
    mean: float              # percent
    std: float | None        # percent; None where the paper prints none
    target: str | None = None  # cross-corpus test corpus

    def text(self) -> str:
        return f"{self.mean:g}" if self.std is None else f"{self.mean:g} ± {self.std:g}"


def load_paper_results(text: str | None = None) -> tuple[PaperResult, ...]:
    """The rows of ``paper_results.csv`` (or of ``text``, CSV with the same header), in file order."""
    if text is None:
        text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(PaperResult(**{**r, "schemes": tuple(r["schemes"].split()), "mean": float(r["mean"]),
                                "std": float(r["std"]) if r["std"] else None, "target": r["target"] or None})
                 for r in csv.DictReader(io.StringIO(text)))


PAPER_RESULTS: tuple[PaperResult, ...] = load_paper_results()


@dataclass(frozen=True)
class Protocol:
    """What a cross-validation evaluated, in the terms the paper's tables are keyed by."""

    corpus: str | None
    scheme: str | None
    task: str | None
    arch: str | None
    aux: str | None
    target: str | None = None
    tasks: tuple[str, ...] = ()

    def model_name(self) -> str:
        arch = {"aae": "AAE", "ae": "AE", "cnn": "CNN"}.get(self.arch or "", self.arch or "?")
        return f"{arch} ({'+'.join(self.tasks)})" if self.tasks else arch


def config_section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """``config[name]``, looking through LightningCLI's ``class_path``/``init_args`` form."""
    section = config.get(name) or {}
    if isinstance(section, dict) and "init_args" in section:
        section = section.get("init_args") or {}
    return section if isinstance(section, dict) else {}


def protocol_from_config(config: dict[str, Any] | None) -> Protocol | None:
    """The protocol of a resolved ``ser-mtl fit`` configuration (``cv.json``'s ``resolved``)."""
    if not config:
        return None
    data, model = config_section(config, "data"), config_section(config, "model")
    tasks = tuple(model.get("tasks") or ())
    aux = {(): "none", ("gender",): "gender", ("speaker",): "speaker", ("gender", "speaker"): "both"}.get(
        tuple(sorted(set(tasks) - {"emotion", *DIMENSIONS}))) if tasks else None
    flags = (model.get("use_decoder"), model.get("use_discriminator"))
    arch = {(True, True): "aae", (True, False): "ae", (False, False): "cnn"}.get(flags)
    task = data.get("task")
    if task == "categorical" and data.get("classes") and list(data["classes"]) != list(EMOTIONS):
        task = f"categorical ({len(data['classes'])}: {', '.join(data['classes'])})"  # never the paper's 4 classes
    if dims := [t for t in tasks if t in DIMENSIONS]:  # values (CCC): never beside the paper's class numbers
        task = f"{task} + " * ("emotion" in tasks) + f"dimensions ({', '.join(dims)})"
    return Protocol(corpus=data.get("corpus"), scheme=data.get("scheme"), task=task, arch=arch,
                    aux=aux, target=data.get("target_corpus") if data.get("scheme") == "cross_corpus" else None,
                    tasks=tasks)


def match(protocol: Protocol | None) -> list[PaperResult]:
    """Published results for exactly this protocol (our architectures only, never other studies)."""
    if protocol is None or protocol.arch is None:
        return []
    if protocol.tasks and "emotion" not in protocol.tasks:  # e.g. a gender-only model: no emotion WA/UA to match
        return []
    return [r for r in PAPER_RESULTS
            if r.arch == protocol.arch and r.aux == protocol.aux and r.corpus == protocol.corpus
            and protocol.scheme in r.schemes and r.task == protocol.task and r.target == protocol.target]
