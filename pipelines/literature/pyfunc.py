"""The registered citation-intent model: a DataFrame with a `text` column in, a label and probabilities out.

Input: one row per citation context, column `text` (a non-blank string of at most `max_chars`
characters; anything else is refused with `TextInputError` naming the column and row). Output: `label`
(background / method / result) and `p_<label>` for each class. Texts are tokenized with the tokenizer
saved at prepare (WordPiece trained on train texts, or the pretrained encoder's own).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from components.payload import PayloadError, check_text

ARTIFACTS = ("model_config", "weights", "tokenizer")
FILES = {"model_config": "model.json", "weights": "weights.pt", "tokenizer": "tokenizer.json"}
TEXT = "text"


class TextInputError(PayloadError):
    """A request the model refuses: the message names the column and the row (0-based) and says why."""


def artifact_paths(model_dir: Path) -> dict[str, str]:
    return {name: str(Path(model_dir) / FILES[name]) for name in ARTIFACTS}


def load_net(model_config: dict, weights: str):
    import torch

    from pipelines.literature.models import CitationClassifier, encoder_from_config

    encoder = encoder_from_config(model_config["encoder_config"])
    net = CitationClassifier(encoder, len(model_config["labels"]), 0.0, model_config.get("pooling", "mean"))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


class CitationIntent(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(**{name: context.artifacts[name] for name in ARTIFACTS})

    def load(self, model_config: str, weights: str, tokenizer: str) -> CitationIntent:
        from tokenizers import Tokenizer

        self.config = json.loads(Path(model_config).read_text())
        self.labels = list(self.config["labels"])
        self.net = load_net(self.config, weights)
        self.tokenizer = Tokenizer.from_file(tokenizer)
        return self

    @classmethod
    def from_dir(cls, model_dir: Path) -> CitationIntent:
        return cls().load(**artifact_paths(model_dir))

    def check(self, model_input) -> list[str]:
        if not isinstance(model_input, pd.DataFrame):
            raise TextInputError(f"expected a table with a {TEXT!r} column, got {type(model_input).__name__}")
        if TEXT not in model_input.columns:
            raise TextInputError(f"missing column (got {list(model_input.columns)})", TEXT)
        try:
            return check_text(model_input[TEXT], TEXT, max_chars=self.config["max_chars"])
        except PayloadError as err:
            raise TextInputError(err.reason, err.column, err.row) from None

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from pipelines.literature.data import encode
        from pipelines.literature.models import predict_proba

        texts = self.check(model_input)
        ids, mask = encode(self.tokenizer, texts, self.config["max_len"], self.config["pad_id"])
        proba = predict_proba(self.net, ids, mask).numpy().astype("float64")
        out = pd.DataFrame({"label": [self.labels[i] for i in proba.argmax(1)]})
        for i, label in enumerate(self.labels):
            out[f"p_{label}"] = proba[:, i]
        return out
