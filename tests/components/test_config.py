"""params.yaml loading: profiles, overrides, and errors that name the wrong key."""

from __future__ import annotations

import pytest

from components.config import ConfigError, load_config, parse_override, read_params, resolve_params
from pipelines.energy.project import ENERGY


def load(repo_root, profile=None, overrides=()):
    return load_config("energy", ENERGY.section, repo_root / "params.yaml", profile, overrides)


def test_profiles_change_only_what_they_list(repo_root):
    demo, full = load(repo_root, "demo"), load(repo_root, "full")
    assert (demo.project.data.source, full.project.data.source) == ("demo", "ett")
    assert (demo.project.window.seq_len, full.project.window.seq_len) == (96, 336)
    assert demo.project.model.d_model == full.project.model.d_model == 16  # not listed in demo


def test_override_beats_profile_and_is_typed(repo_root):
    cfg = load(repo_root, "demo", ["energy.train.lr=0.01", "energy.model.name=dlinear"])
    assert cfg.project.train.lr == 0.01 and isinstance(cfg.project.train.lr, float)
    assert cfg.project.model.name == "dlinear"
    assert parse_override("a.b=[0.7, 0.1, 0.2]") == {"a": {"b": [0.7, 0.1, 0.2]}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("energy.train.lrr=0.1", r"energy\.train\.lrr: unknown key \(did you mean 'lr'\?\)"),
        ("energy.train.max_epochs=ten", r"energy\.train\.max_epochs: expected an integer, got 'ten'"),
        ("energy.model.revin=maybe", r"energy\.model\.revin: expected true or false"),
        ("energgy.train.lr=1", r"energgy: unknown key \(did you mean 'energy'\?\)"),
        ("energy.window=3", r"energy\.window: expected a mapping"),
        ("no_equals_sign", r"expected key=value"),
    ],
)
def test_bad_keys_and_values_are_named(repo_root, override, message):
    with pytest.raises(ConfigError, match=message):
        load(repo_root, "demo", [override])


def test_unknown_profile(repo_root):
    with pytest.raises(ConfigError, match="profile: 'fast' is not one of"):
        resolve_params(read_params(repo_root / "params.yaml"), "fast")
