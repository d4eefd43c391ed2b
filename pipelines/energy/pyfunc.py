"""The registered energy model: a window of history as a DataFrame in, the forecast as a DataFrame out.

Input: the time column and every channel (original units), at least `seq_len` rows, oldest first;
the last `seq_len` rows are used. Output: `horizon` rows with future timestamps and every channel.
Scaling uses the training-row statistics saved with the model, so callers never standardise.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from pipelines.energy.models import build_model

ARTIFACTS = ("model_config", "weights", "scaler")  # names of the files logged with the model


class InputError(ValueError):
    """A request the model cannot forecast from; the message says what to fix."""


class EnergyForecaster(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(**{name: context.artifacts[name] for name in ARTIFACTS})

    def load(self, model_config: str, weights: str, scaler: str) -> EnergyForecaster:
        self.config = json.loads(Path(model_config).read_text())
        stats = json.loads(Path(scaler).read_text())
        self.mean = np.asarray(stats["mean"], dtype=np.float32)
        self.scale = np.asarray(stats["scale"], dtype=np.float32)
        c = self.config
        self.net = build_model(c["model"], c["seq_len"], c["horizon"], len(c["columns"]), **c["hparams"])
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net.eval()
        return self

    @classmethod
    def from_dir(cls, model_dir: Path) -> EnergyForecaster:
        return cls().load(**artifact_paths(model_dir))

    def forecast_array(self, history: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """[N, seq_len, C] in original units -> [N, horizon, C] in original units."""
        scaled = torch.from_numpy(((history - self.mean) / self.scale).astype(np.float32))
        with torch.inference_mode():
            out = torch.cat([self.net(chunk) for chunk in scaled.split(batch_size)])
        return out.numpy() * self.scale + self.mean

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        c = self.config
        history = self._check(model_input)
        stamps = pd.to_datetime(history[c["time_column"]])
        values = history[c["columns"]].to_numpy(dtype=np.float32)[-c["seq_len"] :]
        forecast = self.forecast_array(values[None])[0]
        step = pd.Timedelta(seconds=c["freq_seconds"])
        future = pd.date_range(stamps.iloc[-1] + step, periods=c["horizon"], freq=step)
        out = pd.DataFrame(forecast.astype(np.float64), columns=c["columns"])
        out.insert(0, c["time_column"], future)
        return out

    def _check(self, frame: pd.DataFrame) -> pd.DataFrame:
        c = self.config
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"expected a DataFrame with columns {[c['time_column'], *c['columns']]}")
        missing = [col for col in (c["time_column"], *c["columns"]) if col not in frame.columns]
        if missing:
            raise InputError(f"missing column(s) {missing}; expected {[c['time_column'], *c['columns']]}")
        if len(frame) < c["seq_len"]:
            raise InputError(f"need at least seq_len={c['seq_len']} rows of history, got {len(frame)}")
        values = frame[c["columns"]].apply(pd.to_numeric, errors="coerce")
        bad = values.isna().to_numpy().nonzero()
        if len(bad[0]):
            row, col = int(bad[0][0]), c["columns"][int(bad[1][0])]
            raise InputError(f"row {row}, column {col!r}: {frame[col].iloc[row]!r} is not a number")
        stamps = pd.to_datetime(frame[c["time_column"]], errors="coerce")
        if stamps.isna().any():
            row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
            raise InputError(f"row {row}, column {c['time_column']!r}: not a timestamp")
        if not stamps.is_monotonic_increasing:
            raise InputError(f"column {c['time_column']!r} must be increasing (oldest row first)")
        return frame.assign(**{col: values[col] for col in c["columns"]})


def artifact_paths(model_dir: Path) -> dict[str, str]:
    return {
        "model_config": str(model_dir / "model.json"),
        "weights": str(model_dir / "weights.pt"),
        "scaler": str(model_dir / "scaler.json"),
    }
