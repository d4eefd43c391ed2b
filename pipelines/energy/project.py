"""The energy plug-in: multi-horizon multivariate forecasting on ETT / OPSD / demo data.

Ties sources, checks, windows, networks and metrics to the stage protocol of components/project.py.
Its params.yaml section is described by `EnergySection` (pipelines/energy/config.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from components.project import Metric, MonitoringModule, Objective, Paths, PyfuncSpec
from pipelines.energy import sources
from pipelines.energy.config import EnergySection

# ---- the plug-in ----------------------------------------------------------------------------

OPTIMISER_KEYS = ("lr", "weight_decay")  # tuned keys that belong to the optimiser, not the network


class Energy(MonitoringModule):
    name = "energy"
    section = EnergySection
    # select and tune on the validation MSE (the training loss), promote on the test MSE, re-scored
    objective = Objective(select=Metric("val/loss", "minimize"), gate=Metric("test/mse", "minimize"))
    monitoring_module = "pipelines.energy.monitoring"  # monitor_spec, monitor_features, reference_requests, replay
    replay_streams = ("unshifted", "station", "season")
    description = (
        "Multivariate-in, multivariate-out forecasting. Split by time (ETT: the standard 12/4/4-month "
        "borders); StandardScaler fitted on training rows only; every test window evaluated (no dropped "
        "last batch); MSE/MAE on the standardised scale. The promotion gate re-scores challenger and "
        "champion on the current data version's test windows."
    )
    limitations = (
        "Trained on one series; forecasts degrade when the load regime shifts (season, station, unit "
        "change). Point forecasts only, no intervals. The demo profile's model is trained on synthetic "
        "data and is not a forecaster of any real transformer."
    )

    def pull(self, cfg, out: Path) -> list[Path]:
        return [sources.pull(cfg.project.data, cfg.seed, out)]

    def checks(self, cfg, paths: Paths):
        from pipelines.energy.checks import energy_checks

        name, schema = sources.raw_file(cfg.project.data)
        return energy_checks(paths.raw / name, schema, split=cfg.project.data.split)

    def prepare(self, cfg, paths: Paths, out: Path) -> dict:
        from pipelines.energy.data import count_windows, prepare, window_ranges

        data, window = cfg.project.data, cfg.project.window
        name, schema = sources.raw_file(data)
        stamps, values = sources.read_series(paths.raw / name, schema)
        summary = prepare(stamps, values, schema.value_columns, data.split, schema.freq_seconds, out)
        meta = {"time_column": schema.time_column, "freq_seconds": schema.freq_seconds, "file": name}
        (out / "meta.json").write_text(json.dumps(meta) + "\n")
        ranges = window_ranges(tuple(summary["borders"]), window.seq_len)
        summary["windows"] = {s: count_windows(*ranges[s], window.horizon) for s in ranges}
        empty = [s for s, n in summary["windows"].items() if n < 1]
        if empty:  # fail here, naming the keys, not at train with an empty DataLoader
            rows = {s: ranges[s][1] - ranges[s][0] for s in empty}
            raise ValueError(
                f"energy.window: seq_len={window.seq_len} + horizon={window.horizon} leaves no window in the "
                f"{', '.join(empty)} split(s) ({rows} target rows); shorten energy.window.horizon or seq_len"
            )
        return summary

    def datamodule(self, cfg, paths: Paths):
        from pipelines.energy.data import EnergyData

        w, t = cfg.project.window, cfg.project.train
        return EnergyData(paths.prepared, w.seq_len, w.horizon, t.batch_size, t.num_workers)

    def model_hparams(self, cfg, tuned: dict) -> dict:
        from pipelines.energy.models import MODEL_HPARAMS

        model = cfg.project.model
        merged = {**dataclasses.asdict(model), **{k: v for k, v in tuned.items() if k not in OPTIMISER_KEYS}}
        return {k: merged[k] for k in MODEL_HPARAMS[model.name] if k in merged}

    def build_module(self, cfg, datamodule, hparams: dict):
        from pipelines.energy.module import Forecaster

        section = cfg.project
        return Forecaster(
            model=section.model.name,
            model_hparams=self.model_hparams(cfg, hparams),
            seq_len=section.window.seq_len,
            horizon=section.window.horizon,
            n_channels=datamodule.n_channels,
            lr=hparams.get("lr", section.train.lr),
            weight_decay=hparams.get("weight_decay", section.train.weight_decay),
        )

    def search_space(self, cfg, trial) -> dict:
        """Log-uniform learning rate and the capacity/regularisation knobs of the chosen network."""
        params = {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}
        if cfg.project.model.name == "patchtst":
            params["d_model"] = trial.suggest_categorical("d_model", [16, 32, 64])
            params["n_layers"] = trial.suggest_int("n_layers", 1, 3)
            params["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
            params["patch_len"] = trial.suggest_categorical("patch_len", [8, 16])
        elif cfg.project.model.name == "dlinear":
            params["kernel_size"] = trial.suggest_categorical("kernel_size", [13, 25, 49])
        return params

    def export(self, cfg, module, paths: Paths, out: Path) -> None:
        """What the registered model needs: config, weights (state_dict only), the train-row scaler."""
        import torch

        meta = json.loads((paths.prepared / "meta.json").read_text())
        scaler = json.loads((paths.prepared / "scaler.json").read_text())
        hp = module.hparams
        config = {
            "model": hp["model"],
            "hparams": hp["model_hparams"],
            "seq_len": hp["seq_len"],
            "horizon": hp["horizon"],
            "columns": scaler["columns"],
            "time_column": meta["time_column"],
            "freq_seconds": meta["freq_seconds"],
            # the served model refuses values outside the plausible ranges the training data was checked against
            "ranges": {c: list(r) for c, r in sources.raw_file(cfg.project.data)[1].ranges.items()},
            "lr": hp["lr"],
            "weight_decay": hp["weight_decay"],
        }
        (out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
        torch.save(module.net.state_dict(), out / "weights.pt")
        shutil.copy(paths.prepared / "scaler.json", out / "scaler.json")

    def load_module(self, cfg, paths: Paths):
        from pipelines.energy.pyfunc import EnergyForecaster

        return EnergyForecaster.from_dir(paths.model).net

    def evaluate(self, cfg, net, datamodule, paths: Paths):
        from pipelines.energy.evaluate import evaluate

        columns = datamodule.scaler["columns"]
        target = columns.index(cfg.project.target) if cfg.project.target in columns else len(columns) - 1
        return evaluate(net, datamodule, self._freq(cfg), target)

    def _freq(self, cfg) -> int:
        return sources.raw_file(cfg.project.data)[1].freq_seconds

    def pyfunc(self, cfg, paths: Paths) -> PyfuncSpec:
        from pipelines.energy.pyfunc import EnergyForecaster, artifact_paths

        loaded = EnergyForecaster.from_dir(paths.model)
        example = self._input_example(loaded, paths)
        return PyfuncSpec(
            python_model=str(Path(__file__).with_name("model_code.py")),  # models-from-code: no pickle
            artifacts=artifact_paths(paths.model),
            input_example=example,
            output_example=loaded.predict(None, example),
            requirements=("torch", "numpy", "pandas"),
        )

    def _input_example(self, forecaster, paths: Paths):
        """The last seq_len rows of the validation split, in original units."""
        import numpy as np
        import pandas as pd

        from pipelines.energy.data import load_prepared

        series, borders, stamps, scaler = load_prepared(paths.prepared)
        c = forecaster.config
        rows = slice(borders[1] - c["seq_len"], borders[1])
        values = series[rows].numpy() * np.asarray(scaler["scale"]) + np.asarray(scaler["mean"])
        frame = pd.DataFrame(values.astype(np.float64), columns=c["columns"])
        frame.insert(0, c["time_column"], pd.to_datetime(stamps[rows]))
        return frame

    def score(self, python_model, cfg, paths: Paths) -> float:
        from pipelines.energy.evaluate import score

        return score(python_model, self.datamodule(cfg, paths))


ENERGY = Energy()
