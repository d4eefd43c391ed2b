"""Clinical validation of a chest X-ray classifier: the evaluate stage's numbers, tables and figures.

Thresholds are chosen on VALIDATION (Youden's J) and applied unchanged to test. AUROC intervals come
from a patient-level bootstrap. Grad-CAM maps of test images are scored against NIH's boxes
(pointing game, IoU) and drawn as overlays; the metadata branch gets integrated-gradient attributions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from components.project import Evaluation
from pipelines.medical.evaluation import metrics as M
from pipelines.medical.sources.nih import FINDINGS, NIH_BOX_SPACE


@torch.inference_mode()
def predict(net, loader) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(probabilities, labels with NaN = masked, meta) over every image of a loader, in order."""
    net.eval()
    probs, labels, meta = [], [], []
    for batch in loader:
        probs.append(torch.sigmoid(net(batch["image"], batch["tokens"])).float().numpy())
        labels.append(batch["labels"].numpy())
        meta += batch["meta"]
    return np.concatenate(probs), np.concatenate(labels), meta


def evaluate(net, dm, boxes: pd.DataFrame, n_boot: int, n_cams: int, seed: int) -> Evaluation:
    dm.setup("test")
    names = list(FINDINGS)
    val_p, val_y, _ = predict(net, dm.val_dataloader())
    test_p, test_y, meta = predict(net, dm.test_dataloader())
    patients = np.array([m["patient_id"] for m in meta])

    thresholds = M.choose_thresholds(val_y, val_p, names, rule="youden")
    ci = M.bootstrap_auroc_ci(test_y, test_p, patients, names, n_boot=n_boot, seed=seed)
    f1 = M.f1_scores(test_y, test_p, thresholds, names)
    reliability = M.reliability_table(test_y, test_p)
    subgroups = M.subgroup_auroc(
        test_y,
        test_p,
        names,
        {
            "sex": np.array([m["sex"] for m in meta]),
            "age_band": M.age_bands(np.array([m["age"] for m in meta], dtype=float)),
            "view": np.array([m["view"] for m in meta]),
        },
    )
    roc = M.roc_table(test_y, test_p, names)
    mean_row = ci.set_index("finding").loc["mean"]
    metrics = {
        "test/auroc_mean": mean_row["auroc"],
        "test/auroc_mean_ci_low": mean_row["ci_low"],
        "test/auroc_mean_ci_high": mean_row["ci_high"],
        "val/auroc_mean": M.mean_auroc(val_y, val_p, names),
        "test/f1_macro": f1["macro"],
        "test/f1_micro": f1["micro"],
        "test/ece": M.expected_calibration_error(test_y, test_p),
        "test/images": float(len(test_p)),
    }
    for row in ci.itertuples():
        if row.finding != "mean":
            metrics[f"test/auroc/{row.finding}"] = row.auroc
    cams, localisation, cam_figure = gradcam_outputs(net, dm, meta, test_p, boxes, n_cams)
    for row in localisation.itertuples():
        if row.finding == "all":
            metrics["explain/pointing_hit_rate"], metrics["explain/box_iou"] = row.hit_rate, row.mean_iou
    tables = {
        "auroc_ci": ci,
        "roc": roc,
        "reliability": reliability,
        "subgroups": subgroups,
        "thresholds": pd.DataFrame({"finding": names, "threshold": [thresholds[n] for n in names]}),
        "sens_spec": M.sens_spec_at(test_y, test_p, thresholds, names),
        "chexnet": M.compare_to_chexnet(ci, len(test_p)),
        "localisation": localisation,
    }
    attributions = text_attribution_table(net, dm, test_p)
    if attributions is not None:
        tables["text_attributions"] = attributions
    figures = {"roc": M.roc_figure(roc), "reliability": M.reliability_figure(reliability)}
    if cam_figure is not None:
        figures["gradcam"] = cam_figure
    # undefined metrics (a finding with one class in a small test set) stay NaN in the tables only
    return Evaluation({k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}, tables, figures)


def first_batch(dm, n: int) -> dict:
    """The first n test images as one batch (inputs, meta), deterministic."""
    items = [dm.dataset("test")[i] for i in range(min(n, len(dm.dataset("test"))))]
    from pipelines.medical.data import collate

    return collate(items)


def gradcam_outputs(net, dm, meta, test_p, boxes: pd.DataFrame, n_cams: int):
    """Pointing game / IoU on every boxed test image; overlays of the first n_cams test images."""
    from pipelines.medical.evaluation.explain import gradcam, overlay

    records = []
    boxed = boxes[boxes["image"].isin({m["image"] for m in meta})]
    index = {m["image"]: i for i, m in enumerate(meta)}
    scale = dm.size / NIH_BOX_SPACE  # boxes are in NIH's 1024-pixel space
    for image_name, group in boxed.groupby("image"):
        item = dm.dataset("test")[index[image_name]]
        x, tokens = torch.as_tensor(item["image"])[None].float(), torch.as_tensor(item["tokens"])[None]
        for box in group.itertuples():
            cam = gradcam(net, x, tokens, FINDINGS.index(box.finding))[0]
            records.append((box.finding, cam, (box.x * scale, box.y * scale, box.w * scale, box.h * scale)))
    localisation = (
        M.localisation_summary(records)
        if records
        else pd.DataFrame({"finding": ["all"], "n": [0], "hit_rate": [float("nan")], "mean_iou": [float("nan")]})
    )

    if n_cams <= 0 or len(test_p) == 0:
        return records, localisation, None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = first_batch(dm, n_cams)
    n = len(batch["meta"])
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
    for i in range(n):
        k = int(np.argmax(test_p[i]))  # the finding the model is most confident about
        cam = gradcam(net, batch["image"][i : i + 1], batch["tokens"][i : i + 1], k)[0]
        axes[0, i].imshow(overlay(batch["image"][i, 0].numpy(), cam))
        axes[0, i].set_title(f"{FINDINGS[k]} {test_p[i, k]:.2f}", fontsize=8)
        axes[0, i].axis("off")
    fig.suptitle("Grad-CAM of the top finding, first test images", fontsize=9)
    return records, localisation, fig


def text_attribution_table(net, dm, test_p) -> pd.DataFrame | None:
    """Integrated gradients of the metadata tokens for the first test image's top finding."""
    from tokenizers import Tokenizer

    from pipelines.medical.evaluation.explain import text_attributions

    if not hasattr(net, "tok_embed") or len(test_p) == 0:
        return None  # the DenseNet baseline, or the multimodal model with text=False: no text branch
    batch = first_batch(dm, 1)
    k = int(np.argmax(test_p[0]))
    tokenizer = Tokenizer.from_file(str(dm.tokenizer_path)) if dm.tokenizer_path else None
    scores = text_attributions(net, batch["image"], batch["tokens"], k, tokenizer=tokenizer)
    return pd.DataFrame(
        {"token": [t for t, _ in scores], "attribution": [s for _, s in scores], "finding": FINDINGS[k]}
    )


def score(classifier, entries: pd.DataFrame, reader) -> float:
    """Mean test AUROC of a registered model through its own preprocessing (the gate's scorer)."""
    from pipelines.medical.data import metadata_text

    test = entries[entries["split"] == "test"]
    images = [reader.read(name) for name in test["image"]]
    texts = [metadata_text(a, s, v) for a, s, v in zip(test["age"], test["sex"], test["view"])]
    probs = classifier.predict_proba(images, texts)
    return M.mean_auroc(test[list(FINDINGS)].to_numpy(np.float32), probs, list(FINDINGS))
