"""What a project plug-in provides, and where each stage keeps its files.

A project is data + model + metrics; everything else (tracking, training loop, tuning, evaluation
files, registry, gate) is written once in components/. The stage functions in
components/stages.py call these hooks and nothing else of the project.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # heavy imports stay out of the CLI's start-up path
    import lightning.pytorch as pl
    import optuna

    from components.config import Config
    from components.validate import Check


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # as logged, e.g. "test/mse"
    direction: str  # "minimize" | "maximize"

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """True when `a` beats `b` by more than `margin`."""
        return a < b - margin if self.direction == "minimize" else a > b + margin


@dataclasses.dataclass
class Evaluation:
    metrics: dict[str, float]  # flat, e.g. {"test/mse": 0.41, "baseline/test/mse": 0.9}
    tables: dict[str, Any]  # name -> pandas DataFrame, written as CSV for `dvc plots`
    figures: dict[str, Any]  # name -> matplotlib Figure, logged to MLflow and saved as PNG


@dataclasses.dataclass(frozen=True)
class Paths:
    """data/<project>/... : one folder per stage output, all DVC-tracked."""

    root: Path

    @classmethod
    def of(cls, project: str, data_dir: Path = Path("data")) -> Paths:
        return cls(Path(data_dir) / project)

    raw = property(lambda self: self.root / "raw")  # as downloaded / generated
    validated = property(lambda self: self.root / "validated")  # files that passed validation
    validation = property(lambda self: self.root / "validation")  # report.json, report.md
    prepared = property(lambda self: self.root / "prepared")  # splits, scalers, arrays
    tuned = property(lambda self: self.root / "tuned")  # best_params.yaml (+ journal)
    model = property(lambda self: self.root / "model")  # weights, config, checkpoint, run id
    evaluation = property(lambda self: self.root / "evaluation")  # metrics.json, plots/, figures/
    registry = property(lambda self: self.root / "registry")  # decision.json of the last register

    @property
    def best_params(self) -> Path:
        return self.tuned / "best_params.yaml"

    @property
    def data_version_file(self) -> Path:
        return self.validated / "DATA_VERSION"


class Project(Protocol):
    name: str  # the MLflow experiment and registered model name
    section: type  # dataclass of its params.yaml section
    primary_metric: Metric  # what tuning, early stopping and the promotion gate optimise
    description: str  # one paragraph for the model card
    limitations: str  # for the model card

    def pull(self, cfg: Config, raw_dir: Path) -> list[Path]: ...

    def checks(self, cfg: Config, raw_dir: Path) -> list[Check]: ...

    def prepare(self, cfg: Config, validated_dir: Path, prepared_dir: Path) -> dict: ...

    def datamodule(self, cfg: Config, prepared_dir: Path) -> pl.LightningDataModule: ...

    def build_module(self, cfg: Config, datamodule: pl.LightningDataModule, hparams: dict) -> pl.LightningModule: ...

    def search_space(self, cfg: Config, trial: optuna.Trial) -> dict: ...

    def evaluate(self, cfg: Config, module: pl.LightningModule, datamodule: pl.LightningDataModule) -> Evaluation: ...

    def export(self, cfg: Config, module: pl.LightningModule, prepared_dir: Path, model_dir: Path) -> None: ...

    def load_module(self, cfg: Config, model_dir: Path) -> pl.LightningModule: ...

    def pyfunc(self, model_dir: Path) -> tuple[Any, dict[str, str], Any]: ...

    def score(self, python_model: Any, cfg: Config, prepared_dir: Path) -> float: ...
