"""The paper's published numbers are data (ser_mtl/analysis/paper_results.csv), read back as printed.

The expected values below were checked by hand against the paper's Tables 3-6 (Latif et al., "Multi-Task
Semi-Supervised Adversarial Autoencoding for Speech Emotion Recognition", IEEE Trans. Affective Computing,
sections 5.2, 5.3 and 6.1); the paper text is not part of this repository, so they are written out here.
"""

from importlib import resources
from pathlib import Path

import pytest

from ser_mtl.analysis.paper_results import LOSO, PAPER_RESULTS, Protocol, load_paper_results, match


def test_rows_per_table() -> None:
    counts = {t: sum(r.table == t for r in PAPER_RESULTS) for t in "3456"}
    # Table 3: 10 rows, 6 with an MSP-IMPROV number; Table 4: 4 rows; Table 5: 3 x (WA, UA) x 2 corpora;
    # Table 6: 3 x (activation, valence, 3 clusters, 5 clusters) x 2 corpora.
    assert counts == {"3": 16, "4": 4, "5": 12, "6": 24}
    assert len(PAPER_RESULTS) == 56
    assert len({r.row for r in PAPER_RESULTS if r.table == "3"}) == 9  # "Semi-supervised AAE (proposed)" twice


@pytest.mark.parametrize(("table", "row", "corpus", "metric", "task", "printed"), [
    ("3", "ProgNet (transfer learning) [88]", "msp_improv", "ua", "categorical", (60.5, 2.1)),
    ("3", "CNN (multi-task) [106]", "iemocap", "ua", "categorical", (59.54, None)),
    ("3", "CVAE-LSTM (single task) [20]", "iemocap", "ua", "categorical", (62.8, None)),
    ("4", "Conditional-GAN [109]", "iemocap", "ua", "categorical", (45.40, None)),
    ("4", "CycleGAN-DNN [108]", "iemocap", "ua", "categorical", (46.52, 0.43)),
    ("5", "secondary task: Speaker", "iemocap", "wa", "categorical", (67.2, 1.3)),
    ("5", "secondary task: Gender", "msp_improv", "ua", "categorical", (59.3, 1.1)),
    ("6", "secondary task: Speaker", "iemocap", "unspecified", "valence", (60.8, 0.8)),
    ("6", "secondary task: Gender", "msp_improv", "unspecified", "activation", (53.7, 2.1)),
    ("6", "secondary task: Both", "msp_improv", "unspecified", "av5", (44.3, 1.3)),
])
def test_known_values_as_printed(table, row, corpus, metric, task, printed) -> None:
    [hit] = [r for r in PAPER_RESULTS if (r.table, r.row, r.corpus, r.metric, r.task)
             == (table, row, corpus, metric, task)]
    assert (hit.mean, hit.std) == printed


def test_no_msp_improv_numbers_for_other_loso_studies() -> None:
    others = [r for r in PAPER_RESULTS if r.table == "3" and r.arch == "other" and r.schemes == LOSO]
    assert len(others) == 4 and {r.corpus for r in others} == {"iemocap"}


def test_fields_use_the_protocol_vocabulary() -> None:
    for r in PAPER_RESULTS:
        assert r.corpus in {"iemocap", "msp_improv"}
        assert r.schemes in {("10fold",), LOSO, ("cross_corpus",)}
        assert r.task in {"categorical", "activation", "valence", "av3", "av5"}
        assert r.arch in {"aae", "ae", "cnn", "other"}
        assert r.aux in {"both", "gender", "speaker", "none"}
        assert r.metric in {"ua", "wa", "unspecified"}
        assert (r.target == "msp_improv") == (r.table == "4")
        assert isinstance(r.mean, float) and (r.std is None or isinstance(r.std, float))


def test_the_data_file_ships_with_the_package_and_reads_back() -> None:
    text = resources.files("ser_mtl.analysis").joinpath("paper_results.csv").read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(PAPER_RESULTS) + 1  # header + one line per published number
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "paper_results.csv" in pyproject["tool"]["setuptools"]["package-data"]["ser_mtl.analysis"]
    header = "table,row,corpus,target,schemes,task,arch,aux,metric,mean,std\n"
    assert load_paper_results(header + "4,X,iemocap,msp_improv,cross_corpus,categorical,aae,both,ua,1.5,\n")[0] \
        .text() == "1.5"


def test_a_model_without_the_emotion_task_gets_no_paper_numbers() -> None:
    proposed = Protocol(corpus="iemocap", scheme="loso", task="categorical", arch="aae", aux="gender")
    assert match(proposed)  # the paper's emotion + gender row (Table 5)
    gender_only = Protocol(corpus="iemocap", scheme="loso", task="categorical", arch="aae", aux="gender",
                           tasks=("gender",))
    assert match(gender_only) == []  # its numbers are gender accuracies: never beside the paper's WA/UA
