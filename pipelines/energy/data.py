"""Splits, scaling and windows for multivariate forecasting, under the ETT benchmark protocol.

- split by time: ETT's standard borders (12/4/4 months of 30 days; x4 rows for 15-minute data), or
  train/val/test fractions for other series (TSLib's Dataset_Custom rule);
- the StandardScaler is fitted on the training rows only, then applied to the whole series;
- validation and test windows start `seq_len` rows before their border, so every *target* lies in
  its split, and EVERY window is evaluated: no dropped last batch (drop_last=False).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from components.steps import SplitLoaders, loader_options
from pipelines.energy.schema import ETT_HOURLY_BORDERS, MIN_ROWS, rows_needed, split_fractions  # noqa: F401

SPLITS = ("train", "val", "test")


def split_borders(n_rows: int, split, freq_seconds: int) -> tuple[int, int, int]:
    """End row (exclusive) of train, val and test; a series too short for `split` is refused."""
    need = rows_needed(split, freq_seconds)
    if split == "ett":
        if n_rows < need:
            raise ValueError(f"the ETT split needs {need} rows, the file has {n_rows}")
        per_hour = 3600 // freq_seconds  # ETTm has 4 rows an hour
        return tuple(b * per_hour for b in ETT_HOURLY_BORDERS)
    train, _, test = split_fractions(split)
    if n_rows < need:
        raise ValueError(
            f"energy.data.split {list(split)}: the series has {n_rows} rows; a split by time fractions needs "
            f"at least {need}"
        )
    n_train, n_test = int(n_rows * train), int(n_rows * test)
    sizes = {"train": n_train, "val": n_rows - n_test - n_train, "test": n_test}
    if min(sizes.values()) < 1:
        raise ValueError(f"energy.data.split {list(split)}: {n_rows} rows give {sizes}: every split needs rows")
    return n_train, n_rows - n_test, n_rows


def fit_scaler(values: np.ndarray, train_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the training rows only (sklearn StandardScaler)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(values[:train_end])
    return scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)


def window_ranges(borders: tuple[int, int, int], seq_len: int) -> dict[str, tuple[int, int]]:
    """For each split: (first target row, end row). Val/test inputs reach back seq_len rows."""
    train_end, val_end, test_end = borders
    return {"train": (seq_len, train_end), "val": (train_end, val_end), "test": (val_end, test_end)}


def count_windows(first_target: int, end: int, horizon: int) -> int:
    return max(end - first_target - horizon + 1, 0)


def prepare(stamps, values: np.ndarray, columns, split, freq_seconds: int, out_dir: Path) -> dict:
    """Write series.npz (standardised values, timestamps, borders) and scaler.json; return a summary."""
    borders = split_borders(len(values), split, freq_seconds)
    values = values[: borders[-1]]  # rows after the test border are never used (ETT: last 3,020 h)
    mean, scale = fit_scaler(values, borders[0])
    np.savez(
        out_dir / "series.npz",
        values=((values - mean) / scale).astype(np.float32),
        timestamps=stamps[: borders[-1]].asi8,
        borders=np.asarray(borders),
    )
    scaler = {
        "columns": list(columns),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "fitted_on_rows": [0, borders[0]],
    }
    (out_dir / "scaler.json").write_text(json.dumps(scaler, indent=2) + "\n")
    starts = (0, *borders[:-1])
    return {
        "rows": {name: int(end - start) for name, start, end in zip(SPLITS, starts, borders)},
        "borders": list(map(int, borders)),
        "first": {name: str(stamps[start]) for name, start in zip(SPLITS, starts)},
        "channels": list(columns),
    }


class Windows(Dataset):
    """(history [seq_len, C], target [horizon, C]) pairs sliding one row at a time; views, no copies."""

    def __init__(self, series: torch.Tensor, first_target: int, end: int, seq_len: int, horizon: int):
        if first_target < seq_len:
            raise ValueError(f"first target row {first_target} leaves no room for seq_len {seq_len}")
        self.series, self.seq_len, self.horizon = series, seq_len, horizon
        self.first_input = first_target - seq_len
        self.n = count_windows(first_target, end, horizon)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        s = self.first_input + i
        return self.series[s : s + self.seq_len], self.series[s + self.seq_len : s + self.seq_len + self.horizon]


def load_prepared(prepared_dir: Path) -> tuple[torch.Tensor, tuple[int, int, int], np.ndarray, dict]:
    with np.load(prepared_dir / "series.npz") as npz:
        series = torch.from_numpy(npz["values"])
        borders = tuple(int(b) for b in npz["borders"])
        stamps = npz["timestamps"]
    scaler = json.loads((prepared_dir / "scaler.json").read_text())
    return series, borders, stamps, scaler


class EnergyData(SplitLoaders):
    """The prepared series cut into (seq_len, horizon) windows per split, and their dataloaders.

    A plain class, not a LightningDataModule: trainer.fit takes its loaders (components.steps.fit_data), and
    evaluate and register, which only read the windows, start without importing Lightning (~4 s).
    """

    def __init__(self, prepared_dir: Path, seq_len: int, horizon: int, batch_size: int, num_workers: int = 0):
        self.series, self.borders, self.timestamps, self.scaler = load_prepared(prepared_dir)
        self.seq_len, self.horizon = seq_len, horizon
        self.batch_size, self.num_workers = batch_size, num_workers
        self.n_channels = self.series.shape[1]
        ranges = window_ranges(self.borders, seq_len)
        self.windows = {name: Windows(self.series, *ranges[name], seq_len, horizon) for name in SPLITS}
        for name, ds in self.windows.items():
            if len(ds) == 0:
                raise ValueError(f"{prepared_dir}: the {name} split has no window of {seq_len}+{horizon} rows")

    def loader(self, split: str, train: bool) -> DataLoader:
        # every window of val/test is evaluated: no dropped last batch
        return DataLoader(
            self.windows[split],
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=False,
            **loader_options(self.num_workers),
        )
