"""The paper's published numbers (Latif et al., Tables 3-6), keyed by protocol, for reports.

Every number is transcribed from the paper text (``seed/000_b8ada5b30dc09e01.txt``), in percent,
mean ± std as printed (std None where the paper prints none). A report shows a published number
beside ours only when the protocol matches: corpus (+ cross-corpus target), cross-validation
scheme, label task, architecture and auxiliary tasks — and labels it "paper".

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

from dataclasses import dataclass
from typing import Any

LOSO = ("loso", "loso_session")


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


def _pair(table: str, row: str, schemes: tuple[str, ...], task: str, arch: str, aux: str, metric: str,
          iemocap: tuple[float, float | None] | None, msp: tuple[float, float | None] | None) -> list[PaperResult]:
    rows = []
    for corpus, value in (("iemocap", iemocap), ("msp_improv", msp)):
        if value is not None:
            rows.append(PaperResult(table, row, corpus, schemes, task, arch, aux, metric, value[0], value[1]))
    return rows


def _table3() -> list[PaperResult]:
    t, c, ua = "3", "categorical", "ua"
    return [
        *_pair(t, "ProgNet (transfer learning) [88]", ("10fold",), c, "other", "both", ua, (65.7, 1.8), (60.5, 2.1)),
        *_pair(t, "CNN (multi-task)", ("10fold",), c, "cnn", "both", ua, (65.6, 2.0), (59.5, 2.4)),
        *_pair(t, "Semi-supervised AE (multi-task)", ("10fold",), c, "ae", "both", ua, (66.4, 1.6), (60.2, 2.3)),
        *_pair(t, "Semi-supervised AAE (proposed)", ("10fold",), c, "aae", "both", ua, (68.8, 1.2), (63.6, 1.7)),
        *_pair(t, "DBN (multi-task) [30]", LOSO, c, "other", "both", ua, (62.2, None), None),
        *_pair(t, "CNN (multi-task) [106]", LOSO, c, "other", "both", ua, (59.54, None), None),
        *_pair(t, "Semi-supervised AAE (proposed)", LOSO, c, "aae", "both", ua, (66.7, 1.4), (60.3, 1.1)),
        *_pair(t, "CVAE-LSTM (single task) [20]", LOSO, c, "other", "none", ua, (62.8, None), None),
        *_pair(t, "CNN (single task) [107]", LOSO, c, "other", "none", ua, (64.2, None), None),
        *_pair(t, "Proposed (single task)", LOSO, c, "aae", "none", ua, (64.5, 1.5), (58.1, 1.7)),
    ]


def _table4() -> list[PaperResult]:
    def row(name: str, arch: str, mean: float, std: float | None) -> PaperResult:
        return PaperResult("4", name, "iemocap", ("cross_corpus",), "categorical", arch, "both", "ua", mean, std,
                           target="msp_improv")

    return [row("Attentive CNN [106]", "other", 45.76, None), row("Conditional-GAN [109]", "other", 45.40, None),
            row("CycleGAN-DNN [108]", "other", 46.52, 0.43), row("Proposed", "aae", 46.41, 0.32)]


def _table5() -> list[PaperResult]:
    rows = []
    # aux: (IEMOCAP WA, IEMOCAP UA, MSP-IMPROV WA, MSP-IMPROV UA)
    printed = {"gender": ((67.5, 1.5), (66.1, 1.7), (60.1, 1.2), (59.3, 1.1)),
               "speaker": ((67.2, 1.3), (65.9, 1.6), (60.5, 1.2), (59.1, 1.5)),
               "both": ((68.5, 1.2), (66.7, 1.4), (62.5, 1.4), (60.2, 1.2))}
    names = {"gender": "Gender", "speaker": "Speaker", "both": "Both"}
    for aux, (i_wa, i_ua, m_wa, m_ua) in printed.items():
        name = f"secondary task: {names[aux]}"
        rows += _pair("5", name, LOSO, "categorical", "aae", aux, "wa", i_wa, m_wa)
        rows += _pair("5", name, LOSO, "categorical", "aae", aux, "ua", i_ua, m_ua)
    return rows


def _table6() -> list[PaperResult]:
    rows = []
    # aux: IEMOCAP activation, valence, MSP-IMPROV activation, valence (3 levels each)
    levels = {"gender": ((62.6, 1.3), (61.4, 1.2), (53.7, 2.1), (53.4, 1.8)),
              "speaker": ((63.7, 1.2), (60.8, 0.8), (52.6, 2.5), (52.6, 2.3)),
              "both": ((64.5, 1.5), (62.2, 1.0), (54.6, 1.4), (55.4, 1.6))}
    # aux: IEMOCAP 3 clusters, 5 clusters, MSP-IMPROV 3 clusters, 5 clusters (valence-activation K-means)
    clusters = {"gender": ((65.7, 1.3), (53.2, 0.8), (60.1, 1.5), (43.6, 1.5)),
                "speaker": ((64.8, 1.5), (54.2, 1.2), (61.4, 1.0), (43.1, 1.2)),
                "both": ((65.1, 0.9), (55.1, 1.4), (62.1, 1.8), (44.3, 1.3))}
    names = {"gender": "Gender", "speaker": "Speaker", "both": "Both"}
    for aux in ("gender", "speaker", "both"):
        name = f"secondary task: {names[aux]}"
        i_act, i_val, m_act, m_val = levels[aux]
        rows += _pair("6", name, LOSO, "activation", "aae", aux, "unspecified", i_act, m_act)
        rows += _pair("6", name, LOSO, "valence", "aae", aux, "unspecified", i_val, m_val)
        i_3, i_5, m_3, m_5 = clusters[aux]
        rows += _pair("6", name, LOSO, "av3", "aae", aux, "unspecified", i_3, m_3)
        rows += _pair("6", name, LOSO, "av5", "aae", aux, "unspecified", i_5, m_5)
    return rows


PAPER_RESULTS: tuple[PaperResult, ...] = (*_table3(), *_table4(), *_table5(), *_table6())


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
