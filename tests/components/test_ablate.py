"""The ablation study's config and statistics (components/ablate.py), without training anything.

The runs themselves are exercised for every project in tests/contract (a shrunk study per project).
"""

from __future__ import annotations

import math

import pytest
import yaml
from scipy import stats

from components.ablate import BASE, RunResult, markdown, nested, summarise, variant_configs
from components.config import ConfigError, load_config
from pipelines.registry import get_project


def params_with(repo_root, tmp_path, study: dict, project: str = "energy"):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["ablations"][project] = study
    params["profiles"]["demo"].pop("ablations", None)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))  # variants run in the order they are declared
    return path


def test_nested_keys_and_quoted_segments():
    assert nested({"model.revin": False, "train.lr": 0.1}) == {"model": {"revin": False}, "train": {"lr": 0.1}}
    assert nested({'data.checksums."a.csv"': "x"}) == {"data": {"checksums": {"a.csv": "x"}}}


def test_variants_are_complete_checked_configs(repo_root, tmp_path):
    energy = get_project("energy")
    study = {
        "seeds": 2,
        "max_epochs": 1,
        "variants": {"revin_off": {"model.revin": False}, "p8": {"model.patch_len": 8}},
    }
    cfg = load_config("energy", energy.section, params_with(repo_root, tmp_path, study), "demo")
    configs = variant_configs(energy, cfg)
    assert list(configs) == [BASE, "revin_off", "p8"]
    assert configs[BASE].project.model == cfg.project.model  # base is the project's own config
    assert configs["revin_off"].project.model.revin is False and configs["p8"].project.model.revin is True
    assert configs["p8"].project.model.patch_len == 8
    assert all(c.project.train.max_epochs == 1 for c in configs.values())
    assert configs["revin_off"].raw["energy"]["model"]["revin"] is False  # what MLflow logs matches what trains


@pytest.mark.parametrize(
    "variants, message",
    [
        ({"bad": {"model.revn": False}}, r"ablations\.energy\.variants\.bad\.model\.revn: unknown key.*'revin'"),
        ({"bad": {"modl.revin": False}}, r"ablations\.energy\.variants\.bad\.modl: not a key of the energy section"),
        ({"bad": {"model.patch_len": 0}}, r"ablations\.energy\.variants\.bad\.model\.patch_len: 0 is out of range"),
        ({"bad": {"model.patch_len": 500}}, r"model\.patch_len: 500 is longer than window\.seq_len"),
    ],
)
def test_a_wrong_variant_names_its_key_before_anything_trains(repo_root, tmp_path, variants, message):
    energy = get_project("energy")
    cfg = load_config("energy", energy.section, params_with(repo_root, tmp_path, {"variants": variants}), "demo")
    with pytest.raises(ConfigError, match=message):
        variant_configs(energy, cfg)


@pytest.mark.parametrize(
    "study, message",
    [
        ({"seeds": 1, "variants": {"a": {"model.revin": False}}}, r"ablations\.energy\.seeds: 1 is out of range"),
        (
            {"run": ["nope"], "variants": {"a": {"model.revin": False}}},
            r"ablations\.energy\.run: 'nope' is not a declared",
        ),
        ({"variants": {"base": {"model.revin": False}}}, r"variants\.base: a variant is named"),
        ({"variants": {"a": {}}}, r"variants\.a: expected a mapping of dotted keys"),
    ],
)
def test_a_wrong_study_is_refused_at_load(repo_root, tmp_path, study, message):
    energy = get_project("energy")
    with pytest.raises(ConfigError, match=message):
        load_config("energy", energy.section, params_with(repo_root, tmp_path, study), "demo")


def run(variant, seed, score, seconds=1.0):
    return RunResult(variant=variant, seed=seed, score=score, epochs=2, seconds=seconds, parameters=10, run_id="r")


def test_summary_pairs_by_seed_and_uses_the_paired_t_test():
    base = [0.50, 0.52, 0.49, 0.51]
    better = [0.45, 0.48, 0.46, 0.47]  # lower loss on every seed
    noisy = [0.60, 0.40, 0.55, 0.45]
    runs = [run(BASE, s, v) for s, v in enumerate(base)]
    runs += [run("better", s, v, seconds=3.0) for s, v in enumerate(better)]
    runs += [run("noisy", s, v) for s, v in reversed(list(enumerate(noisy)))]  # order must not matter
    rows = {r["variant"]: r for r in summarise(runs, "minimize")}
    assert rows["better"]["diff"] == pytest.approx(sum(b - a for a, b in zip(base, better, strict=True)) / 4)
    assert rows["better"]["p_value"] == pytest.approx(stats.ttest_rel(better, base).pvalue)
    assert rows["better"]["better"] == "yes" and rows["better"]["seconds"] == 3.0
    assert rows["noisy"]["p_value"] == pytest.approx(stats.ttest_rel(noisy, base).pvalue)
    assert rows["noisy"]["better"] == "n.s."
    assert rows[BASE]["sd"] == pytest.approx(stats.tstd(base))
    # a maximised metric: the same lower scores are significantly worse
    assert {r["variant"]: r["better"] for r in summarise(runs, "maximize")}["better"] == "no"


def test_identical_differences_have_no_p_value_and_the_table_says_so():
    runs = [run(BASE, 0, 1.0), run(BASE, 1, 2.0), run("shift", 0, 1.5), run("shift", 1, 2.5)]
    rows = summarise(runs, "minimize")
    shift = next(r for r in rows if r["variant"] == "shift")
    assert shift["diff"] == pytest.approx(0.5) and math.isnan(shift["p_value"]) and shift["better"] == "n.s."
    text = markdown(rows, "val/loss", "minimize", [0, 1], {"shift": {"model.x": 1}}, "## t")
    assert "| shift | model.x=1 | 2 ± 0.71 | +0.5 | - | n.s. |" in text
