"""Eager checks of constructor arguments that come from YAML: a bad value fails at build time with
its name, not as a shape error deep in forward. Shared by every project's networks."""

from __future__ import annotations


def check_int(name: str, value, minimum: int = 1) -> None:
    # bool is a subclass of int; `d_model: true` in a YAML file is a mistake, not 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_prob(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")


def model_class(models: dict[str, type], hparams_of: dict[str, tuple[str, ...]], name: str, hparams: dict) -> type:
    """The network class called `name`, once `hparams` are known to be among those it takes (else ValueError)."""
    if name not in models:
        raise ValueError(f"unknown model {name!r}; valid models: {sorted(models)}")
    valid = hparams_of[name]
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {unknown} for model {name!r}; valid: {list(valid) or 'none'}")
    return models[name]
