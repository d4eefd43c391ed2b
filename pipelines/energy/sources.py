"""Energy data sources, each written to data/energy/raw/ in its real on-disk format.

- ett:  ETTh1/ETTh2/ETTm1/ETTm2 CSVs of the ETDataset repository (Zhou et al. 2021), fetched from
        its raw-file URL or any mirror (a folder or a loopback URL) with checksum verification.
- opsd: Open Power System Data's daily German load, wind and solar (jenfly/opsd's
        opsd_germany_daily.csv); the rows before `opsd_start` lack wind/solar and are cut at pull.
- demo: a generator writing the ETT CSV format (date + 7 channels, hourly) with daily and weekly
        seasonality, trend and noise, so the offline profile runs the real reader and checks.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.energy.schema import ETT_HOURLY, OPSD_DAILY, CsvSchema, ett_schema

ETT_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
OPSD_FILE = "opsd_germany_daily.csv"
DEMO_FILE = "demo.csv"  # same columns and format as ETTh1.csv


def raw_file(data) -> tuple[str, CsvSchema]:
    """The file name the pull stage writes for this data config, and its schema."""
    if data.source == "ett":
        if data.dataset not in ETT_DATASETS:
            raise ValueError(f"energy.data.dataset: {data.dataset!r} is not one of {ETT_DATASETS}")
        return f"{data.dataset}.csv", ett_schema(data.dataset)
    if data.source == "opsd":
        return OPSD_FILE, OPSD_DAILY
    if data.source == "demo":
        return DEMO_FILE, ETT_HOURLY
    raise ValueError(f"energy.data.source: {data.source!r} is not one of ett, opsd, demo")


def pull(data, seed: int, out_dir: Path) -> Path:
    from components.fetch import fetch, resolve

    name, _ = raw_file(data)
    dest = out_dir / name
    key = {"ett": "ett_mirror", "opsd": "opsd_url"}.get(data.source)
    if key and not str(getattr(data, key) or "").strip():  # "" would read the working directory
        raise ValueError(f"energy.data.{key} is empty: set energy.data.{key} to the URL or folder holding {name}")
    if data.source == "ett":
        fetch(resolve(data.ett_mirror, name), dest, checksum=data.checksums.get(name))
    elif data.source == "opsd":
        with tempfile.TemporaryDirectory() as tmp:
            full = fetch(data.opsd_url, Path(tmp) / name, checksum=data.checksums.get(name))
            cut_opsd(full, dest, data.opsd_start)
    else:
        write_demo(dest, rows=data.demo_rows, seed=seed)
    return dest


def cut_opsd(source: Path, dest: Path, start: str) -> None:
    """Keep the rows from `start` on and the columns of OPSD_DAILY, cell text unchanged."""
    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    missing = [c for c in OPSD_DAILY.all_columns if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(table.columns)}")
    table = table.loc[table[OPSD_DAILY.time_column] >= start, list(OPSD_DAILY.all_columns)]
    table.to_csv(dest, index=False)


def write_demo(path: Path, rows: int, seed: int) -> Path:
    """Synthetic hourly ETT-format data: 6 loads + oil temperature, seasonal, trending, noisy."""
    rng = np.random.default_rng(seed)
    hours = np.arange(rows)
    day, week = 2 * np.pi * hours / 24, 2 * np.pi * hours / (24 * 7)
    trend = hours / rows  # slow drift over the whole file, as transformer loads do
    channels = []
    for _i in range(6):  # HUFL, HULL, MUFL, MULL, LUFL, LULL
        level, amp = rng.uniform(1, 10), rng.uniform(0.5, 3)
        phase = rng.uniform(0, 2 * np.pi)
        noise = np.zeros(rows)  # AR(1) noise: errors persist for hours
        eps = rng.normal(0, 0.3, rows)
        for t in range(1, rows):
            noise[t] = 0.8 * noise[t - 1] + eps[t]
        channels.append(level + amp * np.sin(day + phase) + 0.5 * amp * np.sin(week + phase) + 2 * trend + noise)
    load = np.mean(channels, axis=0)
    oil = 15 + 8 * np.sin(2 * np.pi * hours / (24 * 365)) + 0.8 * load + rng.normal(0, 0.5, rows)
    values = np.column_stack([*channels, oil])
    stamps = pd.date_range("2016-07-01 00:00:00", periods=rows, freq="h")
    frame = pd.DataFrame(values, columns=list(ETT_HOURLY.value_columns))
    frame.insert(0, ETT_HOURLY.time_column, stamps.strftime(ETT_HOURLY.time_format))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6f")
    path.write_text(buffer.getvalue())
    return path


def read_series(path: Path, schema: CsvSchema) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """A validated CSV -> (timestamps, float32 values [rows, channels] in schema column order)."""
    table = pd.read_csv(path)
    stamps = pd.DatetimeIndex(pd.to_datetime(table[schema.time_column], format=schema.time_format))
    values = table[list(schema.value_columns)].to_numpy(dtype=np.float32)
    return stamps, values
