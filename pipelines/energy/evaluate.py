"""Forecast metrics over every window of a split, the seasonal-naive baseline, plots, and the gate's scorer.

MSE/MAE are on the standardised scale (the benchmark convention); MAE/RMSE in original units are
reported beside them, per channel too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from components.project import Evaluation
from pipelines.energy.models import SeasonalNaive


@torch.inference_mode()
def predict(net: torch.nn.Module, dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(forecasts, targets), each [windows, horizon, channels], over every window in order."""
    device = next(net.parameters(), torch.empty(0)).device
    net.eval()
    preds, targets = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False):
        preds.append(net(x.to(device)).float().cpu())
        targets.append(y)
    return torch.cat(preds).numpy(), torch.cat(targets).numpy()


def baseline_period(freq_seconds: int) -> int:
    """Seasonal-naive period: one day of rows for sub-daily data, one week for daily data."""
    return 7 if freq_seconds >= 86400 else 86400 // freq_seconds


def evaluate(net, datamodule, freq_seconds: int, target_channel: int = -1) -> Evaluation:
    dm = datamodule
    mean, scale = np.asarray(dm.scaler["mean"]), np.asarray(dm.scaler["scale"])
    columns = dm.scaler["columns"]
    naive = SeasonalNaive(dm.seq_len, dm.horizon, baseline_period(freq_seconds))
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        pred, true = predict(net, dm.windows[split])
        metrics[f"{split}/mse"] = float(np.mean((pred - true) ** 2))
        metrics[f"{split}/mae"] = float(np.mean(np.abs(pred - true)))
        metrics[f"{split}/windows"] = float(len(pred))
    base, _ = predict(naive, dm.windows["test"])
    metrics["baseline/test/mse"] = float(np.mean((base - true) ** 2))
    metrics["baseline/test/mae"] = float(np.mean(np.abs(base - true)))
    metrics["test/skill_vs_seasonal_naive"] = 1.0 - metrics["test/mse"] / metrics["baseline/test/mse"]
    pred_orig, true_orig = pred * scale + mean, true * scale + mean
    metrics["test/original/mae"] = float(np.mean(np.abs(pred_orig - true_orig)))
    metrics["test/original/rmse"] = float(np.sqrt(np.mean((pred_orig - true_orig) ** 2)))
    for c, name in enumerate(columns):
        metrics[f"test/original/mae_{name}"] = float(np.mean(np.abs(pred_orig[..., c] - true_orig[..., c])))

    lead_time = pd.DataFrame(
        {
            "step": np.arange(1, dm.horizon + 1),
            "mse": ((pred - true) ** 2).mean(axis=(0, 2)),
            "seasonal_naive_mse": ((base - true) ** 2).mean(axis=(0, 2)),
        }
    )
    forecast = forecast_table(dm, pred_orig[0], base[0] * scale + mean, target_channel)
    return Evaluation(
        metrics=metrics,
        tables={"lead_time": lead_time, "forecast": forecast},
        figures={
            "lead_time": lead_time_figure(lead_time),
            "forecast": forecast_figure(forecast, columns[target_channel]),
        },
    )


def forecast_table(dm, pred0: np.ndarray, base0: np.ndarray, channel: int) -> pd.DataFrame:
    """The first test window of one channel, original units: history, actual, forecast, baseline."""
    test = dm.windows["test"]
    x, y = test[0]
    mean, scale = dm.scaler["mean"][channel], dm.scaler["scale"][channel]
    history = x[:, channel].numpy() * scale + mean
    actual = y[:, channel].numpy() * scale + mean
    steps = np.arange(-len(history) + 1, len(actual) + 1)
    nan = np.full(len(history), np.nan)
    return pd.DataFrame(
        {
            "step": steps,
            "actual": np.concatenate([history, actual]),
            "forecast": np.concatenate([nan, pred0[:, channel]]),
            "seasonal_naive": np.concatenate([nan, base0[:, channel]]),
        }
    )


def _axes(figsize=(7, 3.5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def lead_time_figure(table: pd.DataFrame):
    fig, ax = _axes()
    ax.plot(table["step"], table["mse"], label="model")
    ax.plot(table["step"], table["seasonal_naive_mse"], label="seasonal naive", linestyle="--")
    ax.set_xlabel("lead time (steps)")
    ax.set_ylabel("test MSE (standardised)")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def forecast_figure(table: pd.DataFrame, channel: str):
    fig, ax = _axes((9, 3.5))
    ax.plot(table["step"], table["actual"], color="black", linewidth=1, label="actual")
    ax.plot(table["step"], table["forecast"], label="forecast")
    ax.plot(table["step"], table["seasonal_naive"], linestyle="--", label="seasonal naive")
    ax.axvline(0.5, color="grey", linewidth=0.8)
    ax.set_xlabel("step (0 = forecast origin)")
    ax.set_ylabel(channel)
    ax.set_title(f"first test window, {channel}")
    ax.legend()
    return fig


def score(forecaster, datamodule) -> float:
    """Test MSE of a registered model on this data version's test windows (standardised scale).

    The model gets the raw history (original units) and uses its own scaler; its forecast is then
    standardised with the current data's scaler, so models trained on different data versions are
    compared on the same targets and the same scale.
    """
    dm = datamodule
    mean, scale = np.asarray(dm.scaler["mean"], np.float32), np.asarray(dm.scaler["scale"], np.float32)
    loader = DataLoader(dm.windows["test"], batch_size=1024, shuffle=False, drop_last=False)
    total, count = 0.0, 0
    for x, y in loader:
        forecast = forecaster.forecast_array(x.numpy() * scale + mean)
        err = (forecast - mean) / scale - y.numpy()
        total += float((err**2).sum())
        count += err.size
    return total / count
