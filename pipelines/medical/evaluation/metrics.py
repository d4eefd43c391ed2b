"""Clinical validation metrics for multi-label chest X-ray diagnosis (NIH ChestX-ray14, 14 findings).

Pure numpy / pandas / scikit-learn; every function returns plain data (floats, dicts, DataFrames)
or a matplotlib Figure drawn on the Agg canvas (pyplot and the global backend are never touched).

Conventions shared by every function:

* ``y_true`` is [N, K] with 0/1 and NaN for a masked / unknown label; a masked entry is left out of
  that finding only (per-finding metrics) or out of the flattened pool (micro F1, calibration).
* ``y_prob`` is [N, K] probabilities; a NaN probability on an unmasked label is an error.
* ``names`` are the K finding names in column order (NIH spelling, see ``FINDINGS``).
* A prediction is positive when ``y_prob >= threshold`` (scikit-learn's ``roc_curve`` and
  ``precision_recall_curve`` convention), so thresholds chosen here reproduce their points.
* AUROC is NaN for a finding whose evaluated rows hold one class only; means are over defined
  findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from pipelines.medical.findings import FINDINGS

# Rajpurkar et al. 2017, "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep
# Learning", Table 2 (per-finding AUROC). Measured on CheXNet's own random patient split, not on
# NIH's official test list: a comparison is indicative, never a like-for-like benchmark.
CHEXNET_AUROC: dict[str, float] = {
    "Atelectasis": 0.809,
    "Cardiomegaly": 0.925,
    "Effusion": 0.864,
    "Infiltration": 0.735,
    "Mass": 0.868,
    "Nodule": 0.780,
    "Pneumonia": 0.768,
    "Pneumothorax": 0.889,
    "Consolidation": 0.790,
    "Edema": 0.888,
    "Emphysema": 0.937,
    "Fibrosis": 0.805,
    "Pleural_Thickening": 0.806,
    "Hernia": 0.916,
}
CHEXNET_MEAN_AUROC = 0.841

AGE_BANDS: tuple[str, ...] = ("0-17", "18-39", "40-59", "60-79", "80+")
_AGE_EDGES = np.array([18.0, 40.0, 60.0, 80.0])

# NIH's BBox_List_2017.csv spells one finding differently from Data_Entry_2017.csv.
_BBOX_ALIASES = {"Infiltrate": "Infiltration"}

TOO_SMALL = "sample too small to compare"


# --------------------------------------------------------------------------- input handling


def _as_2d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [N, K]; got shape {arr.shape}")
    return arr


def _check(y_true: Any, y_prob: Any, names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validated float copies of (y_true, y_prob) as [N, K] and the K names."""
    yt, yp = _as_2d(y_true, "y_true"), _as_2d(y_prob, "y_prob")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true {yt.shape} and y_prob {yp.shape} differ in shape")
    known = ~np.isnan(yt)
    if not np.isin(yt[known], (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0, 1 or NaN (masked)")
    if np.isnan(yp[known]).any():
        raise ValueError("y_prob is NaN where the label is known")
    if names is None:
        names = [f"finding_{k}" for k in range(yt.shape[1])] if yt.shape[1] > 1 else ["finding"]
    names = [str(n) for n in names]
    if len(names) != yt.shape[1]:
        raise ValueError(f"{len(names)} names for {yt.shape[1]} columns")
    if len(set(names)) != len(names):
        raise ValueError("finding names must be unique")
    return yt, yp, names


def _column(yt: np.ndarray, yp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isnan(yt[:, k])
    return yt[keep, k].astype(int), yp[keep, k]


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def _finite_threshold(thr: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """roc_curve's first threshold is +inf ("nothing positive"); the next float above the top score
    means the same under ``>=`` and survives JSON / CSV."""
    thr = np.asarray(thr, dtype=float).copy()
    if scores.size:
        thr[np.isposinf(thr)] = np.nextafter(float(np.max(scores)), np.inf)
    return thr


def _nan_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


# --------------------------------------------------------------------------- AUROC


def per_finding_auroc(y_true: Any, y_prob: Any, names: Sequence[str]) -> dict[str, float]:
    """AUROC per finding (scikit-learn's ``roc_auc_score`` on that finding's unmasked rows);
    NaN where those rows hold one class only."""
    yt, yp, names = _check(y_true, y_prob, names)
    return {name: _auroc(*_column(yt, yp, k)) for k, name in enumerate(names)}


def mean_auroc(aurocs: Mapping[str, float] | Any, y_prob: Any = None, names: Sequence[str] | None = None) -> float:
    """Mean AUROC over defined (non-NaN) findings; NaN when none is defined.

    Either ``mean_auroc(per_finding_auroc(...))`` or ``mean_auroc(y_true, y_prob, names)``.
    """
    if not isinstance(aurocs, Mapping):
        if y_prob is None:
            raise TypeError("mean_auroc takes a {finding: auroc} mapping or (y_true, y_prob, names)")
        aurocs = per_finding_auroc(aurocs, y_prob, names)
    values = np.array([v for v in aurocs.values()], dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _auroc_plan(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Everything about one finding that does not depend on the weights: the negatives' indices in
    score order, the positives' indices, and for each positive how many negatives score strictly
    lower (``below``) and lower-or-equal (``not_above``)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=float)
    neg = np.flatnonzero(~y)
    neg = neg[np.argsort(s[neg], kind="stable")]
    pos = np.flatnonzero(y)
    below = np.searchsorted(s[neg], s[pos], side="left")
    not_above = np.searchsorted(s[neg], s[pos], side="right")
    return neg, pos, below, not_above


def _auroc_from_plan(plan: tuple[np.ndarray, ...], weights: np.ndarray) -> np.ndarray:
    neg, pos, below, not_above = plan
    w_neg = weights[:, neg].astype(float)
    cum = np.zeros((weights.shape[0], neg.size + 1))
    np.cumsum(w_neg, axis=1, out=cum[:, 1:])
    w_pos = weights[:, pos].astype(float)
    numerator = 0.5 * np.einsum("bi,bi->b", w_pos, cum[:, below] + cum[:, not_above])
    denominator = w_pos.sum(axis=1) * cum[:, -1]
    out = np.full(weights.shape[0], np.nan)
    ok = denominator > 0
    out[ok] = numerator[ok] / denominator[ok]
    return out


def _weighted_auroc_batch(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one finding under B integer weightings at once.

    ``y`` [n] 0/1, ``s`` [n] scores, ``weights`` [B, n] (how many times each row is drawn in each
    resample). Returns [B]; NaN where a resample has no positive or no negative weight. Equal to
    ``roc_auc_score`` on the rows repeated by their weights (Mann-Whitney, ties count one half),
    computed in O(B n) from a cumulative sum of negative weights in score order.
    """
    return _auroc_from_plan(_auroc_plan(y, s), np.atleast_2d(np.asarray(weights)))


def _patient_codes(patient_ids: Any, n: int) -> tuple[np.ndarray, int]:
    ids = np.asarray(patient_ids)
    if ids.shape != (n,):
        raise ValueError(f"patient_ids must be [N] = [{n}]; got shape {ids.shape}")
    if pd.isna(ids).any():
        raise ValueError("patient_ids contains missing values")
    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.intp), len(uniques)


def _bootstrap_samples(
    yt: np.ndarray,
    yp: np.ndarray,
    codes: np.ndarray,
    n_patients: int,
    n_boot: int,
    seed: int,
    max_chunk_elems: int = 4_000_000,
) -> np.ndarray:
    """[n_boot, K] AUROCs of patient-level resamples (NaN where a finding has one class)."""
    rng = np.random.default_rng(seed)
    n, k_count = yt.shape
    out = np.full((n_boot, k_count), np.nan)
    plans = []
    for k in range(k_count):
        keep = np.flatnonzero(~np.isnan(yt[:, k]))
        y = yt[keep, k].astype(bool)
        if y.all() or not y.any():
            plans.append(None)
            continue
        neg, pos, below, not_above = _auroc_plan(y, yp[keep, k])
        # index straight into the per-patient counts: an image weighs what its patient was drawn
        plans.append((codes[keep[neg]], codes[keep[pos]], below, not_above))
    chunk = int(max(1, min(n_boot, max_chunk_elems // max(n, n_patients, 1))))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n_patients, size=(b, n_patients))
        draws += (np.arange(b) * n_patients)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n_patients).reshape(b, n_patients)
        for k, plan in enumerate(plans):
            if plan is not None:
                out[start : start + b, k] = _auroc_from_plan(plan, counts)
    return out


def bootstrap_auroc_ci(
    y_true: Any,
    y_prob: Any,
    patient_ids: Any,
    names: Sequence[str],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-finding AUROC with a patient-level percentile bootstrap interval, plus a "mean" row.

    Each resample draws as many patients as there are, with replacement, and takes every image of
    each drawn patient (as many times as the patient was drawn), so the images of one patient move
    together and correlated images do not shrink the interval. Resamples in which a finding has one
    class only are skipped for that finding (``n_boot_valid`` counts the rest). The "mean" row's
    samples are the mean over findings within each resample, over the findings defined on the full
    sample; resamples where any of those is undefined are skipped for it, so the mean is always over
    the same findings as its point estimate.

    Columns: finding, auroc, ci_low, ci_high, n_pos, n_neg, n_boot_valid (``n_pos`` / ``n_neg`` count
    unmasked images; the mean row sums them over its findings). ``attrs`` records n_boot, alpha,
    seed, n_images and n_patients.
    """
    yt, yp, names = _check(y_true, y_prob, names)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    codes, n_patients = _patient_codes(patient_ids, yt.shape[0])
    point = per_finding_auroc(yt, yp, names)
    samples = _bootstrap_samples(yt, yp, codes, n_patients, n_boot, seed)
    q = (alpha / 2.0, 1.0 - alpha / 2.0)

    def interval(x: np.ndarray) -> tuple[float, float, int]:
        x = x[~np.isnan(x)]
        if x.size == 0:
            return float("nan"), float("nan"), 0
        lo, hi = np.quantile(x, q)
        return float(lo), float(hi), int(x.size)

    rows = []
    for k, name in enumerate(names):
        lo, hi, valid = interval(samples[:, k])
        n_pos = int(np.sum(yt[:, k] == 1))
        n_neg = int(np.sum(yt[:, k] == 0))
        rows.append(
            dict(finding=name, auroc=point[name], ci_low=lo, ci_high=hi, n_pos=n_pos, n_neg=n_neg, n_boot_valid=valid)
        )
    defined = [k for k, name in enumerate(names) if not np.isnan(point[name])]
    if defined:
        sub = samples[:, defined]
        mean_samples = np.where(np.isnan(sub).any(axis=1), np.nan, sub.mean(axis=1))
        lo, hi, valid = interval(mean_samples)
    else:
        lo, hi, valid = float("nan"), float("nan"), 0
    rows.append(
        dict(
            finding="mean",
            auroc=mean_auroc(point),
            ci_low=lo,
            ci_high=hi,
            n_pos=int(sum(rows[k]["n_pos"] for k in defined)),
            n_neg=int(sum(rows[k]["n_neg"] for k in defined)),
            n_boot_valid=valid,
        )
    )
    table = pd.DataFrame(rows, columns=["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg", "n_boot_valid"])
    table.attrs.update(
        n_boot=int(n_boot), alpha=float(alpha), seed=int(seed), n_images=int(yt.shape[0]), n_patients=int(n_patients)
    )
    return table


# --------------------------------------------------------------------------- operating points


def choose_thresholds(y_true_val: Any, y_prob_val: Any, names: Sequence[str], rule: str = "youden") -> dict[str, float]:
    """One threshold per finding, chosen on the VALIDATION split only.

    ``rule="youden"``: maximise Youden's J = sensitivity + specificity - 1 over scikit-learn's
    ``roc_curve`` thresholds; ``rule="f1"``: maximise F1 over ``precision_recall_curve`` thresholds.
    Ties go to the higher threshold. NaN for a finding with one class only in the validation rows
    (downstream functions then report NaN / leave it out).
    """
    if rule not in ("youden", "f1"):
        raise ValueError(f"rule must be 'youden' or 'f1'; got {rule!r}")
    yt, yp, names = _check(y_true_val, y_prob_val, names)
    out: dict[str, float] = {}
    for k, name in enumerate(names):
        y, s = _column(yt, yp, k)
        if y.size == 0 or y.min() == y.max():
            out[name] = float("nan")
            continue
        if rule == "youden":
            fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
            thr = _finite_threshold(thr, s)
            out[name] = float(thr[int(np.argmax(tpr - fpr))])  # thresholds decrease: first = highest
        else:
            precision, recall, thr = precision_recall_curve(y, s)
            precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
            denom = precision + recall
            f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
            best = np.flatnonzero(f1 == f1.max())
            out[name] = float(thr[best[-1]])  # thresholds increase: last = highest
    return out


def _confusion(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    tn, fp, fn, tp = confusion_matrix(y, (s >= threshold).astype(int), labels=[0, 1]).ravel()
    return int(tn), int(fp), int(fn), int(tp)


def sens_spec_at(y_true: Any, y_prob: Any, thresholds: Mapping[str, float], names: Sequence[str]) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and NPV per finding at fixed thresholds (positive iff
    ``y_prob >= threshold``), on the unmasked rows of each finding; NaN where a ratio is 0/0 or
    the threshold is NaN. Use thresholds from ``choose_thresholds`` on the validation split."""
    yt, yp, names = _check(y_true, y_prob, names)
    rows = []
    for k, name in enumerate(names):
        t = float(thresholds[name])
        y, s = _column(yt, yp, k)
        if np.isnan(t):
            rows.append(
                dict(
                    finding=name,
                    threshold=t,
                    sensitivity=np.nan,
                    specificity=np.nan,
                    ppv=np.nan,
                    npv=np.nan,
                    tp=0,
                    fp=0,
                    tn=0,
                    fn=0,
                    n=int(y.size),
                )
            )
            continue
        tn, fp, fn, tp = _confusion(y, s, t)
        rows.append(
            dict(
                finding=name,
                threshold=t,
                sensitivity=_nan_div(tp, tp + fn),
                specificity=_nan_div(tn, tn + fp),
                ppv=_nan_div(tp, tp + fp),
                npv=_nan_div(tn, tn + fn),
                tp=tp,
                fp=fp,
                tn=tn,
                fn=fn,
                n=int(y.size),
            )
        )
    return pd.DataFrame(rows)


def f1_scores(
    y_true: Any, y_prob: Any, thresholds: Mapping[str, float], names: Sequence[str], zero_division: float = 0.0
) -> dict[str, Any]:
    """Macro and micro F1 at fixed thresholds, with scikit-learn's ``f1_score``.

    Macro: mean of the per-finding binary F1 over each finding's unmasked rows. Micro: one binary F1
    over every unmasked (image, finding) entry flattened. Findings with a NaN threshold are left out
    of both. Returns {"macro": float, "micro": float, "per_finding": {name: float}}.
    """
    yt, yp, names = _check(y_true, y_prob, names)
    per: dict[str, float] = {}
    flat_true, flat_pred = [], []
    for k, name in enumerate(names):
        t = float(thresholds[name])
        y, s = _column(yt, yp, k)
        if np.isnan(t) or y.size == 0:
            per[name] = float("nan")
            continue
        pred = (s >= t).astype(int)
        per[name] = float(f1_score(y, pred, zero_division=zero_division))
        flat_true.append(y)
        flat_pred.append(pred)
    scored = [v for v in per.values() if not np.isnan(v)]
    macro = float(np.mean(scored)) if scored else float("nan")
    micro = (
        float(f1_score(np.concatenate(flat_true), np.concatenate(flat_pred), zero_division=zero_division))
        if flat_true
        else float("nan")
    )
    return {"macro": macro, "micro": micro, "per_finding": per}


# --------------------------------------------------------------------------- calibration


def reliability_table(y_true: Any, y_prob: Any, n_bins: int = 15) -> pd.DataFrame:
    """Equal-width reliability bins over every unmasked entry (all findings pooled).

    Bins are right-closed, (lower, upper], the first one [0, upper] (scikit-learn's
    ``calibration_curve(strategy="uniform")`` binning, so non-empty bins match it). Columns: bin,
    lower, upper, mean_predicted, observed_frequency, count; empty bins have NaN means and count 0.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    yt, yp = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_prob, dtype=float).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_prob differ in size ({yt.size} vs {yp.size})")
    keep = ~np.isnan(yt)
    yt, yp = yt[keep], yp[keep]
    if not np.isin(yt, (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0, 1 or NaN (masked)")
    if np.isnan(yp).any() or (yp < 0).any() or (yp > 1).any():
        raise ValueError("y_prob must be probabilities in [0, 1] where the label is known")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], yp)
    count = np.bincount(ids, minlength=n_bins)
    sum_pred = np.bincount(ids, weights=yp, minlength=n_bins)
    sum_true = np.bincount(ids, weights=yt, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.where(count > 0, sum_pred / np.maximum(count, 1), np.nan)
        observed = np.where(count > 0, sum_true / np.maximum(count, 1), np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "mean_predicted": mean_pred,
            "observed_frequency": observed,
            "count": count,
        }
    )


def expected_calibration_error(y_true: Any, y_prob: Any, n_bins: int = 15) -> float:
    """ECE = sum over bins of (bin count / total) * |observed frequency - mean predicted|, with the
    equal-width bins of ``reliability_table`` over every unmasked entry. NaN with no entries."""
    table = reliability_table(y_true, y_prob, n_bins)
    total = table["count"].sum()
    if total == 0:
        return float("nan")
    full = table[table["count"] > 0]
    gap = (full["observed_frequency"] - full["mean_predicted"]).abs()
    return float((full["count"] * gap).sum() / total)


def reliability_figure(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Reliability diagram (observed frequency vs mean predicted, per non-empty bin, with the
    diagonal and a count histogram) on an Agg canvas; save with ``fig.savefig(path)``."""
    fig = Figure(figsize=(5, 6))
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    full = table[table["count"] > 0]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax.plot(full["mean_predicted"], full["observed_frequency"], marker="o", label="model")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    widths = (table["upper"] - table["lower"]).to_numpy()
    hist.bar(table["lower"], table["count"], width=widths, align="edge", edgecolor="white")
    hist.set_xlabel("mean predicted probability")
    hist.set_ylabel("count")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- subgroups


def age_bands(ages: Any) -> np.ndarray:
    """Age band per patient: "0-17", "18-39", "40-59", "60-79", "80+" (object array; None where
    the age is missing). Ages are in years; a fractional age belongs to the band of its whole
    years (17.9 -> "0-17"). Negative ages are refused; implausible ones (NIH has a few > 100)
    are the caller's to clean."""
    a = np.asarray(ages, dtype=float)
    if (a < 0).any():
        raise ValueError("negative age")
    idx = np.searchsorted(_AGE_EDGES, a, side="right")
    labels = np.array(AGE_BANDS, dtype=object)[np.minimum(idx, len(AGE_BANDS) - 1)]
    labels[np.isnan(a)] = None
    return labels


def subgroup_auroc(y_true: Any, y_prob: Any, names: Sequence[str], groups: Mapping[str, Any]) -> pd.DataFrame:
    """AUROC per finding and their mean within each value of each grouping variable.

    ``groups`` maps a variable name to an [N] array (e.g. {"sex": sex, "age_band": age_bands(age),
    "view": view}); rows with a missing group value are left out of that variable. Long format:
    group, value, finding (the K findings then "mean"), auroc, n_images, n_pos, n_neg.
    """
    yt, yp, names = _check(y_true, y_prob, names)
    rows = []
    for group, values in groups.items():
        values = np.asarray(values, dtype=object)
        if values.shape != (yt.shape[0],):
            raise ValueError(f"group {group!r} must be [N] = [{yt.shape[0]}]; got {values.shape}")
        present = ~pd.isna(values)
        levels = sorted({v for v in values[present]}, key=lambda v: (str(type(v)), v))
        for level in levels:
            rows_in = present & (values == level)
            sub_t, sub_p = yt[rows_in], yp[rows_in]
            aurocs = per_finding_auroc(sub_t, sub_p, names)
            for k, name in enumerate(names):
                rows.append(
                    dict(
                        group=group,
                        value=level,
                        finding=name,
                        auroc=aurocs[name],
                        n_images=int(rows_in.sum()),
                        n_pos=int((sub_t[:, k] == 1).sum()),
                        n_neg=int((sub_t[:, k] == 0).sum()),
                    )
                )
            rows.append(
                dict(
                    group=group,
                    value=level,
                    finding="mean",
                    auroc=mean_auroc(aurocs),
                    n_images=int(rows_in.sum()),
                    n_pos=int((sub_t == 1).sum()),
                    n_neg=int((sub_t == 0).sum()),
                )
            )
    return pd.DataFrame(rows, columns=["group", "value", "finding", "auroc", "n_images", "n_pos", "n_neg"])


# --------------------------------------------------------------------------- ROC curves


def roc_table(y_true: Any, y_prob: Any, names: Sequence[str], drop_intermediate: bool = True) -> pd.DataFrame:
    """ROC points per finding in long format (finding, fpr, tpr, threshold), for ``dvc plots``.
    The "nothing positive" point's +inf threshold is replaced by the next float above the top
    score (same meaning under ``>=``, finite in CSV / JSON). Findings with one class are skipped."""
    yt, yp, names = _check(y_true, y_prob, names)
    parts = []
    for k, name in enumerate(names):
        y, s = _column(yt, yp, k)
        if y.size == 0 or y.min() == y.max():
            continue
        fpr, tpr, thr = roc_curve(y, s, drop_intermediate=drop_intermediate)
        parts.append(pd.DataFrame({"finding": name, "fpr": fpr, "tpr": tpr, "threshold": _finite_threshold(thr, s)}))
    if not parts:
        return pd.DataFrame(columns=["finding", "fpr", "tpr", "threshold"])
    return pd.concat(parts, ignore_index=True)


def roc_figure(table: pd.DataFrame, aurocs: Mapping[str, float] | None = None, title: str | None = None) -> Figure:
    """All findings' ROC curves from ``roc_table`` on one Agg figure (AUROC in the legend when
    ``aurocs`` is given)."""
    fig = Figure(figsize=(7, 6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    for name, part in table.groupby("finding", sort=False):
        label = str(name)
        if aurocs is not None and name in aurocs and not np.isnan(aurocs[name]):
            label = f"{name} ({aurocs[name]:.3f})"
        ax.plot(part["fpr"], part["tpr"], linewidth=1.2, label=label)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize="x-small")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- explainability


def _cam(cam: Any) -> np.ndarray:
    arr = np.asarray(cam, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"the attention map must be 2-D [H, W]; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("the attention map has non-finite values")
    return arr


def _box(box: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise ValueError(f"box width and height must be > 0; got {box}")
    return x, y, w, h


def box_mask(shape: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """Boolean [H, W] mask of the pixels whose centres lie in the box (x, y, w, h): x, w along
    columns, y, h along rows, in pixels; an integer box (10, 20, 5, 3) covers columns 10..14 and
    rows 20..22. Parts outside the image are cut off."""
    x, y, w, h = _box(box)
    rows = np.arange(shape[0]) + 0.5
    cols = np.arange(shape[1]) + 0.5
    return ((rows >= y) & (rows <= y + h))[:, None] & ((cols >= x) & (cols <= x + w))[None, :]


def pointing_game(cam: Any, box: Sequence[float], tolerance: float = 0.0) -> bool:
    """Hit when the map's maximum lies in the box (x, y, w, h), or within ``tolerance`` pixels of it
    (Euclidean distance from the peak pixel's centre to the box). Ties between maxima go to the
    first in row-major order (``np.argmax``, as TorchRay does); a constant map has no peak and
    misses."""
    arr = _cam(cam)
    x, y, w, h = _box(box)
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    if arr.max() == arr.min():
        return False
    r, c = np.unravel_index(int(np.argmax(arr)), arr.shape)
    pr, pc = r + 0.5, c + 0.5
    dx = max(x - pc, 0.0, pc - (x + w))
    dy = max(y - pr, 0.0, pr - (y + h))
    return bool(np.hypot(dx, dy) <= tolerance)


def cam_iou(cam: Any, box: Sequence[float], threshold: float = 0.5) -> float:
    """IoU between the map thresholded at ``threshold * max`` (pixels >= it) and the box mask.
    A map whose maximum is <= 0 activates nothing and scores 0."""
    arr = _cam(cam)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be in [0, 1]")
    peak = arr.max()
    if peak <= 0:
        return 0.0
    activated = arr >= threshold * peak
    target = box_mask(arr.shape, box)
    union = np.logical_or(activated, target).sum()
    return float(np.logical_and(activated, target).sum() / union) if union else 0.0


def localisation_summary(records: Iterable[Any], tolerance: float = 0.0, threshold: float = 0.5) -> pd.DataFrame:
    """Pointing-game hit rate and mean CAM IoU per finding, then an "all" row.

    ``records`` are (finding, cam, box) tuples or mappings with those keys; NIH's bounding-box
    spelling "Infiltrate" is counted as "Infiltration". Columns: finding, n, hit_rate, mean_iou
    (findings in order of first appearance).
    """
    per: dict[str, list[tuple[bool, float]]] = {}
    for rec in records:
        if isinstance(rec, Mapping):
            finding, cam, box = rec["finding"], rec["cam"], rec["box"]
        else:
            finding, cam, box = rec
        finding = _BBOX_ALIASES.get(str(finding), str(finding))
        per.setdefault(finding, []).append((pointing_game(cam, box, tolerance), cam_iou(cam, box, threshold)))
    rows = []
    for finding, results in per.items():
        hits, ious = zip(*results)
        rows.append(dict(finding=finding, n=len(results), hit_rate=float(np.mean(hits)), mean_iou=float(np.mean(ious))))
    everything = [r for results in per.values() for r in results]
    if everything:
        hits, ious = zip(*everything)
        rows.append(
            dict(finding="all", n=len(everything), hit_rate=float(np.mean(hits)), mean_iou=float(np.mean(ious)))
        )
    return pd.DataFrame(rows, columns=["finding", "n", "hit_rate", "mean_iou"])


# --------------------------------------------------------------------------- results table


def compare_to_chexnet(
    ci_table: pd.DataFrame, n_test_images: int, min_images: int = 1000, min_positives: int = 20
) -> pd.DataFrame:
    """Put ``bootstrap_auroc_ci``'s table beside CheXNet's published AUROCs.

    A row is ``comparable`` only when the test set has at least ``min_images`` images, the finding
    has at least ``min_positives`` positive images and a defined AUROC, and CheXNet published a
    value for it; the "mean" row also needs every one of the 14 findings comparable. Otherwise
    ``note`` says why, starting with "sample too small to compare" for size reasons. Columns: finding,
    auroc, ci_low, ci_high, n_pos, chexnet_auroc, delta (ours - CheXNet), chexnet_in_ci, comparable,
    note. CheXNet used its own patient split, so even a comparable row is indicative only.
    """
    small_set = n_test_images < min_images
    rows = []
    finding_ok: dict[str, bool] = {}
    for rec in ci_table.to_dict("records"):
        name = str(rec["finding"])
        if name == "mean":
            continue
        ref = CHEXNET_AUROC.get(name, float("nan"))
        auroc = float(rec["auroc"])
        if small_set:
            note = f"{TOO_SMALL} ({n_test_images} test images < {min_images})"
        elif int(rec["n_pos"]) < min_positives:
            note = f"{TOO_SMALL} ({int(rec['n_pos'])} positives < {min_positives})"
        elif np.isnan(auroc):
            note = "AUROC undefined (one class only)"
        elif np.isnan(ref):
            note = "no published CheXNet value"
        else:
            note = ""
        finding_ok[name] = note == ""
        rows.append((rec, ref, note))
    mean_rec = next((r for r in ci_table.to_dict("records") if str(r["finding"]) == "mean"), None)
    if mean_rec is not None:
        missing = [f for f in FINDINGS if not finding_ok.get(f, False)]
        if small_set:
            note = f"{TOO_SMALL} ({n_test_images} test images < {min_images})"
        elif missing:
            too_small = any(n.startswith(TOO_SMALL) for _, _, n in rows)
            prefix = f"{TOO_SMALL}: " if too_small else ""
            note = f"{prefix}not comparable for {', '.join(missing)}"
        else:
            note = ""
        rows.append((mean_rec, CHEXNET_MEAN_AUROC, note))
    out = []
    for rec, ref, note in rows:
        auroc, lo, hi = float(rec["auroc"]), float(rec["ci_low"]), float(rec["ci_high"])
        out.append(
            dict(
                finding=rec["finding"],
                auroc=auroc,
                ci_low=lo,
                ci_high=hi,
                n_pos=int(rec["n_pos"]),
                chexnet_auroc=ref,
                delta=auroc - ref,
                chexnet_in_ci=bool(lo <= ref <= hi) if not np.isnan(ref + lo + hi) else False,
                comparable=note == "",
                note=note,
            )
        )
    return pd.DataFrame(
        out,
        columns=[
            "finding",
            "auroc",
            "ci_low",
            "ci_high",
            "n_pos",
            "chexnet_auroc",
            "delta",
            "chexnet_in_ci",
            "comparable",
            "note",
        ],
    )
