"""params.yaml loading: profiles, overrides, and errors that name the wrong key (or file) and the reason."""

from __future__ import annotations

import dataclasses

import pytest

from components import config as C
from components.config import ConfigError, load_config, parse_override, read_params, resolve_params
from pipelines.energy import config as energy_config
from pipelines.energy.project import ENERGY
from pipelines.medical import config as medical_config
from pipelines.medical.project import MEDICAL

SECTIONS = {"energy": ENERGY.section, "medical": MEDICAL.section}


def load(repo_root, profile=None, overrides=(), project="energy", params=None):
    return load_config(project, SECTIONS[project], params or repo_root / "params.yaml", profile, overrides)


# ---- what loads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["demo", "full"])
@pytest.mark.parametrize("project", ["energy", "medical"])
def test_committed_params_load_for_every_project_and_profile(repo_root, project, profile):
    cfg = load(repo_root, profile, project=project)
    assert cfg.profile == profile and cfg.raw["profile"] == profile
    assert cfg.project.data.source == ("demo" if profile == "demo" else {"energy": "ett", "medical": "nih"}[project])


def test_every_default_is_within_its_own_limits():
    for module in (C, energy_config, medical_config):
        for cls in vars(module).values():
            if dataclasses.is_dataclass(cls) and isinstance(cls, type):
                fields = dataclasses.fields(cls)
                if all(
                    f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING for f in fields
                ):
                    C.check_limits(cls(), cls.__name__)  # raises ConfigError if a default breaks its own rule


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


def test_valid_lightning_values_still_load(repo_root):
    cfg = load(repo_root, "demo", ["energy.train.precision=32", "energy.train.devices=2", "energy.tune.pruner=none"])
    assert (cfg.project.train.precision, cfg.project.train.devices) == (
        "32",
        2,
    )  # YAML ints read as Lightning reads them
    cfg = load(repo_root, "demo", ["energy.train.precision=bf16-mixed", "energy.train.devices=-1"])
    assert (cfg.project.train.precision, cfg.project.train.devices) == ("bf16-mixed", -1)


# ---- 1. a profile override selects the profile before it is merged ---------------------------------


def test_profile_override_selects_the_recipe_not_only_the_tag(repo_root):
    cfg = load(repo_root, "demo", ["profile=full"])  # --profile demo --set profile=full: the override wins
    assert cfg.profile == cfg.raw["profile"] == "full" and cfg.model_name == "energy"
    assert (cfg.project.data.source, cfg.project.window.seq_len) == ("ett", 336)  # the full recipe, not demo's
    cfg = load(repo_root, "full", ["profile=demo"])
    assert (cfg.profile, cfg.project.data.source, cfg.model_name) == ("demo", "demo", "energy-demo")


def test_profile_override_unknown_lists_the_valid_profiles(repo_root):
    with pytest.raises(
        ConfigError, match=r"profile: 'fast' is not one of \['demo', 'full'\] \(from override 'profile=fast'\)"
    ):
        load(repo_root, "demo", ["profile=fast"])


def test_unknown_profile(repo_root):
    with pytest.raises(ConfigError, match="profile: 'fast' is not one of"):
        resolve_params(read_params(repo_root / "params.yaml"), "fast")


def test_profile_override_must_be_a_name(repo_root):
    with pytest.raises(ConfigError, match=r"override 'profile\.x=1': profile is a name"):
        load(repo_root, "demo", ["profile.x=1"])


def test_profiles_cannot_be_overridden(repo_root):
    with pytest.raises(ConfigError, match=r"override 'profiles\.demo\.energy\.train\.lr=1': profiles cannot be"):
        load(repo_root, "demo", ["profiles.demo.energy.train.lr=1"])


# ---- 2. unreadable overrides and params files --------------------------------------------------------


@pytest.mark.parametrize(
    "override, reason",
    [
        ("energy.train.lr=[1", r"expected ',' or '\]'"),
        ("energy.train.lr={a: 1", r"expected ',' or '\}'"),
        ("energy.train.lr=!!python/object:os.system", r"YAML tags are not allowed \(!!python/object:os\.system\)"),
        ("energy.train.lr=!!python/object/apply:os.system ['echo hi']", r"YAML tags are not allowed"),
    ],
)
def test_override_with_unreadable_yaml_is_refused_naming_it(repo_root, override, reason):
    with pytest.raises(ConfigError) as err:
        load(repo_root, "demo", [override])
    message = str(err.value)
    assert message.startswith(f"override {override!r}: cannot read the value")
    assert __import__("re").search(reason, message), message
    assert "\n" not in message


def test_params_file_that_is_a_directory_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is a directory, expected a YAML file"):
        read_params(tmp_path)


def test_params_file_that_is_not_utf8_is_refused_naming_it(repo_root, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((repo_root / "params.yaml").read_bytes().replace(b"sqlite:///mlflow.db", b"caf\xe9.db"))
    with pytest.raises(ConfigError, match=rf"^{path}: not UTF-8 text \(line 8: byte 0xe9\)"):
        read_params(path)


def test_params_file_missing_or_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'nope.yaml'}: not found"):
        read_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'bad.yaml'}: not valid YAML: line 2"):
        read_params(tmp_path / "bad.yaml")
    (tmp_path / "tag.yaml").write_text("a: !!python/name:os.system\n")
    with pytest.raises(ConfigError, match=r"tag\.yaml: not valid YAML: line 1, column 4: YAML tags are not allowed"):
        read_params(tmp_path / "tag.yaml")


# ---- 3. a key given twice ----------------------------------------------------------------------------


def _with(repo_root, tmp_path, anchor: str, inserted: str):
    text = (repo_root / "params.yaml").read_text()
    assert anchor in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(anchor, anchor + inserted, 1))
    return path


def _line(path, fragment: str, nth: int = 1) -> int:
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(fragment)]
    return lines[nth - 1]


@pytest.mark.parametrize(
    "anchor, inserted, key, fragment",
    [
        ("seed: 42", "\nseed: 7", "seed", "seed:"),
        ("    lr: 1.0e-4  # Adam (PatchTST recipe)", "\n    lr: 1.0e-3", "energy.train.lr", "lr: 1.0e-"),
        ("        max_epochs: 6", "\n        max_epochs: 1", "profiles.demo.energy.train.max_epochs", "max_epochs: "),
        ("  gradcam_images: 6", "\n  gradcam_images: 2", "medical.gradcam_images", "gradcam_images:"),
        (
            "      opsd_germany_daily.csv: sha256:",
            "0\n      ETTh1.csv: sha256:00\n      opsd_germany_daily.csv: sha256:",
            'energy.data.checksums."ETTh1.csv"',
            "ETTh1.csv:",
        ),
    ],
)
def test_key_given_twice_is_refused_with_key_and_lines(repo_root, tmp_path, anchor, inserted, key, fragment):
    path = _with(repo_root, tmp_path, anchor, inserted)
    if fragment == "max_epochs: ":  # the profile's second max_epochs, not the base sections'
        first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line == "        max_epochs: 6")
        second = first + 1
    else:
        first, second = _line(path, fragment), _line(path, fragment, 2)
    with pytest.raises(ConfigError) as err:
        load(repo_root, "demo", params=path)
    assert str(err.value) == f"{path}: {key}: key given twice (line {first} and again at line {second})"


def test_key_given_twice_in_an_override_value(repo_root):
    with pytest.raises(ConfigError, match=r"override 'energy\.data\.checksums=\{a: x, a: y\}': .*a: key given twice"):
        load(repo_root, "demo", ["energy.data.checksums={a: x, a: y}"])


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    (tmp_path / "p.yaml").write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert read_params(tmp_path / "p.yaml")["other"] == {"x": 3, "y": 2}


# ---- 4. ranges and choices ---------------------------------------------------------------------------

RANGES = [
    ("energy.train.max_epochs=-1", r"energy\.train\.max_epochs: -1 is out of range \(must be >= 1\)"),
    ("energy.train.max_epochs=0", r"energy\.train\.max_epochs: 0 is out of range \(must be >= 1\)"),
    ("energy.tune.n_trials=0", r"energy\.tune\.n_trials: 0 is out of range \(must be >= 1\)"),
    ("energy.tune.max_epochs=0", r"energy\.tune\.max_epochs: 0 is out of range \(must be >= 1\)"),
    ("energy.train.patience=0", r"energy\.train\.patience: 0 is out of range \(must be >= 1\)"),
    ("energy.train.batch_size=0", r"energy\.train\.batch_size: 0 is out of range \(must be >= 1\)"),
    ("energy.train.num_workers=-1", r"energy\.train\.num_workers: -1 is out of range \(must be >= 0\)"),
    ("energy.train.lr=0", r"energy\.train\.lr: 0\.0 is out of range \(must be > 0\)"),
    ("energy.train.lr=.nan", r"energy\.train\.lr: expected a finite number, got nan"),
    ("energy.train.weight_decay=-0.1", r"energy\.train\.weight_decay: -0\.1 is out of range \(must be >= 0\)"),
    ("energy.tune.timeout_s=-5", r"energy\.tune\.timeout_s: -5 is out of range \(must be >= 0\)"),
    ("energy.register.margin=-0.1", r"energy\.register\.margin: -0\.1 is out of range \(must be >= 0\)"),
    ("energy.monitor.window=0", r"energy\.monitor\.window: 0 is out of range \(must be >= 1\)"),
    ("energy.monitor.min_items=0", r"energy\.monitor\.min_items: 0 is out of range \(must be >= 1\)"),
    ("energy.monitor.alpha=0", r"energy\.monitor\.alpha: 0\.0 is out of range \(must be > 0 and < 1\)"),
    ("energy.monitor.alpha=1", r"energy\.monitor\.alpha: 1\.0 is out of range \(must be > 0 and < 1\)"),
    ("energy.monitor.drift_share=1", r"energy\.monitor\.drift_share: 1\.0 is out of range \(must be >= 0 and < 1\)"),
    ("energy.monitor.drift_share=-0.1", r"energy\.monitor\.drift_share: -0\.1 is out of range"),
    ("energy.monitor.effect_size=0", r"energy\.monitor\.effect_size: 0\.0 is out of range \(must be > 0\)"),
    ("energy.monitor.embedding_quantile=1.5", r"energy\.monitor\.embedding_quantile: 1\.5 is out of range"),
    ("energy.monitor.reference_items=0", r"energy\.monitor\.reference_items: 0 is out of range \(must be >= 1\)"),
    ("energy.window.seq_len=0", r"energy\.window\.seq_len: 0 is out of range \(must be >= 1\)"),
    ("energy.window.horizon=-24", r"energy\.window\.horizon: -24 is out of range \(must be >= 1\)"),
    ("energy.model.patch_len=0", r"energy\.model\.patch_len: 0 is out of range \(must be >= 1\)"),
    ("energy.model.stride=0", r"energy\.model\.stride: 0 is out of range \(must be >= 1\)"),
    ("energy.model.n_layers=0", r"energy\.model\.n_layers: 0 is out of range \(must be >= 1\)"),
    ("energy.model.dropout=1", r"energy\.model\.dropout: 1\.0 is out of range \(must be >= 0 and < 1\)"),
    ("energy.model.kernel_size=0", r"energy\.model\.kernel_size: 0 is out of range \(must be >= 1\)"),
    ("energy.data.demo_rows=0", r"energy\.data\.demo_rows: 0 is out of range \(must be >= 1\)"),
    ("medical.data.val_fraction=0", r"medical\.data\.val_fraction: 0\.0 is out of range \(must be > 0 and < 1\)"),
    ("medical.data.val_fraction=1", r"medical\.data\.val_fraction: 1\.0 is out of range \(must be > 0 and < 1\)"),
    ("medical.data.shard_size=0", r"medical\.data\.shard_size: 0 is out of range \(must be >= 1\)"),
    ("medical.data.mimic_max_studies=-1", r"medical\.data\.mimic_max_studies: -1 is out of range \(must be >= 0\)"),
    ("medical.input.size=0", r"medical\.input\.size: 0 is out of range \(must be >= 1\)"),
    ("medical.bootstrap=0", r"medical\.bootstrap: 0 is out of range \(must be >= 1\)"),
    ("medical.gradcam_images=-1", r"medical\.gradcam_images: -1 is out of range \(must be >= 0\)"),
    ("medical.train.max_epochs=0", r"medical\.train\.max_epochs: 0 is out of range \(must be >= 1\)"),
]

CHOICES = [
    ("energy.tune.pruner=random", r"energy\.tune\.pruner: 'random' is not one of \['median', 'hyperband', 'none'\]"),
    ("energy.tune.sampler=cmaes", r"energy\.tune\.sampler: 'cmaes' is not one of \['tpe'\]"),
    ("energy.monitor.column_test=psi", r"energy\.monitor\.column_test: 'psi' is not one of \['ks', 'wasserstein'\]"),
    ("energy.train.precision=fp8", r"energy\.train\.precision: 'fp8' is not one of \['auto', '32-true'"),
    ("energy.train.devices=0", r"energy\.train\.devices: 0 is not 'auto', a device count >= 1, or -1"),
    ("energy.train.devices=0,1", r"energy\.train\.devices: '0,1' is not 'auto', a device count >= 1"),
    (
        "energy.model.name=transformer",
        r"energy\.model\.name: 'transformer' is not one of \['patchtst', 'dlinear', 'nlinear'\]",
    ),
    ("energy.data.source=ercot", r"energy\.data\.source: 'ercot' is not one of \['ett', 'opsd', 'demo'\]"),
    (
        "energy.data.dataset=ETTh3",
        r"energy\.data\.dataset: 'ETTh3' is not one of \['ETTh1', 'ETTh2', 'ETTm1', 'ETTm2'\]",
    ),
    ("medical.model.name=resnet50", r"medical\.model\.name: 'resnet50' is not one of \['multimodal', 'densenet121'\]"),
    (
        "medical.data.source=chexpert",
        r"medical\.data\.source: 'chexpert' is not one of \['nih', 'nih_folder', 'demo', 'mimic'\]",
    ),
    ("medical.input.cache=disk", r"medical\.input\.cache: 'disk' is not one of \['none', 'memory'\]"),
    ("medical.monitor.column_test=chi2", r"medical\.monitor\.column_test: 'chi2' is not one of"),
]

CROSS_FIELD = [
    (
        "energy.data.split=[0.8, 0.2]",
        r"energy\.data\.split: \[0\.8, 0\.2\]: expected three positive fractions \[train, val, test\] summing to 1",
    ),
    ("energy.data.split=[0.5, 0.3, 0.3]", r"energy\.data\.split: .*summing to 1"),
    ("energy.data.split=[0.9, 0.2, -0.1]", r"energy\.data\.split: .*three positive fractions"),
    ("energy.data.split=[0.7, 0.1, 0.1, 0.1]", r"energy\.data\.split: .*three positive fractions"),
    ("energy.data.split=random", r"energy\.data\.split: 'random' is not 'ett' or a list \[train, val, test\]"),
    ("energy.model.d_model=10", r"energy\.model\.d_model: 10 is not divisible by n_heads \(4\)"),
    ("energy.model.patch_len=200", r"energy\.model\.patch_len: 200 is longer than window\.seq_len \(96\)"),
    (
        'energy.data.checksums."ETTh1.csv"=sha256:abc',
        r"energy\.data\.checksums\.\"ETTh1\.csv\": 'sha256:abc' is not 'sha256:<64 hex>'",
    ),
    ("medical.model.d_model=30", r"medical\.model\.d_model: 30 is not divisible by n_heads \(4\)"),
]


@pytest.mark.parametrize(
    "override, message", RANGES + CHOICES + CROSS_FIELD, ids=[o for o, _ in RANGES + CHOICES + CROSS_FIELD]
)
def test_out_of_range_or_unknown_values_are_refused_at_load(repo_root, override, message):
    with pytest.raises(ConfigError, match=message):
        load(repo_root, "demo", [override], project=override.split(".")[0])


def test_rules_only_apply_to_the_model_that_uses_them(repo_root):
    cfg = load(
        repo_root, "demo", ["energy.model.name=dlinear", "energy.model.d_model=10", "energy.model.patch_len=200"]
    )
    assert cfg.project.model.name == "dlinear"  # PatchTST's constraints do not apply to DLinear
    with pytest.raises(ConfigError, match=r"energy\.model\.kernel_size: 24 is even"):
        load(repo_root, "demo", ["energy.model.name=dlinear", "energy.model.kernel_size=24"])


# ---- 5. quoted key segments --------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def test_quoted_key_segment_keeps_its_dot(repo_root):
    assert parse_override(f'energy.data.checksums."ETTh1.csv"={DIGEST}') == {
        "energy": {"data": {"checksums": {"ETTh1.csv": DIGEST}}}
    }
    assert parse_override("a.'b.c'.d=1") == {"a": {"b.c": {"d": 1}}}
    cfg = load(repo_root, "full", [f'energy.data.checksums."ETTh1.csv"={DIGEST}'])
    assert cfg.project.data.checksums["ETTh1.csv"] == DIGEST
    assert cfg.project.data.checksums["ETTm1.csv"].startswith("sha256:6ce1")  # the others stay


@pytest.mark.parametrize(
    "override, message",
    [
        ('energy.data.checksums."ETTh1.csv=sha256:x', r"unclosed quote \" in the key"),
        ('energy.data.checksums."ETTh1"csv=1', r"expected '\.' or '=' after the quoted key segment 'ETTh1'"),
        ('energy.data.checksums.""=1', r"empty key segment"),
        ("energy..train.lr=1", r"empty key segment"),
        ("no_equals_sign", r"expected key=value"),
        ("=1", r"expected key=value"),
    ],
)
def test_malformed_keys_are_refused_naming_the_override(repo_root, override, message):
    with pytest.raises(ConfigError, match=rf"^override {__import__('re').escape(repr(override))}: {message}"):
        load(repo_root, "demo", [override])


# ---- unknown keys and wrong types (before these fixes) -------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("energy.train.lrr=0.1", r"energy\.train\.lrr: unknown key \(did you mean 'lr'\?\)"),
        ("energy.train.max_epochs=ten", r"energy\.train\.max_epochs: expected an integer, got 'ten'"),
        ("energy.model.revin=maybe", r"energy\.model\.revin: expected true or false"),
        ("energgy.train.lr=1", r"energgy: unknown key \(did you mean 'energy'\?\)"),
        ("energy.window=3", r"energy\.window: expected a mapping"),
    ],
)
def test_bad_keys_and_values_are_named(repo_root, override, message):
    with pytest.raises(ConfigError, match=message):
        load(repo_root, "demo", [override])
