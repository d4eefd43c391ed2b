"""The registered contact model: a DataFrame of sequences in; contacts, a contact map and optionally a Cα trace out.

Input: one row per chain, column `sequence` (one-letter codes of the 20 standard residues, `min_length` to
`max_length` long; anything else is refused with a PayloadError naming the column and row) and an optional
integer column `fold` (1: also fold the chain from its predicted distogram and return the Cα trace as PDB
text; it costs seconds per chain). Output, per row: `length`, `contact_density` (expected long-range contacts
per residue), `top_contacts` (JSON [[i, j, p], ...], the top-L long-range pairs, 1-based), `contact_map` (JSON
L x L contact probabilities, 3 decimals) and `pdb` ("" unless folded). The maps are large: the inference log
keeps the summary columns, not the maps (monitoring.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from components.payload import Column, check_columns

ARTIFACTS = ("model_config", "weights")
FILES = {"model_config": "model.json", "weights": "weights.pt"}


def artifact_paths(model_dir: Path) -> dict[str, str]:
    return {name: str(Path(model_dir) / FILES[name]) for name in ARTIFACTS}


def load_net(model_config: dict, weights: str):
    import torch

    from pipelines.protein.contacts import ContactNet

    net = ContactNet(**model_config["architecture"])
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


class ProteinContactModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(**{name: context.artifacts[name] for name in ARTIFACTS})

    def load(self, model_config: str, weights: str) -> ProteinContactModel:
        self.config = json.loads(Path(model_config).read_text())
        self.net = load_net(self.config, weights)
        return self

    @classmethod
    def from_dir(cls, model_dir: Path) -> ProteinContactModel:
        return cls().load(**artifact_paths(model_dir))

    @property
    def columns(self) -> list[Column]:
        limits = {"min_length": self.config["min_length"], "max_length": self.config["max_length"]}
        return [
            Column("sequence", "sequence", options=limits, description="one-letter amino-acid codes"),
            Column("fold", "integer", required=False, options={"low": 0, "high": 1}, description="1: fold it"),
        ]

    def distogram(self, sequence: str) -> np.ndarray:
        import torch

        from pipelines.protein.graph import sequence_graph

        with torch.no_grad():
            return torch.softmax(self.net(sequence_graph(sequence, self.config["window"])), -1).numpy()

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from pipelines.protein import geometry

        values = check_columns(model_input, self.columns)
        rows = []
        for sequence, fold in zip(values["sequence"], values["fold"], strict=True):
            probs = self.distogram(sequence)
            scores = geometry.contact_probability(probs)
            length = len(sequence)
            long = geometry.range_mask(length, "long")
            i, j = np.nonzero(long)  # row-major, the same order as scores[long]
            pair_scores = scores[long]
            top = [
                [int(i[k]) + 1, int(j[k]) + 1, round(float(pair_scores[k]), 3)]
                for k in np.argsort(-pair_scores)[:length]
            ]
            rows.append(
                {
                    "length": length,
                    "contact_density": float(pair_scores.sum() / length),
                    "top_contacts": json.dumps(top),
                    "contact_map": json.dumps(np.round(scores, 3).tolist()),
                    "pdb": self.fold(probs, sequence) if fold else "",
                }
            )
        return pd.DataFrame(rows)

    def fold(self, probs: np.ndarray, sequence: str) -> str:
        from pipelines.protein.folding import fold, trajectory_text

        result = fold(probs, len(sequence), steps=self.config["fold_steps"], lr=self.config.get("fold_lr", 0.2), seed=0)
        return trajectory_text(result.coords[None], sequence)
