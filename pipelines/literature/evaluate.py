"""Test metrics of every task: macro-F1 and accuracy (= micro-F1), weighted F1, the positive class's F1
(hedging: "uncertain", the CoNLL-2010 metric), per-class table, confusion matrix, majority baseline."""

from __future__ import annotations

from components.project import Evaluation


def scores(truth, predicted, labels, positive: str | None = None) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    idx = list(range(len(labels)))
    out = {
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=idx, zero_division=0)),
        "weighted_f1": float(f1_score(truth, predicted, average="weighted", labels=idx, zero_division=0)),
        "accuracy": float(accuracy_score(truth, predicted)),
    }
    if positive is not None:
        p = list(labels).index(positive)
        out[f"{positive}_f1"] = float(f1_score(truth, predicted, average="binary", pos_label=p, zero_division=0))
    return out


def per_class_table(truth, predicted, labels):
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=list(range(len(labels))), zero_division=0)
    return pd.DataFrame({"label": list(labels), "precision": p, "recall": r, "f1": f, "support": s})


def confusion_figure(truth, predicted, labels, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(truth, predicted, labels=list(range(len(labels))))
    size = 2.8 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center")
    fig.tight_layout()
    return fig


def split_predictions(net, datamodule, split: str):
    """(truth, predicted) per row (sentence) of `split`."""
    from pipelines.literature.models import predict_rows

    ids, mask, _ = datamodule.tensors(split)
    row, truth = datamodule.rows(split)
    proba = predict_rows(net, ids, mask, row, n_rows=len(truth))
    return truth.numpy(), proba.argmax(1).numpy()


def evaluate(net, datamodule) -> Evaluation:
    import numpy as np

    labels = datamodule.labels
    positive = datamodule.meta.get("positive")
    metrics, tables, figures = {}, {}, {}
    train_y = datamodule.rows("train")[1].numpy()
    majority = int(np.bincount(train_y, minlength=len(labels)).argmax())
    splits = ["test"] + (["heldout"] if "heldout" in datamodule.encoded else [])
    for split in splits:
        truth, predicted = split_predictions(net, datamodule, split)
        for k, v in scores(truth, predicted, labels, positive).items():
            metrics[f"{split}/{k}"] = v
        for k, v in scores(truth, np.full_like(truth, majority), labels, positive).items():
            metrics[f"baseline/{split}/{k}"] = v  # the majority class of train
        table = per_class_table(truth, predicted, labels)
        for row in table.itertuples():
            metrics[f"{split}/{row.label}/f1"] = float(row.f1)
        tables[f"{split}_per_class"] = table
        figures[f"{split}_confusion"] = confusion_figure(truth, predicted, labels, f"{split} (n={len(truth)})")
    return Evaluation(metrics, tables, figures)
