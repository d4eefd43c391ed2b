"""The ETT protocol on the real ETTh1: split sizes, train-only scaler, every window, real pull."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components import stages
from components.config import load_config
from components.project import Paths
from pipelines.energy.data import EnergyData, count_windows, prepare, window_ranges
from pipelines.energy.project import ENERGY
from pipelines.energy.schema import ETT_HOURLY
from pipelines.energy.sources import read_series

HORIZONS = (96, 192, 336, 720)


@pytest.fixture(scope="module")
def prepared(etth1, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    stamps, values = read_series(etth1, ETT_HOURLY)
    summary = prepare(stamps, values, ETT_HOURLY.value_columns, "ett", ETT_HOURLY.freq_seconds, out)
    return out, summary, values


def test_standard_borders(prepared):
    _, summary, _ = prepared
    assert summary["rows"] == {"train": 8640, "val": 2880, "test": 2880}
    assert summary["first"] == {
        "train": "2016-07-01 00:00:00",
        "val": "2017-06-26 00:00:00",
        "test": "2017-10-24 00:00:00",
    }


def test_scaler_fitted_on_train_rows_only(prepared):
    out, _, values = prepared
    scaler = json.loads((out / "scaler.json").read_text())
    np.testing.assert_allclose(scaler["mean"], values[:8640].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scaler["scale"], values[:8640].std(axis=0), rtol=1e-5)
    # the whole file's statistics differ: fitting on them would leak the test period
    assert not np.allclose(scaler["mean"], values[:14400].mean(axis=0), rtol=1e-3)
    with np.load(out / "series.npz") as npz:
        standardised = npz["values"]
    assert standardised.shape == (14400, 7)  # rows after the test border are never used
    np.testing.assert_allclose(standardised[:8640].mean(axis=0), 0, atol=1e-4)


@pytest.mark.parametrize("horizon", HORIZONS)
def test_every_window_no_drop(prepared, horizon):
    out, _, _ = prepared
    seq_len = 336
    dm = EnergyData(out, seq_len, horizon, batch_size=128)
    expected = {"train": 8640 - seq_len - horizon + 1, "val": 2880 - horizon + 1, "test": 2880 - horizon + 1}
    assert {s: len(dm.windows[s]) for s in expected} == expected
    ranges = window_ranges(dm.borders, seq_len)
    assert {s: count_windows(*ranges[s], horizon) for s in expected} == expected
    # the test loader yields every window, the last partial batch included
    assert sum(len(x) for x, _ in dm.test_dataloader()) == expected["test"]
    # first test target is the first test row; the last target ends on the test border
    x0, y0 = dm.windows["test"][0]
    assert torch_equal(y0[0], dm.series[11520]) and torch_equal(x0[-1], dm.series[11519])
    _, y_last = dm.windows["test"][expected["test"] - 1]
    assert torch_equal(y_last[-1], dm.series[14399])


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


@pytest.fixture
def loopback_mirror(shared_data, loopback):
    """The real ETT files served over HTTP from 127.0.0.1, as a mirror of ETDataset."""
    return loopback(shared_data / "energy")


def test_pull_and_validate_real_ett_from_loopback(loopback_mirror, repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    cfg = load_config(
        "energy", ENERGY.section, repo_root / "params.yaml", "full", [f"energy.data.ett_mirror={loopback_mirror}"]
    )
    paths = Paths.of("energy", tmp_path / "data")
    stages.pull(ENERGY, cfg, paths)
    assert (paths.raw / "ETTh1.csv").stat().st_size == 2_589_657
    stages.validate(ENERGY, cfg, paths)
    report = json.loads((paths.validation / "validation.json").read_text())
    assert report["success"] is True
    summary = stages.prepare(ENERGY, cfg, paths)
    assert summary["windows"] == {"train": 8640 - 336 - 96 + 1, "val": 2785, "test": 2785}


def test_wrong_checksum_fails_pull_and_leaves_no_raw(loopback_mirror, repo_root, tmp_path):
    bad = "sha256:" + "0" * 64
    cfg = load_config(
        "energy", ENERGY.section, repo_root / "params.yaml", "full", [f"energy.data.ett_mirror={loopback_mirror}"]
    )
    cfg.project.data.checksums["ETTh1.csv"] = bad
    paths = Paths.of("energy", tmp_path / "data")
    with pytest.raises(Exception, match="ETTh1.csv"):
        stages.pull(ENERGY, cfg, paths)
    assert not paths.raw.exists()
    assert not any(p.name.startswith(".raw") for p in paths.root.iterdir())


def test_demo_generator_writes_the_ett_format(tmp_path):
    from pipelines.energy.sources import write_demo

    path = write_demo(tmp_path / "demo.csv", rows=500, seed=1)
    table = pd.read_csv(path)
    assert list(table.columns) == ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert table["date"].iloc[1] == "2016-07-01 01:00:00"
    # daily seasonality is present: the lag-24 autocorrelation of a load is strong
    load = table["HUFL"].to_numpy()
    assert np.corrcoef(load[:-24], load[24:])[0, 1] > 0.5


# ---- the benchmark's report table (benchmarks/energy.py; the benchmark itself takes hours) -----------


@pytest.fixture(scope="module")
def bench(repo_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_energy", repo_root / "benchmarks" / "energy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake(dataset: str | None, model: str, mse: float) -> list[dict]:
    rows = []
    for horizon in HORIZONS:
        row = {"model": model, "horizon": horizon, "seed": 0, "test_mse": mse, "test_mae": mse / 2}
        row.update(train_seconds=10.0, threads=2, seasonal_naive_mse=1.5)
        if dataset is not None:
            row["dataset"] = dataset
        rows.append(row)
    return rows


def test_benchmark_table_names_its_dataset_and_compares_like_with_like(bench):
    results = _fake("ETTh2", "patchtst", 0.111) + _fake("ETTh1", "patchtst", 0.999) + _fake(None, "dlinear", 0.888)
    text = bench.table(results, "ETTh2", ["patchtst"])
    assert text.startswith("ETTh2, every test window") and "ETTh1" not in text
    assert "| patchtst (measured) | 1 | 0.111 / 0.056 |" in text
    assert "0.999" not in text and "0.888" not in text  # ETTh1 runs (and unlabelled, older ones) left out
    assert "| PatchTST/64 (published, drop_last) | - | 0.274 / - | 0.341 / - | 0.329 / - | 0.379 / - | |" in text
    assert "0.370" not in text and "DLinear (published" not in text  # ETTh1's published rows stay with ETTh1

    etth1 = bench.table(results, "ETTh1", ["patchtst", "dlinear"])
    assert etth1.startswith("ETTh1, every test window")
    assert "0.999" in etth1 and "0.888" in etth1 and "0.111" not in etth1  # rows without a dataset are ETTh1's
    assert "| PatchTST/64 (published, drop_last) | - | 0.370 / 0.400 |" in etth1 and "0.274" not in etth1


def test_benchmark_table_without_a_published_row_says_so(bench):
    text = bench.table(_fake("OPSD", "dlinear", 0.5), "OPSD", ["dlinear"])
    assert text.startswith("OPSD, every test window") and "published, drop_last" not in text
    assert "No published row for OPSD" in text
    assert set(bench.PUBLISHED) == {"ETTh1", "ETTh2", "ETTm1", "ETTm2"}  # BENCHMARKS.md
