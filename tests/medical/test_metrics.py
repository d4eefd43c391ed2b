"""Tests for pipelines/medical/evaluation/metrics.py: every metric against scikit-learn or a hand computation,
the patient-level bootstrap's behaviour, thresholds carried from validation to test, calibration,
subgroups, localisation metrics and the CheXNet comparison guard."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import f1_score, roc_auc_score

from pipelines.medical.evaluation.metrics import (
    AGE_BANDS,
    CHEXNET_AUROC,
    CHEXNET_MEAN_AUROC,
    FINDINGS,
    _weighted_auroc_batch,
    age_bands,
    bootstrap_auroc_ci,
    cam_iou,
    choose_thresholds,
    compare_to_chexnet,
    expected_calibration_error,
    f1_scores,
    localisation_summary,
    mean_auroc,
    per_finding_auroc,
    pointing_game,
    reliability_figure,
    reliability_table,
    roc_figure,
    roc_table,
    sens_spec_at,
    subgroup_auroc,
)

NAMES = list(FINDINGS)


def _data(n=600, k=len(NAMES), seed=0, mask_frac=0.0, signal=1.0):
    """Labels with varied prevalence, informative-but-noisy probabilities, optional NaN masks."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.05, 0.5, k)
    y = (rng.random((n, k)) < prevalence).astype(float)
    logits = signal * (2 * y - 1) + rng.normal(size=(n, k))
    p = 1 / (1 + np.exp(-logits))
    if mask_frac:
        y[rng.random((n, k)) < mask_frac] = np.nan
    return y, p


def _hanley_mcneil_se(auc, n_pos, n_neg):
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(var)


def _width(table, finding):
    row = table.set_index("finding").loc[finding]
    return row["ci_high"] - row["ci_low"]


# --------------------------------------------------------------------------- AUROC


@pytest.mark.parametrize("mask_frac", [0.0, 0.3])
def test_per_finding_auroc_matches_sklearn(mask_frac):
    y, p = _data(mask_frac=mask_frac, seed=3)
    got = per_finding_auroc(y, p, NAMES)
    assert list(got) == NAMES
    for k, name in enumerate(NAMES):
        keep = ~np.isnan(y[:, k])
        assert got[name] == pytest.approx(roc_auc_score(y[keep, k], p[keep, k]), abs=1e-12)
    assert mean_auroc(got) == pytest.approx(np.mean(list(got.values())))
    assert mean_auroc(y, p, NAMES) == pytest.approx(mean_auroc(got))


def test_one_class_finding_is_nan_and_left_out_of_the_mean():
    y, p = _data(n=200, k=3, seed=1)
    y[:, 1] = 0.0
    y[:5, 2] = np.nan  # masked entries are not a class
    y[5:, 2] = 1.0
    got = per_finding_auroc(y, p, ["a", "b", "c"])
    assert math.isnan(got["b"]) and math.isnan(got["c"]) and not math.isnan(got["a"])
    assert mean_auroc(got) == pytest.approx(got["a"])
    assert math.isnan(mean_auroc({"a": float("nan")}))


def test_inputs_are_validated():
    y, p = _data(n=20, k=2)
    with pytest.raises(ValueError):
        per_finding_auroc(y, p, ["only-one"])
    bad = y.copy()
    bad[0, 0] = 2
    with pytest.raises(ValueError):
        per_finding_auroc(bad, p, ["a", "b"])
    holes = p.copy()
    holes[0, 0] = np.nan
    with pytest.raises(ValueError):
        per_finding_auroc(y, holes, ["a", "b"])


def test_weighted_auroc_equals_sklearn_on_repeated_rows_with_ties():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 1)  # many tied scores, across classes too
    w = rng.integers(0, 4, (30, 80))
    w[0] = 0
    w[0, y == 1] = 1  # no negatives drawn: undefined
    got = _weighted_auroc_batch(y, s, w)
    assert math.isnan(got[0])
    want = [roc_auc_score(np.repeat(y, wi), np.repeat(s, wi)) for wi in w[1:]]
    np.testing.assert_allclose(got[1:], want, atol=1e-12)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_table_shape_and_point_estimates():
    y, p = _data(n=400, seed=2, mask_frac=0.1)
    pid = np.repeat(np.arange(200), 2).astype(str)  # string ids work
    table = bootstrap_auroc_ci(y, p, pid, NAMES, n_boot=200)
    assert list(table.columns) == ["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg", "n_boot_valid"]
    assert table["finding"].tolist() == NAMES + ["mean"]
    point = per_finding_auroc(y, p, NAMES)
    body = table.set_index("finding")
    for k, name in enumerate(NAMES):
        assert body.loc[name, "auroc"] == pytest.approx(point[name])
        assert body.loc[name, "ci_low"] <= body.loc[name, "auroc"] <= body.loc[name, "ci_high"]
        assert body.loc[name, "n_pos"] == int((y[:, k] == 1).sum())
        assert body.loc[name, "n_neg"] == int((y[:, k] == 0).sum())
    assert body.loc["mean", "auroc"] == pytest.approx(mean_auroc(point))
    assert table.attrs["n_patients"] == 200 and table.attrs["n_images"] == 400
    again = bootstrap_auroc_ci(y, p, pid, NAMES, n_boot=200)
    pd.testing.assert_frame_equal(table, again)  # seeded


def test_bootstrap_perfect_scorer_gives_one_one():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 2)) < 0.3).astype(float)
    p = 0.2 + 0.6 * y + 0.1 * rng.random((300, 2))
    table = bootstrap_auroc_ci(y, p, np.arange(300), ["a", "b"], n_boot=300).set_index("finding")
    for name in ["a", "b", "mean"]:
        assert table.loc[name, "auroc"] == 1.0
        assert table.loc[name, "ci_low"] == 1.0 and table.loc[name, "ci_high"] == 1.0


def test_bootstrap_random_scorer_contains_half_with_hanley_mcneil_width():
    rng = np.random.default_rng(11)
    n = 2000
    y = (rng.random((n, 1)) < 0.3).astype(float)
    p = rng.random((n, 1))
    table = bootstrap_auroc_ci(y, p, np.arange(n), ["x"], n_boot=1000, seed=3).set_index("finding")
    row = table.loc["x"]
    assert row["ci_low"] < 0.5 < row["ci_high"]
    se = _hanley_mcneil_se(row["auroc"], row["n_pos"], row["n_neg"])
    analytic = 2 * 1.959964 * se
    assert 0.75 * analytic < row["ci_high"] - row["ci_low"] < 1.33 * analytic


def test_bootstrap_skips_one_class_resamples_and_counts_them():
    rng = np.random.default_rng(5)
    n = 300
    y = np.zeros((n, 2))
    y[:, 0] = rng.random(n) < 0.4
    y[7, 1] = 1  # one positive image, one patient: absent from ~(1 - 1/n)^n = 37 % of resamples
    p = rng.random((n, 2))
    table = bootstrap_auroc_ci(y, p, np.arange(n), ["common", "rare"], n_boot=1000).set_index("finding")
    assert table.loc["common", "n_boot_valid"] == 1000
    assert 550 < table.loc["rare", "n_boot_valid"] < 720
    assert table.loc["mean", "n_boot_valid"] == table.loc["rare", "n_boot_valid"]


def test_bootstrap_is_patient_level_duplicates_do_not_shrink_the_interval():
    y, p = _data(n=500, k=2, seed=9, signal=0.8)
    names = ["a", "b"]
    patients = np.arange(500)
    base = bootstrap_auroc_ci(y, p, patients, names, n_boot=600, seed=1)

    # every image of every patient three times: no new information
    y3, p3, pid3 = np.repeat(y, 3, axis=0), np.repeat(p, 3, axis=0), np.repeat(patients, 3)
    patient_level = bootstrap_auroc_ci(y3, p3, pid3, names, n_boot=600, seed=1)
    # image-level resampling = each image its own "patient"; it treats the copies as independent
    image_level = bootstrap_auroc_ci(y3, p3, np.arange(y3.shape[0]), names, n_boot=600, seed=1)

    for name in names + ["mean"]:
        w_base, w_patient, w_image = (_width(t, name) for t in (base, patient_level, image_level))
        assert w_patient >= 0.9 * w_base
        assert w_image < 0.75 * w_base  # ~ 1/sqrt(3) = 0.58 of the honest width
        assert w_image < 0.8 * w_patient


# --------------------------------------------------------------------------- thresholds, F1


def test_youden_thresholds_from_val_are_applied_unchanged_on_test():
    y_val, p_val = _data(n=400, k=4, seed=21, mask_frac=0.1)
    y_test, p_test = _data(n=300, k=4, seed=22, mask_frac=0.1)
    names = NAMES[:4]
    thresholds = choose_thresholds(y_val, p_val, names, rule="youden")
    for k, name in enumerate(names):
        keep = ~np.isnan(y_val[:, k])
        yv, pv = y_val[keep, k], p_val[keep, k]
        j = [
            ((pv >= t) & (yv == 1)).sum() / (yv == 1).sum() - ((pv >= t) & (yv == 0)).sum() / (yv == 0).sum()
            for t in np.unique(pv)
        ]
        best_j = max(j)
        t = thresholds[name]
        got_j = ((pv >= t) & (yv == 1)).sum() / (yv == 1).sum() - ((pv >= t) & (yv == 0)).sum() / (yv == 0).sum()
        assert got_j == pytest.approx(best_j)

    table = sens_spec_at(y_test, p_test, thresholds, names).set_index("finding")
    for k, name in enumerate(names):
        t = thresholds[name]
        assert table.loc[name, "threshold"] == t  # unchanged
        keep = ~np.isnan(y_test[:, k])
        yt, pred = y_test[keep, k] == 1, p_test[keep, k] >= t
        tp, fp = (pred & yt).sum(), (pred & ~yt).sum()
        tn, fn = (~pred & ~yt).sum(), (~pred & yt).sum()
        assert table.loc[name, "sensitivity"] == pytest.approx(tp / (tp + fn))
        assert table.loc[name, "specificity"] == pytest.approx(tn / (tn + fp))
        assert table.loc[name, "ppv"] == pytest.approx(tp / (tp + fp))
        assert table.loc[name, "npv"] == pytest.approx(tn / (tn + fn))
        assert table.loc[name, "n"] == keep.sum()


def test_f1_rule_maximises_f1_on_val():
    y_val, p_val = _data(n=300, k=3, seed=4)
    names = NAMES[:3]
    thresholds = choose_thresholds(y_val, p_val, names, rule="f1")
    for k, name in enumerate(names):
        best = max(f1_score(y_val[:, k], p_val[:, k] >= t) for t in np.unique(p_val[:, k]))
        assert f1_score(y_val[:, k], p_val[:, k] >= thresholds[name]) == pytest.approx(best)
    with pytest.raises(ValueError):
        choose_thresholds(y_val, p_val, names, rule="accuracy")


def test_one_class_val_gives_nan_threshold_and_nan_metrics():
    y, p = _data(n=100, k=2, seed=8)
    y[:, 1] = 0
    thresholds = choose_thresholds(y, p, ["a", "b"])
    assert math.isnan(thresholds["b"]) and not math.isnan(thresholds["a"])
    table = sens_spec_at(y, p, thresholds, ["a", "b"]).set_index("finding")
    assert math.isnan(table.loc["b", "sensitivity"])
    scores = f1_scores(y, p, thresholds, ["a", "b"])
    assert math.isnan(scores["per_finding"]["b"]) and scores["macro"] == scores["per_finding"]["a"]


def test_f1_macro_micro_match_sklearn_on_unmasked_data():
    y, p = _data(n=500, seed=12)
    thresholds = {name: t for name, t in zip(NAMES, np.linspace(0.3, 0.7, len(NAMES)))}
    pred = (p >= np.array(list(thresholds.values()))).astype(int)
    got = f1_scores(y, p, thresholds, NAMES)
    assert got["macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["micro"] == pytest.approx(f1_score(y, pred, average="micro"))
    for k, name in enumerate(NAMES):
        assert got["per_finding"][name] == pytest.approx(f1_score(y[:, k], pred[:, k]))


def test_f1_with_masks_uses_unmasked_entries_only():
    y, p = _data(n=400, k=5, seed=13, mask_frac=0.25)
    names = NAMES[:5]
    thresholds = dict.fromkeys(names, 0.5)
    got = f1_scores(y, p, thresholds, names)
    keep = ~np.isnan(y)
    per = [f1_score(y[keep[:, k], k], p[keep[:, k], k] >= 0.5) for k in range(5)]
    assert got["macro"] == pytest.approx(np.mean(per))
    assert got["micro"] == pytest.approx(f1_score(y[keep], p[keep] >= 0.5))


# --------------------------------------------------------------------------- calibration


def test_ece_is_zero_when_every_bin_is_calibrated():
    # 10 bins; in bin b every prediction is (b + 0.5) / 10 and exactly that fraction is positive
    probs, labels = [], []
    for b in range(10):
        q = (b + 0.5) / 10
        probs += [q] * 20
        labels += [1] * round(20 * q) + [0] * (20 - round(20 * q))
    assert expected_calibration_error(np.array(labels), np.array(probs), n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_matches_a_hand_computation_and_ignores_masks():
    y = np.array([[0, 1], [1, np.nan], [0, 0], [1, 1]], dtype=float)
    p = np.array([[0.1, 0.9], [0.3, 0.99], [0.2, 0.6], [0.8, 0.7]])
    # unmasked entries: (0,.1) (1,.9) (1,.3) (0,.2) (0,.6) (1,.8) (1,.7); 2 bins: [0,.5], (.5,1]
    # low bin : preds .1 .3 .2 -> mean .2,  labels 0 1 0 -> 1/3; |1/3 - .2| * 3/7
    # high bin: preds .9 .6 .8 .7 -> .75, labels 1 0 1 1 -> .75; gap 0
    want = abs(1 / 3 - 0.2) * 3 / 7
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(want)
    table = reliability_table(y, p, n_bins=2)
    assert table["count"].tolist() == [3, 4]
    assert table["mean_predicted"].tolist() == pytest.approx([0.2, 0.75])
    assert table["observed_frequency"].tolist() == pytest.approx([1 / 3, 0.75])


def test_reliability_table_matches_sklearn_calibration_curve_and_draws(tmp_path):
    y, p = _data(n=800, k=3, seed=14)
    table = reliability_table(y, p, n_bins=15)
    assert list(table.columns) == ["bin", "lower", "upper", "mean_predicted", "observed_frequency", "count"]
    assert table["count"].sum() == y.size
    prob_true, prob_pred = calibration_curve(y.ravel(), p.ravel(), n_bins=15, strategy="uniform")
    full = table[table["count"] > 0]
    np.testing.assert_allclose(full["observed_frequency"], prob_true)
    np.testing.assert_allclose(full["mean_predicted"], prob_pred)
    fig = reliability_figure(table, title="calibration")
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 0


# --------------------------------------------------------------------------- subgroups


def test_age_bands_edges():
    ages = [0, 17, 17.9, 18, 39, 40, 59, 60, 79, 80, 95, np.nan]
    want = ["0-17", "0-17", "0-17", "18-39", "18-39", "40-59", "40-59", "60-79", "60-79", "80+", "80+", None]
    assert age_bands(ages).tolist() == want
    assert set(want[:-1]) == set(AGE_BANDS)
    with pytest.raises(ValueError):
        age_bands([-1])


def test_subgroup_auroc_matches_sklearn_on_each_subset():
    y, p = _data(n=900, k=3, seed=15, mask_frac=0.1)
    names = NAMES[:3]
    rng = np.random.default_rng(15)
    sex = rng.choice(["M", "F"], 900)
    band = age_bands(rng.integers(5, 95, 900))
    view = rng.choice(["PA", "AP"], 900).astype(object)
    view[:10] = None  # unknown view: left out of "view" only
    table = subgroup_auroc(y, p, names, {"sex": sex, "age_band": band, "view": view})
    assert list(table.columns) == ["group", "value", "finding", "auroc", "n_images", "n_pos", "n_neg"]
    assert set(table.loc[table.group == "age_band", "value"]) <= set(AGE_BANDS)
    assert table.loc[table.group == "view", "n_images"].drop_duplicates().sum() == 890
    for group, values in (("sex", sex), ("age_band", band), ("view", view)):
        for level in pd.unique(values[~pd.isna(values)]):
            rows = table[(table.group == group) & (table.value == level)].set_index("finding")
            sub = values == level
            aucs = []
            for k, name in enumerate(names):
                keep = sub & ~np.isnan(y[:, k])
                want = roc_auc_score(y[keep, k], p[keep, k]) if len(np.unique(y[keep, k])) == 2 else np.nan
                aucs.append(want)
                assert rows.loc[name, "auroc"] == pytest.approx(want, nan_ok=True)
                assert rows.loc[name, "n_images"] == sub.sum()
            assert rows.loc["mean", "auroc"] == pytest.approx(np.nanmean(aucs))


# --------------------------------------------------------------------------- ROC curves


def test_roc_table_long_format_and_figure(tmp_path):
    y, p = _data(n=300, k=3, seed=16)
    names = NAMES[:3]
    table = roc_table(y, p, names)
    assert list(table.columns) == ["finding", "fpr", "tpr", "threshold"]
    assert table["finding"].unique().tolist() == names
    assert np.isfinite(table["threshold"]).all()
    for name, part in table.groupby("finding"):
        assert part["fpr"].iloc[0] == 0 and part["tpr"].iloc[-1] == 1
        assert np.trapezoid(part["tpr"], part["fpr"]) == pytest.approx(per_finding_auroc(y, p, names)[name])
    fig = roc_figure(table, aurocs=per_finding_auroc(y, p, names))
    fig.savefig(tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 0


# --------------------------------------------------------------------------- explainability


def _box_map(shape, box):
    x, y, w, h = box
    cam = np.zeros(shape)
    cam[y : y + h, x : x + w] = 1.0
    return cam


def test_pointing_game_hit_miss_and_tolerance():
    cam = np.zeros((64, 64))
    cam[30, 40] = 5.0  # peak at row 30, column 40
    assert pointing_game(cam, (35, 25, 10, 10))  # columns 35..44, rows 25..34
    assert not pointing_game(cam, (0, 0, 10, 10))
    assert not pointing_game(cam, (41, 25, 10, 10))  # one column to the right of the peak
    assert pointing_game(cam, (41, 25, 10, 10), tolerance=1)
    assert not pointing_game(cam.T, (35, 25, 10, 10))  # x is columns, y is rows
    assert not pointing_game(np.ones((8, 8)), (0, 0, 8, 8))  # no peak, no hit


def test_cam_iou_hand_made():
    shape, box = (50, 60), (10, 20, 15, 8)
    assert cam_iou(_box_map(shape, box), box) == pytest.approx(1.0)
    assert cam_iou(_box_map(shape, (40, 0, 5, 5)), box) == 0.0  # disjoint
    half = _box_map(shape, (10, 20, 15, 4))  # top half of the box
    assert cam_iou(half, box) == pytest.approx(0.5)
    graded = _box_map(shape, box) * 0.4
    graded[20:24, 10:25] = 1.0  # threshold 0.5 keeps the top half only; 0.3 keeps the whole box
    assert cam_iou(graded, box, threshold=0.5) == pytest.approx(0.5)
    assert cam_iou(graded, box, threshold=0.3) == pytest.approx(1.0)
    assert cam_iou(np.zeros(shape), box) == 0.0


def test_localisation_summary_per_finding():
    shape = (32, 32)
    box = (8, 8, 8, 8)
    on, off = _box_map(shape, box), _box_map(shape, (24, 24, 4, 4))
    records = [
        ("Mass", on, box),
        ("Mass", off, box),
        ("Infiltrate", on, box),
        {"finding": "Nodule", "cam": off, "box": box},
    ]
    table = localisation_summary(records).set_index("finding")
    assert table.loc["Mass", "n"] == 2 and table.loc["Mass", "hit_rate"] == 0.5
    assert table.loc["Mass", "mean_iou"] == pytest.approx(0.5)
    assert table.loc["Infiltration", "hit_rate"] == 1.0  # NIH bbox spelling folded in
    assert table.loc["Nodule", "hit_rate"] == 0.0 and table.loc["Nodule", "mean_iou"] == 0.0
    assert table.loc["all", "n"] == 4 and table.loc["all", "hit_rate"] == 0.5


# --------------------------------------------------------------------------- CheXNet comparison


def test_chexnet_reference_values():
    assert list(CHEXNET_AUROC) == NAMES
    assert CHEXNET_AUROC["Emphysema"] == 0.937 and CHEXNET_AUROC["Infiltration"] == 0.735
    assert np.mean(list(CHEXNET_AUROC.values())) == pytest.approx(CHEXNET_MEAN_AUROC, abs=5e-4)


def _ci_table(n_pos):
    rows = [
        dict(finding=name, auroc=0.8, ci_low=0.75, ci_high=0.85, n_pos=n_pos, n_neg=1000, n_boot_valid=1000)
        for name in NAMES
    ]
    rows.append(
        dict(finding="mean", auroc=0.8, ci_low=0.78, ci_high=0.82, n_pos=14 * n_pos, n_neg=14000, n_boot_valid=1000)
    )
    return pd.DataFrame(rows)


def test_compare_to_chexnet_flags_small_samples():
    small = compare_to_chexnet(_ci_table(n_pos=50), n_test_images=420)
    assert not small["comparable"].any()
    assert small["note"].str.startswith("sample too small to compare").all()

    big = compare_to_chexnet(_ci_table(n_pos=50), n_test_images=20000).set_index("finding")
    assert big["comparable"].all() and (big["note"] == "").all()
    assert big.loc["Mass", "chexnet_auroc"] == 0.868
    assert big.loc["Mass", "delta"] == pytest.approx(0.8 - 0.868)
    assert big.loc["Atelectasis", "chexnet_in_ci"] and not big.loc["Emphysema", "chexnet_in_ci"]
    assert big.loc["mean", "chexnet_auroc"] == CHEXNET_MEAN_AUROC

    table = _ci_table(n_pos=50)
    table.loc[table.finding == "Hernia", "n_pos"] = 7
    rare = compare_to_chexnet(table, n_test_images=20000).set_index("finding")
    assert not rare.loc["Hernia", "comparable"]
    assert rare.loc["Hernia", "note"].startswith("sample too small to compare")
    assert rare.loc["Mass", "comparable"]
    assert not rare.loc["mean", "comparable"] and "Hernia" in rare.loc["mean", "note"]


def test_compare_to_chexnet_on_a_real_bootstrap_table():
    y, p = _data(n=300, seed=17)
    table = bootstrap_auroc_ci(y, p, np.arange(300), NAMES, n_boot=100)
    out = compare_to_chexnet(table, n_test_images=300)
    assert out["finding"].tolist() == NAMES + ["mean"]
    assert not out["comparable"].any()
