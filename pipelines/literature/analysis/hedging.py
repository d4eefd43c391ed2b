"""The hedging classifier the bias step applies: the registered transformer model, else a TF-IDF baseline.

`literature.analysis.hedging_model` names a registered MLflow model (`models:/literature-hedging[-demo]@
champion`, built by the `literature.task=hedging` pipeline: a pyfunc taking a `text` column and returning
`label` + `p_<label>`). When the key is empty or the model is not registered (yet), the step trains the
baseline documented here and says so in its report:

TF-IDF of word 1-2-grams (sublinear tf, in at least 2 training sentences) + logistic regression
(class_weight="balanced": 18 % of BioScope's abstract sentences are uncertain), trained on BioScope
sentences, evaluated on a held-out split grouped by document (an abstract's sentences share wording, so a
sentence-level split would leak), scored as CoNLL-2010 task 1 does: F1 of the "uncertain" class. Hedge
cues are mostly words ("may", "suggest", "possible"), which is why a lexical baseline is a fair reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("scifolio.literature.analysis.hedging")
CONLL2010_F1 = 86.0  # best biological-domain sentence-level F1, CoNLL-2010 task 1 (Farkas et al. 2010)


class Baseline:
    """TF-IDF + logistic regression with the registered model's interface (`text` in, label + p_ out)."""

    labels = ("certain", "uncertain")

    def __init__(self, seed: int = 0):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipe = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed),
        )

    def fit(self, texts: list[str], labels: list[str]) -> Baseline:
        self.pipe.fit(texts, labels)
        return self

    def predict(self, frame):
        import pandas as pd

        probs = self.pipe.predict_proba(frame["text"].tolist())
        classes = list(self.pipe.classes_)
        out = pd.DataFrame({f"p_{c}": probs[:, i] for i, c in enumerate(classes)})
        out.insert(0, "label", [classes[i] for i in probs.argmax(axis=1)])
        return out


def read_bioscope_sentences(source: str, data_dir: Path, seed: int = 0):
    from pipelines.literature.sources.bioscope import read_bioscope, write_demo_bioscope

    if source == "demo":
        path = Path(data_dir) / "literature" / "corpus_demo" / "bioscope" / "abstracts.xml"
        write_demo_bioscope(path, n_docs=60, seed=seed)
        return read_bioscope(path.parent)
    if not source:
        raise ValueError("literature.analysis.bioscope is not set: the BioScope folder (or 'demo') for the baseline")
    return read_bioscope(Path(source))


def train_baseline(sentences, test_fraction: float, seed: int = 0) -> tuple[Baseline, dict]:
    """Fit on the training documents, score F1(uncertain) on held-out documents; return the model and scores."""
    import numpy as np
    from sklearn.metrics import f1_score, precision_score, recall_score
    from sklearn.model_selection import GroupShuffleSplit

    texts = [s.text for s in sentences]
    labels = [s.label for s in sentences]
    groups = [f"{s.split}:{s.doc_id}" for s in sentences]
    train, test = next(
        GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed).split(texts, labels, groups)
    )
    model = Baseline(seed).fit([texts[i] for i in train], [labels[i] for i in train])
    import pandas as pd

    predicted = model.predict(pd.DataFrame({"text": [texts[i] for i in test]}))["label"].tolist()
    truth = [labels[i] for i in test]
    scores = {
        "f1": 100 * f1_score(truth, predicted, pos_label="uncertain"),
        "precision": 100 * precision_score(truth, predicted, pos_label="uncertain", zero_division=0),
        "recall": 100 * recall_score(truth, predicted, pos_label="uncertain"),
        "train_sentences": len(train),
        "test_sentences": len(test),
        "test_documents": len({groups[i] for i in test}),
        "test_uncertain_share": float(np.mean([t == "uncertain" for t in truth])),
    }
    return model, scores


def load_registered(uri: str):
    """The registered pyfunc at `uri`, or (None, why not)."""
    if not uri:
        return None, "literature.analysis.hedging_model is empty"
    try:
        import mlflow

        return mlflow.pyfunc.load_model(uri), ""
    except Exception as err:  # MlflowException (not registered, no alias), OSError: fall back, and say why
        return None, f"{uri} could not be loaded ({str(err).splitlines()[0][:200]})"
