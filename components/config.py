"""params.yaml -> a typed, validated config.

params.yaml is the single source of truth. Its base sections hold the `full` recipe (real data,
paper-size models); `profiles.<name>` holds what a profile changes (e.g. `demo` shrinks everything
to run offline in minutes). Precedence, lowest first: base sections < profile < CLI `--set`.

Every key is checked against the dataclasses that describe it, so a typo fails at load time with
the dotted key and the closest valid name, instead of being ignored or crashing deep in a stage.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")

# Telemetry off in every entry point; nothing reaches the network unless a real source is configured.
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
}


def quiet_environment() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


class ConfigError(ValueError):
    """A wrong key or value in params.yaml or an override; the message names the dotted key."""


# ---- sections every project shares ---------------------------------------------------------


@dataclasses.dataclass
class TrainConfig:
    batch_size: int = 128  # windows/images per step
    lr: float = 1e-4  # Adam learning rate
    weight_decay: float = 0.0  # Adam L2 penalty
    max_epochs: int = 100  # upper bound; early stopping usually ends sooner
    patience: int = 10  # epochs without val improvement before stopping
    num_workers: int = 0  # DataLoader workers (0: load in the main process)
    precision: str = "auto"  # auto: bf16-mixed on GPU, 32 on CPU
    devices: str = "auto"  # Lightning devices ("auto", "1", "2", ...): DDP when > 1 GPU
    deterministic: bool = True  # deterministic kernels on CPU (GPU runs trade this for speed)


@dataclasses.dataclass
class TuneConfig:
    n_trials: int = 20  # trials per worker (several workers share one study via storage)
    max_epochs: int = 20  # epochs per trial (shorter than a full training run)
    timeout_s: int = 0  # wall-clock cap per worker, 0 = none
    sampler: str = "tpe"  # tpe (Optuna's TPESampler, seeded)
    pruner: str = "median"  # median | hyperband | none
    storage: str = ""  # "" = journal file under data/<project>/tuned; or an RDB URL (postgresql://...)
    study_name: str = ""  # "" = <project>-<data version>: workers with the same data join one study


@dataclasses.dataclass
class RegisterConfig:
    margin: float = 0.0  # the challenger must beat the champion's primary metric by more than this


@dataclasses.dataclass
class MonitorConfig:
    window: int = 500  # most recent answered items of the inference log compared with the reference
    min_items: int = 30  # fewer items than this: no drift decision yet ("insufficient data")
    column_test: str = (
        "ks"  # ks: p-value below alpha / n columns (Bonferroni) | wasserstein: distance in reference stds
    )
    alpha: float = 0.05  # ks: family-wise false-alarm rate over the column tests
    effect_size: float = 1.0  # wasserstein: a column drifts when it moved more than this many reference stds
    drift_share: float = 0.0  # drift when more than this share of tested columns drift (0: any column)
    embedding_quantile: float = (
        0.99  # embeddings drift when the domain classifier's AUROC beats this quantile of chance
    )
    reference_items: int = 2000  # cap on reference rows (sampled evenly) kept with a model version


@dataclasses.dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI, when set, wins over this


# ---- loading and merging -------------------------------------------------------------------


def read_params(path: Path = PARAMS_FILE) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root or pass --params)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def deep_merge(base: dict, update: dict, where: str = "") -> dict:
    """Return base updated by `update`. Top-level keys must exist; deeper keys are checked
    against the section's dataclass by build(), where free-form mappings may gain keys."""
    merged = dict(base)
    for key, value in update.items():
        dotted = f"{where}.{key}" if where else key
        if not where and key not in base:
            raise ConfigError(f"{dotted}: unknown key{_did_you_mean(key, base)}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = deep_merge(base[key], value, dotted)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict:
    """'energy.model.d_model=32' -> {'energy': {'model': {'d_model': 32}}} (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key=value, e.g. energy.train.lr=0.001")
    value = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def resolve_params(params: dict, profile: str | None = None, overrides: typing.Iterable[str] = ()) -> dict:
    """Apply the profile and the overrides to the raw params.yaml content."""
    params = dict(params)
    profiles = params.pop("profiles", {}) or {}
    profile = profile or params.get("profile", "demo")
    if profile not in profiles:
        raise ConfigError(f"profile: {profile!r} is not one of {sorted(profiles)}")
    resolved = deep_merge(params, profiles[profile] or {}, "")
    resolved["profile"] = profile
    for text in overrides:
        resolved = deep_merge(resolved, parse_override(text))
    return resolved


# ---- typed sections ------------------------------------------------------------------------


def build(cls: type, data: Any, where: str):
    """Build dataclass `cls` from a mapping, checking keys and value types; `where` is the dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key{_did_you_mean(key, fields)}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _coerce(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: missing (required)")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(option, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[-1] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        return {k: _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint in (str, float) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _did_you_mean(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; valid keys: {', '.join(sorted(map(str, valid)))}"


# ---- the config a stage sees ----------------------------------------------------------------


@dataclasses.dataclass
class Config:
    name: str  # the project, e.g. "energy"
    profile: str  # demo | full
    seed: int  # seeds data generation, initialisation, samplers
    tracking: TrackingConfig
    project: Any  # the project's own section, typed by its plug-in
    raw: dict  # the resolved params (for logging to MLflow)

    @property
    def model_name(self) -> str:
        """The MLflow experiment, registered model and monitoring folder of this project under this profile.

        `energy` for the full profile (real data), `energy-demo` for the demo profile (synthetic data): a
        demo run never registers a challenger against, moves the alias of, or logs beside the real champion.
        """
        return model_name(self.name, self.profile)


def model_name(project: str, profile: str) -> str:
    return project if profile == "full" else f"{project}-{profile}"


def load_config(
    project_name: str,
    section_class: type,
    params_file: Path = PARAMS_FILE,
    profile: str | None = None,
    overrides: typing.Iterable[str] = (),
) -> Config:
    resolved = resolve_params(read_params(params_file), profile, overrides)
    if project_name not in resolved:
        raise ConfigError(f"{params_file}: no section for project {project_name!r}")
    seed = resolved.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    return Config(
        name=project_name,
        profile=resolved["profile"],
        seed=seed,
        tracking=build(TrackingConfig, resolved.get("tracking", {}), "tracking"),
        project=build(section_class, resolved[project_name], project_name),
        raw={k: resolved[k] for k in ("profile", "seed", "tracking", project_name) if k in resolved},
    )
