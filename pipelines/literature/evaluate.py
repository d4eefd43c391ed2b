"""Test metrics of the trained network: macro-F1 (the SciCite literature's metric), per class, confusion."""

from __future__ import annotations

from components.project import Evaluation


def scores(truth, predicted, labels) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    idx = list(range(len(labels)))
    return {
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=idx, zero_division=0)),
        "accuracy": float(accuracy_score(truth, predicted)),
    }


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
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
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


def evaluate(net, datamodule) -> Evaluation:
    import numpy as np

    from pipelines.literature.models import predict_proba

    labels = datamodule.labels
    metrics, tables, figures = {}, {}, {}
    train_y = datamodule.tensors("train")[2].numpy()
    majority = int(np.bincount(train_y, minlength=len(labels)).argmax())
    splits = ["test"] + (["heldout"] if "heldout" in datamodule.encoded else [])
    for split in splits:
        ids, mask, y = datamodule.tensors(split)
        truth = y.numpy()
        predicted = predict_proba(net, ids, mask).argmax(1).numpy()
        for k, v in scores(truth, predicted, labels).items():
            metrics[f"{split}/{k}"] = v
        for k, v in scores(truth, np.full_like(truth, majority), labels).items():
            metrics[f"baseline/{split}/{k}"] = v  # the majority class of train
        table = per_class_table(truth, predicted, labels)
        for row in table.itertuples():
            metrics[f"{split}/{row.label}/f1"] = float(row.f1)
        tables[f"{split}_per_class"] = table
        figures[f"{split}_confusion"] = confusion_figure(truth, predicted, labels, f"{split} (n={len(truth)})")
    return Evaluation(metrics, tables, figures)
