"""The registered energy model: a window of history as a DataFrame in, the forecast as a DataFrame out.

Input: the time column and every channel (original units), at least `seq_len` rows, oldest first,
exactly `freq_seconds` apart; the last `seq_len` rows are used. A request is held to the rules of the
training data (pipelines/energy/checks.py and schema.py): see `EnergyForecaster._check`. Output: `horizon` rows with future timestamps and every channel.
Scaling uses the training-row statistics saved with the model, so callers never standardise.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from components.payload import PayloadError
from pipelines.energy.models import build_model

ARTIFACTS = ("model_config", "weights", "scaler")  # names of the files logged with the model
_NO_VALUE = object()


class InputError(PayloadError):
    """A request the model cannot forecast from; the message names the column and row and says what to fix."""

    def __init__(self, reason: str, column: str | None = None, row: int | None = None, value=_NO_VALUE):
        if value is not _NO_VALUE:
            if hasattr(value, "isoformat"):
                value = value.isoformat()
            elif isinstance(value, np.generic):
                value = value.item()
            text = repr(value)
            reason = f"{text[:60]} {reason}"
        super().__init__(reason, column, row)


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
        self.ranges = plausible_ranges(c)
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
        stamps = history[c["time_column"]]
        values = history[c["columns"]].to_numpy(dtype=np.float32)[-c["seq_len"] :]
        forecast = self.forecast_array(values[None])[0]
        step = pd.Timedelta(seconds=c["freq_seconds"])
        future = pd.date_range(stamps.iloc[-1] + step, periods=c["horizon"], freq=step)
        out = pd.DataFrame(forecast.astype(np.float64), columns=c["columns"])
        out.insert(0, c["time_column"], future)
        return out

    def _check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The training data's rules (pipelines/energy/checks.py, schema.py) applied to one request.

        Timestamps: datetime-like (datetime64 or date strings, never numbers), unique, strictly increasing
        and exactly `freq_seconds` apart, as the series check of the raw CSV demands. Values: numbers,
        finite once cast to the network's float32, within the schema's plausible ranges.
        """
        c = self.config
        time = c["time_column"]
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"expected a DataFrame with columns {[time, *c['columns']]}")
        missing = [col for col in (time, *c["columns"]) if col not in frame.columns]
        if missing:
            raise InputError(f"missing column(s) {missing}; expected {[time, *c['columns']]}")
        if len(frame) < c["seq_len"]:
            raise InputError(f"need at least seq_len={c['seq_len']} rows of history, got {len(frame)}")
        stamps = self._stamps(frame[time])
        values = frame[c["columns"]].apply(pd.to_numeric, errors="coerce")
        bad = values.isna().to_numpy().nonzero()
        if len(bad[0]):
            row, col = int(bad[0][0]), c["columns"][int(bad[1][0])]
            raise InputError("is not a number", col, row, frame[col].iloc[row])
        with np.errstate(over="ignore"):
            as_float32 = values.to_numpy(dtype=np.float64).astype(np.float32)  # what the network will see
        bad = (~np.isfinite(as_float32)).nonzero()
        if len(bad[0]):
            row, col = int(bad[0][0]), c["columns"][int(bad[1][0])]
            raise InputError("is not a finite number once cast to float32", col, row, frame[col].iloc[row])
        for col, (low, high) in self.ranges.items():
            outside = ~values[col].between(low, high)
            if outside.any():
                row = int(np.flatnonzero(outside.to_numpy())[0])
                raise InputError(
                    f"is outside the plausible range [{low}, {high}] of the training data's schema",
                    col,
                    row,
                    values[col].iloc[row],
                )
        return frame.assign(**{time: stamps}, **{col: values[col] for col in c["columns"]})

    def _stamps(self, column: pd.Series) -> pd.Series:
        c = self.config
        time, step = c["time_column"], pd.Timedelta(seconds=c["freq_seconds"])
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise InputError(
                f"is a number ({column.dtype}), not a timestamp: send date strings like '2016-07-01 00:00:00'",
                time,
                0,
                column.iloc[0],
            )
        if not pd.api.types.is_datetime64_any_dtype(column):
            for row, value in enumerate(column.tolist()):
                if not isinstance(value, (str, dt.datetime, dt.date, np.datetime64)) or isinstance(value, bool):
                    raise InputError("is not a timestamp (send date strings)", time, row, value)
            try:
                stamps = pd.to_datetime(column, errors="coerce", format="ISO8601")
            except (TypeError, ValueError) as err:  # e.g. mixed time zones
                raise InputError(f"the timestamps cannot be read together: {err}", time) from None
        else:
            stamps = column
        if stamps.isna().any():
            row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
            raise InputError("is not a timestamp", time, row, column.iloc[row])
        gaps = stamps.diff().iloc[1:]
        wrong = (gaps != step).to_numpy()
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0]) + 1
            gap = gaps.iloc[row - 1]
            if gap == pd.Timedelta(0):
                reason = f"duplicates row {row - 1}'s timestamp"
            elif gap < pd.Timedelta(0):
                reason = f"is earlier than row {row - 1} (rows must be oldest first)"
            else:
                reason = f"is {gap} after row {row - 1}; the model's step is {step} (freq_seconds={c['freq_seconds']})"
            raise InputError(reason, time, row, column.iloc[row])
        return stamps


def plausible_ranges(config: dict) -> dict[str, tuple[float, float]]:
    """The schema's [min, max] per channel: model.json's `ranges` if it has them, else the schema whose
    time column, channels and step the model has (ETT hourly / 15-min, OPSD daily); none when unknown."""
    if config.get("ranges"):
        return {col: (float(lo), float(hi)) for col, (lo, hi) in config["ranges"].items()}
    from pipelines.energy.schema import ETT_15MIN, ETT_HOURLY, OPSD_DAILY

    for schema in (ETT_HOURLY, ETT_15MIN, OPSD_DAILY):
        if (
            schema.time_column == config["time_column"]
            and list(schema.value_columns) == list(config["columns"])
            and schema.freq_seconds == config["freq_seconds"]
        ):
            return dict(schema.ranges)
    return {}


def artifact_paths(model_dir: Path) -> dict[str, str]:
    return {
        "model_config": str(model_dir / "model.json"),
        "weights": str(model_dir / "weights.pt"),
        "scaler": str(model_dir / "scaler.json"),
    }
