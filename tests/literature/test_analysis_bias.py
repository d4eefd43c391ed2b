"""The spin rule (p-values, CIs, conclusions), its precision on the hand-labelled fixture, and the bias step."""

from __future__ import annotations

import pytest

from pipelines.literature.analysis import spin
from pipelines.literature.analysis.bias import spin_precision
from pipelines.literature.analysis.common import AnalysisError, step_dir
from tests.literature.analysis_helpers import REPO, SMALL_DEMO, make_cfg

FIXTURE = REPO / "pipelines/literature/analysis/spin_sample.jsonl"
MIN_PRECISION = 0.8  # the rule is a screen: at least 4 of 5 flagged abstracts must be spin by hand


@pytest.mark.parametrize(
    "text, significant",
    [
        ("p = 0.23", False),
        ("(P<0.05)", True),
        ("a p-value of 0.08", False),
        ("P = .04", True),
        ("p > 0.05", False),
        ("p < 0.10", None),  # cannot say at 0.05
        ("odds ratio 0.9, 95% CI 0.8-1.3", False),
        ("hazard ratio (95% CI, 0.85 to 1.20)", False),
        ("RR 0.72 (95% CI 0.55-0.94)", True),
        ("mean difference -0.8, 95% CI -2.1 to 0.5", False),
        ("difference 0.4 (95% CI 0.1 to 0.7)", True),
    ],
)
def test_statistics(text, significant):
    [stat] = spin.statistics(text)
    assert stat.significant is significant


def test_no_false_p_values():
    assert spin.statistics("p53 and p-tau217 levels in 2 patients") == []


def test_conclusion_tone():
    assert spin.positive_sentence("The drug improved memory.")
    assert not spin.positive_sentence("The drug did not improve memory.")
    assert not spin.positive_sentence("Amyloid burden was measured.")


def test_labelled_conclusions_are_used():
    results, conclusions = spin.sections("R text p = 0.4.\nIt improved.", ["RESULTS", "CONCLUSIONS"], str.split)
    assert conclusions == "It improved." and "p = 0.4" in results
    assert spin.judge(results, conclusions)["spin"]


def test_precision_on_the_hand_labelled_fixture():
    result = spin_precision(FIXTURE, 0.05)
    assert result["n"] >= 20 and result["hand_spin"] >= 8
    assert result["precision"] >= MIN_PRECISION, result
    assert result["recall"] >= 0.7, result


def test_a_bad_fixture_line_names_file_and_line(tmp_path):
    bad = tmp_path / "spin.jsonl"
    bad.write_text('{"id": "a", "results": "p = 0.3", "conclusions": "ok", "spin": false}\n{"id": "b"}\n')
    with pytest.raises(AnalysisError, match=r"spin.jsonl:2: not a"):
        spin_precision(bad, 0.05)


def test_bias_step_on_the_demo_with_the_baseline(tmp_path):
    import mlflow

    from pipelines.literature.analysis.bias import run
    from pipelines.literature.analysis.corpus import build_corpus

    cfg = make_cfg(tmp_path, [*SMALL_DEMO, f"literature.analysis.spin_fixture={FIXTURE}"])
    build_corpus(cfg, tmp_path / "data")
    summary = run(cfg, tmp_path / "data")
    assert "baseline" in summary["hedging"]["classifier"] and "not found" in summary["hedging"]["classifier"]
    assert summary["hedging"]["bioscope"]["test_documents"] >= 5
    assert summary["spin"]["fixture"]["precision"] >= MIN_PRECISION
    # demo.py spins about half of the null results: the rule flags some, never all abstracts
    assert 0.1 < summary["spin"]["pubmed"]["flagged_share_of_with_statistic"] < 0.6
    report = (step_dir(tmp_path / "data", "bias") / "report.md").read_text()
    assert "CoNLL-2010" in report and "s01" in report  # the sample is shown
    runs = mlflow.search_runs(experiment_names=["literature-analysis-demo"])
    assert runs["metrics.spin/precision"].iloc[0] >= MIN_PRECISION
    assert "metrics.bias/hedging_f1" in runs.columns
