"""params.yaml -> a typed, validated config.

params.yaml is the single source of truth. Its base sections hold the `full` recipe (real data,
paper-size models); `profiles.<name>` holds what a profile changes (e.g. `demo` shrinks everything
to run offline in minutes). Precedence, lowest first: base sections < profile < CLI `--set`.
A `profile=<name>` override selects the profile before it is merged, so the recipe and the run's
tags always agree.

Override syntax: `key.sub.key=value`, the value parsed as YAML (`3`, `1e-3`, `true`, `[0.7, 0.1, 0.2]`,
`"a string"`). A key segment holding a dot is quoted: `energy.data.checksums."ETTh1.csv"=sha256:...`
(on a shell command line, quote the whole argument: `--set 'energy.data.checksums."ETTh1.csv"=...'`).

Every key is checked against the dataclasses that describe it, so a typo fails at load time with
the dotted key and the closest valid name, instead of being ignored or crashing deep in a stage.
Values are checked too: types, `Literal[...]` choices, ranges declared with `bounded(default, ge=...)`
and cross-field rules in a section's optional `check()` method (which raises `Invalid(key, reason)`).
A key given twice in the params file is an error, not a silent last-one-wins.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

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


class Invalid(Exception):
    """Raised by a section's `check()`: `key` is relative to the section (e.g. "split", "model.stride")."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


# ---- declaring allowed values --------------------------------------------------------------


def bounded(
    default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None
):
    """A dataclass field with a default and an allowed range (>= ge, > gt, <= le, < lt), checked by build().

    `batch_size: int = bounded(128, ge=1)  # why` reads like the other fields and keeps the rule beside them.
    """
    limits = {op: v for op, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, metadata={"limits": limits})


_OPS = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def check_limits(instance: Any, where: str) -> None:
    """Every `bounded` field of a built dataclass within its range, then the section's own `check()`."""
    for field in dataclasses.fields(instance):
        limits = field.metadata.get("limits")
        value = getattr(instance, field.name)
        if limits and isinstance(value, (int, float)) and not isinstance(value, bool):
            # written as `not all(ok)` so that NaN, which fails every comparison, is refused
            if not all(_OPS[op][0](value, bound) for op, bound in limits.items()):
                rule = " and ".join(f"{_OPS[op][1]} {bound}" for op, bound in limits.items())
                raise ConfigError(f"{where}.{field.name}: {value!r} is out of range (must be {rule})")
    check = getattr(instance, "check", None)
    if callable(check):
        try:
            check()
        except Invalid as err:
            raise ConfigError(f"{where}.{err.key}: {err.reason}") from None


# ---- sections every project shares ---------------------------------------------------------

# what Lightning's Trainer(precision=...) accepts (transformer-engine needs NVIDIA's extra package)
Precision = Literal[
    "auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64"
]


@dataclasses.dataclass
class TrainConfig:
    batch_size: int = bounded(128, ge=1)  # windows/images per step
    lr: float = bounded(1e-4, gt=0)  # Adam learning rate
    weight_decay: float = bounded(0.0, ge=0)  # Adam L2 penalty
    max_epochs: int = bounded(100, ge=1)  # upper bound; early stopping usually ends sooner (no -1: always bounded)
    patience: int = bounded(10, ge=1)  # epochs without val improvement before stopping
    num_workers: int = bounded(0, ge=0)  # DataLoader workers (0: load in the main process)
    precision: Precision = "auto"  # auto: bf16-mixed on GPU, 32 on CPU; else any Lightning precision
    devices: str | int = "auto"  # Lightning devices ("auto", 1, 2, ..., -1 = all GPUs): DDP when > 1 GPU
    deterministic: bool = True  # deterministic kernels on CPU (GPU runs trade this for speed)
    # the train stage keeps data/<project>/checkpoints/last.ckpt for `train --resume`, rewritten at each epoch end;
    # N > 0 also every N optimizer steps, so that a kill deep into a long epoch loses at most N steps
    # (0: epoch ends only, no extra writes: right when an epoch takes minutes, not hours)
    checkpoint_every_n_steps: int = bounded(0, ge=0)

    def check(self) -> None:
        text = str(self.devices).strip()
        if text != "auto" and not (text.lstrip("-").isdigit() and (int(text) >= 1 or int(text) == -1)):
            raise Invalid("devices", f"{self.devices!r} is not 'auto', a device count >= 1, or -1 (all GPUs)")


@dataclasses.dataclass
class TuneConfig:
    n_trials: int = bounded(20, ge=1)  # trials per worker (several workers share one study via storage)
    max_epochs: int = bounded(20, ge=1)  # epochs per trial (shorter than a full training run)
    timeout_s: int = bounded(0, ge=0)  # wall-clock cap per worker, 0 = none
    sampler: Literal["tpe"] = "tpe"  # tpe (Optuna's TPESampler, seeded)
    pruner: Literal["median", "hyperband", "none"] = "median"  # stops unpromising trials early (none: never)
    storage: str = ""  # "" = journal file under data/<project>/tuned; or an RDB URL (postgresql://...)
    study_name: str = ""  # "" = <project>-<data version>: workers with the same data join one study
    # RDB storage only (journal files have no heartbeat): each running trial writes a heartbeat this often
    heartbeat_s: int = bounded(10, ge=1, le=600)  # seconds; 10 s costs one tiny UPDATE per trial, hardly load
    # a RUNNING trial whose heartbeat is older than this is a dead worker's: marked FAIL, then retried
    grace_s: int = bounded(60, ge=2)  # seconds; several heartbeats, so one slow UPDATE never kills a live trial
    retries: int = bounded(2, ge=0, le=10)  # reruns of a dead worker's trial (same params); bounded: an OOM repeats

    def check(self) -> None:
        if self.grace_s <= self.heartbeat_s:
            raise Invalid(
                "grace_s", f"{self.grace_s} must exceed heartbeat_s ({self.heartbeat_s}), or live trials fail"
            )


@dataclasses.dataclass
class RegisterConfig:
    margin: float = bounded(0.0, ge=0)  # the challenger must beat the champion's primary metric by more than this


@dataclasses.dataclass
class MonitorConfig:
    window: int = bounded(500, ge=1)  # most recent answered items of the inference log compared with the reference
    min_items: int = bounded(30, ge=1)  # fewer items than this: no drift decision yet ("insufficient data")
    column_test: Literal["ks", "wasserstein"] = "ks"  # ks: p < alpha / n columns | wasserstein: moved > effect_size
    alpha: float = bounded(0.05, gt=0, lt=1)  # ks: family-wise false-alarm rate over the column tests
    effect_size: float = bounded(1.0, gt=0)  # wasserstein: a column drifts when it moved more than this many stds
    drift_share: float = bounded(0.0, ge=0, lt=1)  # drift when more than this share of columns drift (0: any one)
    embedding_quantile: float = bounded(0.99, gt=0, lt=1)  # embeddings drift: AUROC above this quantile of chance
    reference_items: int = bounded(2000, ge=1)  # cap on reference rows (sampled evenly) kept with a model version


@dataclasses.dataclass
class AblationConfig:
    """`ablations.<project>`: named variants of the project's config, each trained over the same seeds (ablate stage).

    Top-level, not inside `<project>`: the chain's stages depend on the whole `<project>` section (dvc.yaml
    params), so a study written there would retrain and re-register the champion at every edit."""

    seeds: int = bounded(3, ge=2)  # seeds per variant; >= 2 for a paired test (seed s pairs across variants)
    max_epochs: int = bounded(0, ge=0)  # epochs per run, 0 = train.max_epochs (early stopping still applies)
    run: list[str] = dataclasses.field(default_factory=list)  # the variants to run, [] = all of them
    # name -> overrides of this project's section, dotted keys relative to it: {revin_off: {model.revin: false}}
    variants: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        for name in self.run:
            if name not in self.variants:
                raise Invalid("run", f"{name!r} is not a declared variant ({', '.join(self.variants) or 'none'})")
        for name, changes in self.variants.items():
            if name == "base" or not str(name).replace("_", "").replace("-", "").isalnum():
                raise Invalid(f"variants.{name}", "a variant is named with letters, digits, - and _ (not 'base')")
            if not isinstance(changes, dict) or not changes:
                raise Invalid(
                    f"variants.{name}", "expected a mapping of dotted keys to values, e.g. {model.revin: false}"
                )


@dataclasses.dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI, when set, wins over this
    wandb: bool = False  # also mirror training metrics to Weights & Biases (MLflow stays the source of truth)
    wandb_project: str = "scifolio"  # W&B project of the mirrored runs: one for the whole monorepo, like the store


# ---- reading YAML --------------------------------------------------------------------------


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, first_line: int, line: int):
        super().__init__(f"{key}: key given twice (line {first_line} and again at line {line})")
        self.key, self.first_line, self.line = key, first_line, line


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key given twice (PyYAML keeps the last one silently)."""

    def construct_document(self, node):
        _check_unique_keys(node, "", set())
        return super().construct_document(node)


def _check_unique_keys(node, where: str, seen_nodes: set) -> None:
    if id(node) in seen_nodes:  # an alias: already checked (and possibly recursive)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: later keys override on purpose
                _check_unique_keys(value_node, where, seen_nodes)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(id(key_node))
            dotted = f"{where}.{key_path(key)}" if where else key_path(key)
            line = key_node.start_mark.line + 1
            if (key_node.tag, key) in first:
                raise DuplicateKey(dotted, first[(key_node.tag, key)], line)
            first[(key_node.tag, key)] = line
            _check_unique_keys(value_node, dotted, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, f"{where}[{i}]", seen_nodes)


def load_yaml(text: str) -> Any:
    """Plain YAML (no tags such as !!python/...), every mapping key once. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_reason(err: yaml.YAMLError) -> str:
    """One line: where and what, without PyYAML's multi-line excerpt of the input."""
    if isinstance(err, DuplicateKey):
        return str(err)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if isinstance(err, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
        tag = problem.rsplit(" ", 1)[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
        problem = f"YAML tags are not allowed ({tag}): values are plain numbers, strings, lists and mappings"
    context = getattr(err, "context", None)
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{context + ': ' if context else ''}{problem}"


# ---- loading and merging -------------------------------------------------------------------


def read_params(path: Path = PARAMS_FILE) -> dict:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root or pass --params)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file (e.g. params.yaml)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}: byte 0x{raw[err.start]:02x})") from None
    try:
        data = load_yaml(text)
    except DuplicateKey as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_reason(err)}") from None
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


def split_key(key: str, text: str | None = None) -> list[str]:
    """'a.b."c.d"' -> ['a', 'b', 'c.d']: dots separate segments, a quoted ("..." or '...') segment keeps its dots."""
    where = f"override {text if text is not None else key!r}"
    parts, current, i, quoted = [], "", 0, False
    while i < len(key):
        char = key[i]
        if char in "\"'" and not current and not quoted:
            end = key.find(char, i + 1)
            if end < 0:
                raise ConfigError(f"{where}: unclosed quote {char} in the key")
            current, quoted, i = key[i + 1 : end], True, end + 1
            if i < len(key) and key[i] != ".":
                raise ConfigError(f"{where}: expected '.' or '=' after the quoted key segment {current!r}")
            continue
        if char == ".":
            parts.append((current, quoted))
            current, quoted = "", False
        elif quoted:
            raise ConfigError(f"{where}: expected '.' or '=' after the quoted key segment {current!r}")
        else:
            current += char
        i += 1
    parts.append((current, quoted))
    segments = []
    for segment, was_quoted in parts:
        segment = segment if was_quoted else segment.strip()
        if not segment:
            raise ConfigError(f"{where}: empty key segment (keys look like energy.train.lr)")
        segments.append(segment)
    return segments


def _split_override(text: str) -> tuple[str, str]:
    """Split at the first '=' outside a quoted key segment."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "=":
            return text[:i], text[i + 1 :]
    if quote:
        raise ConfigError(f"override {text!r}: unclosed quote {quote} in the key")
    raise ConfigError(f"override {text!r}: expected key=value, e.g. energy.train.lr=0.001")


def parse_override(text: str) -> dict:
    """'energy.model.d_model=32' -> {'energy': {'model': {'d_model': 32}}} (value parsed as YAML).

    A key segment with a dot in it is quoted: 'energy.data.checksums."ETTh1.csv"=sha256:...'.
    """
    key, raw = _split_override(text)
    if not key.strip():
        raise ConfigError(f"override {text!r}: expected key=value, e.g. energy.train.lr=0.001")
    segments = split_key(key.strip(), text)
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(
            f"override {text!r}: cannot read the value {raw!r} as YAML ({_yaml_reason(err)}); quote it to pass a string"
        ) from None
    for part in reversed(segments):
        value = {part: value}
    return value


def resolve_params(params: dict, profile: str | None = None, overrides: typing.Iterable[str] = ()) -> dict:
    """Apply the profile and the overrides to the raw params.yaml content.

    The profile comes from, highest first: a `profile=<name>` override, the `profile` argument (--profile),
    params.yaml's `profile` key. It is chosen before anything is merged, so recipe and tags agree.
    """
    params = dict(params)
    profiles = params.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"profiles: expected a mapping of profile name -> changes, got {profiles!r}")
    chosen, source = params.get("profile", "demo"), "the params file's profile key"
    if profile is not None:
        chosen, source = profile, "--profile"
    updates = []
    for text in overrides:
        update = parse_override(text)
        if "profile" in update:
            chosen, source = update.pop("profile"), f"override {text!r}"
            if isinstance(chosen, dict):
                raise ConfigError(f"{source}: profile is a name (e.g. profile=full), not a mapping")
        if "profiles" in update:
            raise ConfigError(
                f"override {text!r}: profiles cannot be overridden; set the key itself, e.g. energy.train.lr=0.001"
            )
        updates.append(update)
    if not isinstance(chosen, str) or chosen not in profiles:
        raise ConfigError(f"profile: {chosen!r} is not one of {sorted(profiles)} (from {source})")
    changes = profiles[chosen] or {}
    if not isinstance(changes, dict):
        raise ConfigError(f"profiles.{chosen}: expected a mapping of the keys it changes, got {changes!r}")
    for key in changes:
        if key not in params or key == "profile":
            raise ConfigError(f"profiles.{chosen}.{key}: unknown key{_did_you_mean(key, params)}")
    resolved = deep_merge(params, changes, "")
    resolved["profile"] = chosen
    for update in updates:
        resolved = deep_merge(resolved, update)
    return resolved


# ---- typed sections ------------------------------------------------------------------------


def build(cls: type, data: Any, where: str):
    """Build dataclass `cls` from a mapping, checking keys, value types, ranges and the section's `check()`;
    `where` is the dotted path."""
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
    instance = cls(**values)
    check_limits(instance, where)
    return instance


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
        choices = typing.get_args(hint)
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in choices:
            return str(value)  # YAML reads `precision: 32` as an int
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
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
        return {k: _coerce(value_type, v, f"{where}.{key_path(k)}") for k, v in value.items()}
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
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return value


def key_path(*segments: Any) -> str:
    """The dotted key as an override would write it: segments holding a dot are quoted."""
    return ".".join(f'"{s}"' if "." in str(s) else str(s) for s in segments if s != "")


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
    ablations: AblationConfig = dataclasses.field(default_factory=AblationConfig)  # `ablations.<project>`

    @property
    def model_name(self) -> str:
        """The MLflow experiment, registered model and monitoring folder of this project (and task) under this profile.

        `energy` for the full profile (real data), `energy-demo` for the demo profile (synthetic data): a
        demo run never registers a challenger against, moves the alias of, or logs beside the real champion.
        """
        return model_name(self.name, self.profile, getattr(self.project, "task", ""))


def model_name(project: str, profile: str, task: str = "") -> str:
    """`<project>[-<task>][-<profile>]`: a project with several tasks (a `task` key in its section, as
    literature has) registers one model per task, each with its own experiment and inference log."""
    name = f"{project}-{task}" if task else project
    return name if profile == "full" else f"{name}-{profile}"


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
    studies = resolved.get("ablations") or {}
    if not isinstance(studies, dict):
        raise ConfigError(f"ablations: expected a mapping of project -> study, got {type(studies).__name__}")
    return Config(
        name=project_name,
        profile=resolved["profile"],
        seed=seed,
        tracking=build(TrackingConfig, resolved.get("tracking", {}), "tracking"),
        project=build(section_class, resolved[project_name], project_name),
        ablations=build(AblationConfig, studies.get(project_name) or {}, f"ablations.{project_name}"),
        raw={k: resolved[k] for k in ("profile", "seed", "tracking", project_name) if k in resolved},
    )
