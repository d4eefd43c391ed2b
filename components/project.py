"""The contract between the stages (written once, components/) and a project plug-in (pipelines/<name>/).

A project is data + model + objective + metrics; everything else (tracking, training loop, tuning,
evaluation files, registry, gate, serving, monitoring) is components/. The contract has two layers:

- the **core** (`Project`): every project implements all of it; pull -> checks -> prepare ->
  datamodule -> build_module -> evaluate -> export / load_module -> pyfunc -> score;
- **capabilities**, each a small set of hooks a project may add (`CAPABILITIES`, the one place they are
  declared): `tunable` (an Optuna search space), `monitorable` (features the drift monitor compares),
  `replayable` (synthetic shifted streams for the drift benchmark), `app` (an interactive front end).
  A stage or command that needs a capability the project lacks is skipped with one line
  (`Unsupported`), never an AttributeError.

Hooks read their inputs through the project's `Paths` (never rebuilding folder names) and write
into the `out` folder the stage gives them, which the stage renames into place only on success.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # heavy imports stay out of the CLI's start-up path
    import lightning.pytorch as pl
    import numpy as np
    import optuna
    import pandas as pd
    from torch import nn

    from components.config import Config
    from components.monitor import FeatureSpec
    from components.validate import Check


# ---- what is optimised ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # as logged, e.g. "val/loss", "test/macro_f1"
    direction: Literal["minimize", "maximize"]

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"metric {self.name}: direction {self.direction!r} is not minimize or maximize")

    @property
    def mode(self) -> str:
        """Lightning's spelling of the direction (EarlyStopping, ModelCheckpoint)."""
        return "min" if self.direction == "minimize" else "max"

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """True when `a` beats `b` by more than `margin`."""
        return a < b - margin if self.direction == "minimize" else a > b + margin

    def __str__(self) -> str:
        return f"{self.name} ({self.direction})"


@dataclasses.dataclass(frozen=True)
class Objective:
    """The metric each selection step follows; they may differ (select on val/macro_f1, gate on test/macro_f1).

    `select` is logged by the LightningModule at every validation epoch: early stopping and the best
    checkpoint follow it. `tune` (default: `select`) is what the Optuna study optimises, read from the
    same epoch logs. `gate` is what the promotion gate compares: with `gate_source="rescore"` the gate
    re-scores challenger and champion with `Project.score` on the current data (comparable, costs two
    evaluations); with `"logged"` it reads the value the evaluate stage logged for each version (cheap,
    but the two may have been measured on different data versions: the decision says so).
    """

    select: Metric
    gate: Metric
    tune: Metric | None = None
    gate_source: Literal["rescore", "logged"] = "rescore"

    def __post_init__(self) -> None:
        if self.gate_source not in ("rescore", "logged"):
            raise ValueError(f"objective.gate_source {self.gate_source!r} is not rescore or logged")

    @property
    def study(self) -> Metric:
        return self.tune or self.select


# ---- what a stage hands over -------------------------------------------------------------------


@dataclasses.dataclass
class Evaluation:
    metrics: dict[str, float]  # flat, e.g. {"test/mse": 0.41, "baseline/test/mse": 0.9}
    tables: dict[str, Any]  # name -> pandas DataFrame, written as CSV for `dvc plots`
    figures: dict[str, Any]  # name -> matplotlib Figure, logged to MLflow and saved as PNG
    # file name -> text (e.g. a folding trajectory as multi-model PDB), saved beside the figures and logged
    files: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PyfuncSpec:
    """What `register` logs as the MLflow pyfunc model (models-from-code: no pickled classes).

    The request is always a table (MLflow's `dataframe_split` / `dataframe_records`); a payload that is
    not naturally tabular is one row per item with typed columns (text, a sequence, a file as base64, a
    generation request): components/payload.py documents the conventions and checks them.
    """

    python_model: str  # path of a models-from-code file calling mlflow.models.set_model(...)
    artifacts: dict[str, str]  # name -> local file, copied into the logged model
    input_example: Any  # a pandas DataFrame the model accepts (its signature is inferred from it)
    output_example: Any  # what the model returns for input_example
    # the third-party distributions the served model imports (register pins each to its installed version);
    # empty: MLflow infers them, by loading the model in a subprocess (seconds) and keeping only packages
    # not required by others, which reduces ours to `scifolio`, a package no index serves
    requirements: tuple[str, ...] = ()
    # output columns the inference log keeps as a summary only (bytes, sha256), never whole and never as a
    # blob: generated images are the product, not evidence; the monitor reads the statistics columns beside them
    log_omit: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Paths:
    """data/<project>/... : one folder per stage output, all DVC-tracked."""

    root: Path

    @classmethod
    def of(cls, project: str, data_dir: Path = Path("data")) -> Paths:
        return cls(Path(data_dir) / project)

    raw = property(lambda self: self.root / "raw")  # as downloaded / generated
    validated = property(lambda self: self.root / "validated")  # manifest of raw files that passed validation
    validation = property(lambda self: self.root / "validation")  # report.json, report.md
    prepared = property(lambda self: self.root / "prepared")  # splits, scalers, arrays
    tuned = property(lambda self: self.root / "tuned")  # best_params.yaml (+ journal)
    model = property(lambda self: self.root / "model")  # weights, config, checkpoint, run id
    evaluation = property(lambda self: self.root / "evaluation")  # metrics.json, plots/, figures/
    registry = property(lambda self: self.root / "registry")  # decision.json of the last register
    monitor = property(lambda self: self.root / "monitor")  # decision.json of the last monitor check
    ablation = property(lambda self: self.root / "ablation")  # the ablation study: table, runs, metrics, plot

    @property
    def best_params(self) -> Path:
        return self.tuned / "best_params.yaml"

    @property
    def data_version_file(self) -> Path:
        return self.validated / "DATA_VERSION"

    def data(self, name: str) -> Path:
        """A validated input file or folder, e.g. paths.data("ETTh1.csv"): the raw copy DVC cached.

        The validate stage writes a manifest, not a second copy (components/stages.py): a file is read
        from raw/ after the manifest has confirmed its hash.
        """
        return self.raw / name


# ---- the core every project implements ---------------------------------------------------------


class Project(Protocol):
    name: str  # the project; the MLflow experiment and registered model are cfg.model_name
    section: type  # dataclass of its params.yaml section (pipelines/<name>/config.py)
    objective: Objective  # what early stopping, the best checkpoint, tuning and the gate follow
    description: str  # one paragraph for the model card and the registered model's description
    limitations: str  # for the model card

    def pull(self, cfg: Config, out: Path) -> list[Path]:
        """Fetch or generate the raw files into `out`; return them."""

    def checks(self, cfg: Config, paths: Paths) -> list[Check]:
        """The Great Expectations checks of paths.raw (components/validate.py runs them)."""

    def prepare(self, cfg: Config, paths: Paths, out: Path) -> dict:
        """Splits, scalers, vocabularies (fitted on train only) from the validated data into `out`."""

    def datamodule(self, cfg: Config, paths: Paths) -> pl.LightningDataModule:
        """The splits and their loaders: a LightningDataModule, or a plain `SplitLoaders` (steps.fit_data)."""

    def build_module(self, cfg: Config, datamodule: pl.LightningDataModule, hparams: dict) -> pl.LightningModule:
        """The LightningModule to train; `hparams` are the tuned values (empty: params.yaml's)."""

    def evaluate(self, cfg: Config, net: nn.Module, datamodule: pl.LightningDataModule, paths: Paths) -> Evaluation:
        """Test metrics, tables and figures of the trained network (the plain nn.Module, eval mode)."""

    def export(self, cfg: Config, module: pl.LightningModule, paths: Paths, out: Path) -> None:
        """Write what the registered model needs (weights as a state_dict, config, scalers) into `out`."""

    def load_module(self, cfg: Config, paths: Paths) -> nn.Module:
        """The exported network from paths.model, in eval mode."""

    def pyfunc(self, cfg: Config, paths: Paths) -> PyfuncSpec: ...

    def score(self, python_model: Any, cfg: Config, paths: Paths) -> float:
        """objective.gate of `python_model` (a registered version, unwrapped) on the current test data."""


# ---- optional capabilities -----------------------------------------------------------------------


class Tunable(Protocol):
    def search_space(self, cfg: Config, trial: optuna.Trial) -> dict: ...


class Monitorable(Protocol):
    def monitor_spec(self, python_model: Any) -> FeatureSpec: ...

    def monitor_features(self, python_model: Any, request: pd.DataFrame, answer: Any) -> pd.DataFrame: ...

    def reference_requests(self, cfg: Config, paths: Paths, limit: int) -> Iterable[pd.DataFrame]: ...


class Replayable(Protocol):
    replay_streams: tuple[str, ...]

    def replay_requests(
        self, cfg: Config, paths: Paths, stream: str, n: int, rng: np.random.Generator
    ) -> list[pd.DataFrame]: ...


class HasApp(Protocol):
    def app(self, cfg: Config, host: str, port: int) -> None: ...


CORE = (
    "pull",
    "checks",
    "prepare",
    "datamodule",
    "build_module",
    "evaluate",
    "export",
    "load_module",
    "pyfunc",
    "score",
)
CORE_ATTRIBUTES = ("name", "section", "objective", "description", "limitations")
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "tunable": ("search_space",),
    "monitorable": ("monitor_spec", "monitor_features", "reference_requests"),
    "replayable": ("replay_streams", "replay_requests"),
    "app": ("app",),
}
NEEDS: dict[str, str] = {  # stage or command -> the capability it needs
    "tune": "tunable",
    "monitor": "monitorable",
    "replay": "replayable",
    "app": "app",
}


class Unsupported(Exception):
    """A stage or command the project does not support: the runner skips it with this one-line message."""


def capabilities(project: Any) -> frozenset[str]:
    """The capabilities `project` implements whole; a half-implemented one is a contract error."""
    found = set()
    for capability, hooks in CAPABILITIES.items():
        present = [h for h in hooks if hasattr(project, h)]
        if len(present) == len(hooks):
            found.add(capability)
        elif present:
            missing = sorted(set(hooks) - set(present))
            raise TypeError(
                f"project {project.name!r}: capability {capability!r} needs {missing} too (it has {present})"
            )
    return frozenset(found)


def check_contract(project: Any) -> frozenset[str]:
    """Raise TypeError naming what a plug-in lacks; return its capabilities."""
    missing = [a for a in (*CORE_ATTRIBUTES, *CORE) if not hasattr(project, a)]
    if missing:
        raise TypeError(
            f"project {getattr(project, 'name', project)!r} lacks {missing} (components/project.py: Project)"
        )
    if not isinstance(project.objective, Objective):
        raise TypeError(f"project {project.name!r}: objective must be a components.project.Objective")
    return capabilities(project)


def require(project: Any, step: str) -> None:
    """Raise Unsupported when `step` needs a capability `project` lacks."""
    capability = NEEDS.get(step)
    if capability and capability not in capabilities(project):
        raise Unsupported(
            f"{project.name} {step}: skipped, the project is not {capability} (no {CAPABILITIES[capability][0]} hook)"
        )


class MonitoringModule:
    """The monitorable + replayable hooks, delegated to one module of the project imported on first use.

    A project sets `monitoring_module = "pipelines.<name>.monitoring"` whose module defines spec(python_model),
    features(python_model, request, answer), reference_requests(cfg, paths, limit) and
    replay_requests(cfg, paths, stream, n, rng); the project also sets `replay_streams` (its names, or ()).
    """

    monitoring_module: str

    def _monitoring(self):
        return importlib.import_module(self.monitoring_module)

    def monitor_spec(self, python_model):
        return self._monitoring().spec(python_model)

    def monitor_features(self, python_model, request, answer):
        return self._monitoring().features(python_model, request, answer)

    def reference_requests(self, cfg, paths: Paths, limit: int):
        return self._monitoring().reference_requests(cfg, paths, limit)

    def replay_requests(self, cfg, paths: Paths, stream: str, n: int, rng):
        return self._monitoring().replay_requests(cfg, paths, stream, n, rng)
