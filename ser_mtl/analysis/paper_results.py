"""The paper's published numbers (Tables 3-6), keyed by protocol, for reports.

The paper: S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps and B. W. Schuller, "Multi-Task
Semi-Supervised Adversarial Autoencoding for Speech Emotion Recognition", IEEE Transactions on
Affective Computing. Table 3 is in its section 5.2, Table 4 in 5.3, Tables 5 and 6 in 6.1.

The numbers are data, in ``paper_results.csv`` next to this module (shipped as package data): one
row per printed number, in percent, mean and std as printed (std empty where the paper prints none),
in the tables' order. Columns: ``table``, ``row`` (the paper's row label), ``corpus``, ``target``
(cross-corpus test corpus, else empty), ``schemes`` (space-separated), ``task``, ``arch``, ``aux``,
``metric``, ``mean``, ``std``. A report shows a published number beside ours only when the protocol
matches: corpus (+ cross-corpus target), cross-validation scheme, label task, architecture and
auxiliary tasks — and labels it "paper".

Protocol fields, in our configuration's terms:
* ``corpus``/``target``: ``data.corpus`` / ``data.target_corpus`` (``iemocap``, ``msp_improv``).
* ``schemes``: ``data.scheme``. The paper's "leave-one-speaker-out (with five-fold
  cross-validation)" may be our ``loso`` or ``loso_session``; both match it.
* ``task``: ``data.task`` (``categorical``, ``activation``, ``valence``, ``av3``, ``av5``).
* ``arch``: ``aae`` (decoder + discriminator), ``ae`` (decoder only), ``cnn`` (neither), from
  ``model.use_decoder`` / ``model.use_discriminator``.
* ``aux``: auxiliary tasks beside emotion (``model.tasks``): ``both`` (gender + speaker),
  ``gender``, ``speaker`` or ``none`` (single-task).

Table by table:
* Table 3 (UA, categorical, 4 classes). The "proposed" rows are the AAE with both auxiliary tasks;
  "multi-task" CNN and AE rows also use both. Rows from other studies ([88] ProgNet, [30] DBN,
  [106] CNN, [20] CVAE-LSTM, [107] CNN) are kept with ``arch="other"``: never matched, listed for
  completeness. The paper gives no MSP-IMPROV numbers for those other LOSO studies.
* Table 4 (UA, cross-corpus: train IEMOCAP, test 70 % of MSP-IMPROV, 30 % for parameter
  selection; auxiliary tasks gender + speaker verification).
* Table 5 (WA and UA, categorical, speaker-independent per section 6, auxiliary tasks varied).
  Note: its "Both" MSP-IMPROV UA, 60.2 ± 1.2, differs from Table 3's 60.3 ± 1.1 for the same
  setting; both are kept as printed.
* Table 6 (dimensional, speaker-independent, auxiliary tasks varied): columns activation and
  valence (3 levels each, paper Table 2) and joint valence-activation K-means with 3 and 5
  clusters, for IEMOCAP and MSP-IMPROV. The paper does not say whether these are WA or UA; they
  are stored with ``metric="unspecified"`` and shown beside our UA (the paper's headline metric)
  with that caveat.
Figure 3 (benchmarks), Figure 4 (additional data) and Figure 5 (alpha/beta) are plots without
printed numbers, so nothing is transcribed from them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from typing import Any

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
    return tuple(
        PaperResult(table=row["table"], row=row["row"], corpus=row["corpus"], schemes=tuple(row["schemes"].split()),
                    task=row["task"], arch=row["arch"], aux=row["aux"], metric=row["metric"],
                    mean=float(row["mean"]), std=float(row["std"]) if row["std"] else None,
                    target=row["target"] or None)
        for row in csv.DictReader(io.StringIO(text)))


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


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """``config[name]``, looking through LightningCLI's ``class_path``/``init_args`` form."""
    section = config.get(name) or {}
    if isinstance(section, dict) and "init_args" in section:
        section = section.get("init_args") or {}
    return section if isinstance(section, dict) else {}


def protocol_from_config(config: dict[str, Any] | None) -> Protocol | None:
    """The protocol of a resolved ``ser-mtl fit`` configuration (``cv.json``'s ``resolved``)."""
    if not config:
        return None
    data, model = _section(config, "data"), _section(config, "model")
    tasks = tuple(model.get("tasks") or ())
    aux_tasks = {t for t in tasks if t != "emotion"}
    aux = {frozenset(): "none", frozenset({"gender"}): "gender", frozenset({"speaker"}): "speaker",
           frozenset({"gender", "speaker"}): "both"}.get(frozenset(aux_tasks)) if tasks else None
    decoder, discriminator = model.get("use_decoder"), model.get("use_discriminator")
    arch = None
    if decoder is not None and discriminator is not None:
        arch = "aae" if decoder and discriminator else "ae" if decoder else "cnn" if not discriminator else None
    return Protocol(corpus=data.get("corpus"), scheme=data.get("scheme"), task=data.get("task"), arch=arch,
                    aux=aux, target=data.get("target_corpus") if data.get("scheme") == "cross_corpus" else None,
                    tasks=tasks)


def match(protocol: Protocol | None) -> list[PaperResult]:
    """Published results for exactly this protocol (our architectures only, never other studies)."""
    if protocol is None or protocol.arch is None:
        return []
    return [r for r in PAPER_RESULTS
            if r.arch == protocol.arch and r.aux == protocol.aux and r.corpus == protocol.corpus
            and protocol.scheme in r.schemes and r.task == protocol.task
            and r.target == protocol.target]
