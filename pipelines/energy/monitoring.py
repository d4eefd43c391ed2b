"""What the monitor watches for energy, and the streams the replay tool sends.

One request is one history window (the pyfunc's input); its monitored features are, per channel,
the window's mean and standard deviation (level and volatility of the load) and the forecast's mean.

Reference: the validation windows, the most recent period the model was selected on.
Streams (`replay_requests`):
- unshifted: windows of the test period, later than anything the model or the reference saw;
- station:   the same windows from another transformer station (ETTh1 <-> ETTh2, ETTm1 <-> ETTm2 from
             the configured mirror; on the demo profile the generator with another seed);
- season:    windows from the first fifth of the training period, months away from the reference
             (ETT: summer and autumn 2016 against the reference's summer 2017).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from components.monitor import FeatureSpec, even_sample

STREAMS = ("unshifted", "station", "season")
SISTER_STATION = {"ETTh1": "ETTh2", "ETTh2": "ETTh1", "ETTm1": "ETTm2", "ETTm2": "ETTm1"}


def spec(python_model) -> FeatureSpec:
    columns = python_model.config["columns"]
    return FeatureSpec(
        numerical=[f"{stat}:{c}" for stat in ("mean", "std") for c in columns],
        categorical=[],
        outputs=[f"forecast_mean:{c}" for c in columns],
    )


def features(python_model, request: pd.DataFrame, answer: pd.DataFrame) -> pd.DataFrame:
    """One row per request: the statistics of the window the model used (its last seq_len rows)."""
    c = python_model.config
    history = request[c["columns"]].apply(pd.to_numeric, errors="coerce").iloc[-c["seq_len"] :]
    forecast = answer[c["columns"]].apply(pd.to_numeric, errors="coerce")
    row = {f"mean:{k}": history[k].mean() for k in c["columns"]}
    row |= {f"std:{k}": history[k].std(ddof=0) for k in c["columns"]}
    row |= {f"forecast_mean:{k}": forecast[k].mean() for k in c["columns"]}
    return pd.DataFrame([row])


# ---- windows as requests ----------------------------------------------------------------------


def series_frame(prepared_dir: Path) -> tuple[pd.DataFrame, tuple[int, int, int]]:
    """The prepared series back in original units, with its time column; and the split borders."""
    import json

    from pipelines.energy.data import load_prepared

    series, borders, stamps, scaler = load_prepared(prepared_dir)
    meta = json.loads((prepared_dir / "meta.json").read_text())
    values = series.numpy() * np.asarray(scaler["scale"]) + np.asarray(scaler["mean"])
    frame = pd.DataFrame(values.astype(np.float64), columns=scaler["columns"])
    frame.insert(0, meta["time_column"], pd.to_datetime(stamps))
    return frame, borders


def windows(frame: pd.DataFrame, starts, seq_len: int) -> list[pd.DataFrame]:
    return [frame.iloc[s : s + seq_len].reset_index(drop=True) for s in starts]


def reference_requests(cfg, paths, limit: int) -> list[pd.DataFrame]:
    """Every validation window (input rows may reach back into train), at most `limit`, evenly spread."""
    frame, (train_end, val_end, _) = series_frame(paths.prepared)
    seq_len, horizon = cfg.project.window.seq_len, cfg.project.window.horizon
    starts = list(range(train_end - seq_len, val_end - seq_len - horizon + 1))
    return windows(frame, even_sample(starts, limit), seq_len)


def replay_requests(cfg, paths, stream: str, n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """`n` windows of one stream, at random positions of its period."""
    frame, (train_end, val_end, test_end) = series_frame(paths.prepared)
    seq_len = cfg.project.window.seq_len
    if stream == "unshifted":
        low, high = val_end - seq_len, test_end - seq_len
    elif stream == "season":
        low, high = 0, max(train_end // 5, 1)
    elif stream == "station":
        frame = other_station(cfg, len(frame))
        low, high = val_end - seq_len, test_end - seq_len  # the same calendar period, another station
    else:
        raise ValueError(f"energy stream {stream!r} is not one of {STREAMS}")
    return windows(frame, rng.integers(low, high, size=n), seq_len)


def other_station(cfg, rows: int) -> pd.DataFrame:
    """A second station's series in the same format (read through the real reader)."""
    from components.fetch import fetch, resolve
    from pipelines.energy import sources

    data = cfg.project.data
    with tempfile.TemporaryDirectory() as tmp:
        if data.source == "demo":
            path = sources.write_demo(Path(tmp) / sources.DEMO_FILE, rows=data.demo_rows, seed=cfg.seed + 1)
            _, schema = sources.raw_file(data)
        elif data.source == "ett":
            sister = SISTER_STATION[data.dataset]
            path = fetch(
                resolve(data.ett_mirror, f"{sister}.csv"),
                Path(tmp) / f"{sister}.csv",
                checksum=data.checksums.get(f"{sister}.csv"),
            )
            from pipelines.energy.schema import ett_schema

            schema = ett_schema(sister)
        else:
            raise ValueError(f"energy.data.source={data.source!r} has no second station to replay")
        stamps, values = sources.read_series(path, schema)
    frame = pd.DataFrame(values[:rows].astype(np.float64), columns=list(schema.value_columns))
    frame.insert(0, schema.time_column, stamps[:rows])
    return frame
