"""The registered model of every literature task: a DataFrame in, one label and probabilities per row out.

Input: one row per text, column `text` (a non-blank string of at most `max_chars` characters; anything
else is refused with `TextInputError` naming the column and row). Roles also reads an optional
`abstract_id` column: the rows of one abstract, in order, are classified together (absent: all rows are
one abstract; a model trained with `model.context: sentence` reads every row alone and ignores it, one
trained with `position` reads each row's own words at its place in the abstract). Output: `label` and `p_<label>` for each class. Texts are tokenized with the tokenizer
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
TEXT, ABSTRACT = "text", "abstract_id"


class TextInputError(PayloadError):
    """A request the model refuses: the message names the column and the row (0-based) and says why."""


def artifact_paths(model_dir: Path) -> dict[str, str]:
    return {name: str(Path(model_dir) / FILES[name]) for name in ARTIFACTS}


def load_net(model_config: dict, weights: str):
    import torch

    from pipelines.literature.models import classifier, encoder_from_config

    encoder = encoder_from_config(model_config["encoder_config"])
    net = classifier(
        encoder,
        len(model_config["labels"]),
        0.0,
        model_config.get("sequential", False),
        model_config.get("pooling", "mean"),
        model_config.get("sep_id"),
    )
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


class LiteratureModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(**{name: context.artifacts[name] for name in ARTIFACTS})

    def load(self, model_config: str, weights: str, tokenizer: str) -> LiteratureModel:
        from tokenizers import Tokenizer

        self.config = json.loads(Path(model_config).read_text())
        self.labels = list(self.config["labels"])
        self.sequential = bool(self.config.get("sequential", False))
        self.net = load_net(self.config, weights)
        self.tokenizer = Tokenizer.from_file(tokenizer)
        return self

    @classmethod
    def from_dir(cls, model_dir: Path) -> LiteratureModel:
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

    def abstracts(self, model_input: pd.DataFrame) -> list[str]:
        """The abstract of each row (roles): the `abstract_id` column as strings, or one abstract for all."""
        if ABSTRACT not in model_input.columns:
            return ["0"] * len(model_input)
        ids = model_input[ABSTRACT].tolist()
        for row, value in enumerate(ids):
            if value is None or (isinstance(value, float) and value != value):
                raise TextInputError("the abstract id is missing", ABSTRACT, row)
        return [str(v) for v in ids]

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from pipelines.literature.data import context_groups, encode, encode_abstracts
        from pipelines.literature.models import predict_rows

        texts = self.check(model_input)
        max_len, pad_id = self.config["max_len"], self.config["pad_id"]
        if self.sequential:  # grouped as in training: by abstract, or each sentence alone
            groups = context_groups(self.abstracts(model_input), self.config.get("context", "abstract"))
            ids, mask, row = encode_abstracts(self.tokenizer, texts, groups, max_len, pad_id)
            proba = predict_rows(self.net, ids, mask, row, n_rows=len(texts))
        else:
            ids, mask = encode(self.tokenizer, texts, max_len, pad_id)
            proba = predict_rows(self.net, ids, mask)
        proba = proba.numpy().astype("float64")
        out = pd.DataFrame({"label": [self.labels[i] for i in proba.argmax(1)]})
        for i, label in enumerate(self.labels):
            out[f"p_{label}"] = proba[:, i]
        return out


CitationIntent = LiteratureModel  # the first slice's name (models logged before the rename import it)
