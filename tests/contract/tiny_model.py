"""The tiny test project's registered model (models-from-code: MLflow runs this file when loading it)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import set_model


class TinyPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict) -> TinyPyfunc:
        import torch
        from torch import nn

        hidden = json.loads(Path(artifacts["model.json"]).read_text())["hidden"]
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.net.load_state_dict(torch.load(artifacts["weights.pt"], map_location="cpu", weights_only=True))
        self.net.eval()
        self.scaler = json.loads(Path(artifacts["scaler.json"]).read_text())
        return self

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import torch

        x = (model_input[["x1", "x2"]].to_numpy(dtype=np.float64) - self.scaler["mean"]) / self.scaler["std"]
        with torch.no_grad():
            label = self.net(torch.tensor(x, dtype=torch.float32)).argmax(dim=1).numpy()
        return pd.DataFrame({"label": label.astype(np.int64)})


set_model(TinyPyfunc())
