"""The stage runner's command line: clear one-line errors, fast start, non-zero exits."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipelines.registry import PROJECTS


def test_cli_reports_a_bad_key_without_traceback(repo_root):
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "energy", "prepare", "--set", "energy.window.seq_ln=3"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "energy.window.seq_ln: unknown key (did you mean 'seq_len'?)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_starts_without_heavy_imports(repo_root):
    code = (
        "import sys, pipelines.__main__ as m\n"
        "heavy = [n for n in ('torch', 'lightning', 'mlflow', 'great_expectations', 'monai', 'pandas') if n in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_validate_stage_exits_nonzero_naming_file_column_line(repo_root, etth1, tmp_path):
    """A broken raw file: the stage fails, names what is wrong, writes the report, no validated/."""
    raw = tmp_path / "data" / "energy" / "raw"
    raw.mkdir(parents=True)
    lines = etth1.read_text().splitlines(keepends=True)
    lines[16] = lines[16].replace(lines[16].split(",")[3], "abc", 1)  # line 17, column MUFL
    (raw / "ETTh1.csv").write_text("".join(lines))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "energy",
            "validate",
            "--profile",
            "full",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert "ETTh1.csv" in proc.stderr and "'MUFL'" in proc.stderr and "line 17" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "data/energy/validation/validation.md").exists()
    assert not (tmp_path / "data/energy/validated").exists()


# ---- options that the chosen stage or command does not use; option ranges ---------------------------


def parse_error(capsys, argv: list[str]) -> str:
    from pipelines.__main__ import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv, flag, users",
    [
        (["energy", "train", "--seed", "3"], "--seed", "replay"),
        (["energy", "train", "--seed", "0"], "--seed", "replay"),  # even the default value: it would be ignored
        (["energy", "replay", "--port", "5051"], "--port", "serve/app"),
        (["energy", "prepare", "--log-dir", "logs"], "--log-dir", "serve/monitor/retrain"),
        (["energy", "serve", "--reports-dir", "r"], "--reports-dir", "monitor/retrain/replay"),
        (["energy", "retrain", "--version", "3"], "--version", "monitor"),
        (["energy", "monitor", "--if-drift"], "--if-drift", "retrain"),
        (["medical", "serve", "--url", "http://127.0.0.1:5051"], "--url", "replay"),
        (["medical", "monitor", "--stream", "station"], "--stream", "replay"),
        (["medical", "retrain", "--replays", "2"], "--replays", "replay"),
        (["medical", "serve", "--items", "5"], "--items", "replay"),
        (["energy", "train", "--skip", "tune"], "--skip", "all"),
        (["energy", "app", "--seed", "1"], "--seed", "replay"),
    ],
)
def test_cli_refuses_an_option_the_stage_does_not_use(capsys, argv, flag, users):
    stage = argv[1]
    assert parse_error(capsys, argv) == (
        f"python -m pipelines: error: {flag}: not used by `{stage}` ({flag} is for {users})"
    )


def test_cli_lists_every_unused_option_in_one_line(capsys):
    line = parse_error(capsys, ["energy", "monitor", "--port", "1", "--if-drift"])
    assert line == (
        "python -m pipelines: error: --port, --if-drift: not used by `monitor` "
        "(--port is for serve/app; --if-drift is for retrain)"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["energy", "serve", "--port", "99999"], "argument --port: must be 1..65535, got 99999"),
        (["energy", "serve", "--port", "0"], "argument --port: must be 1..65535, got 0"),
        (["energy", "serve", "--port", "http"], "argument --port: expected an integer, got 'http'"),
        (["energy", "replay", "--replays", "0"], "argument --replays: must be >= 1, got 0"),
        (["energy", "replay", "--items", "-1"], "argument --items: must be >= 1, got -1"),
        (["energy", "replay", "--url", "127.0.0.1:5050"], "argument --url: expected an http(s)://host:port URL"),
    ],
)
def test_cli_refuses_out_of_range_option_values(capsys, argv, message):
    assert message in parse_error(capsys, argv)


def test_cli_options_that_apply_are_kept_and_defaults_filled():
    from pipelines.__main__ import parse_args

    args = parse_args(["energy", "replay", "--seed", "3", "--items", "5", "--stream", "station"])
    assert (args.seed, args.items, args.replays, args.stream, args.url) == (
        3,
        5,
        1,
        ["station"],
        "http://127.0.0.1:5050",
    )
    assert args.port is None and args.log_dir is None and args.if_drift is False and args.skip == []
    assert (parse_args(["energy", "serve"]).port, parse_args(["medical", "app"]).port) == (5050, 7860)
    args = parse_args(["medical", "serve", "--port", "65535", "--log-dir", "logs", "--set", "medical.seed=1"])
    assert (args.port, str(args.log_dir), args.overrides) == (65535, "logs", ["medical.seed=1"])
    args = parse_args(["energy", "all", "--skip", "tune", "--skip", "train", "--profile", "full"])
    assert args.skip == ["tune", "train"] and args.seed == 0
    assert parse_args(["energy", "retrain", "--if-drift", "--reports-dir", "r"]).if_drift is True
    # a fresh list per call: a default list is never shared between parses
    first, second = parse_args(["energy", "all"]), parse_args(["energy", "all"])
    assert first.skip == [] and first.skip is not second.skip


def test_cli_help_lists_projects_stages_and_commands(repo_root):
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "--help"], cwd=repo_root, capture_output=True, text=True, timeout=60
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"projects: {', '.join(sorted(PROJECTS))}" in out
    assert "pull -> validate -> prepare -> tune -> train -> evaluate -> register" in out
    for command in ("serve", "monitor", "replay", "retrain", "app"):
        assert f"\n  {command} " in out
    assert 'energy.data.checksums."ETTh1.csv"=' in out  # the quoted-key syntax is documented
    assert seconds < 5, f"--help took {seconds:.1f} s"  # ~0.3 s alone; generous for a loaded CI machine


# ---- config errors through the runner: exit 2, one line, no traceback --------------------------------


def run_cli(repo_root, *args):
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=repo_root, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "profile=fast"], "profile: 'fast' is not one of ['demo', 'full'] (from override 'profile=fast')"),
        (["--set", "energy.train.lr=[1"], "override 'energy.train.lr=[1': cannot read the value '[1' as YAML"),
        (["--set", "energy.train.lr=!!python/object:os.system"], "YAML tags are not allowed"),
        (["--params", "."], ".: is a directory, expected a YAML file"),
        (["--set", "energy.tune.n_trials=0"], "energy.tune.n_trials: 0 is out of range (must be >= 1)"),
    ],
    ids=["unknown-profile", "unclosed-yaml", "yaml-tag", "params-dir", "range"],
)
def test_cli_config_errors_are_one_line_exit_2(repo_root, args, expected):
    proc = run_cli(repo_root, "energy", "prepare", *args)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_params_file_not_utf8(repo_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes(b"seed: 42\nprofile: d\xe9mo\n")
    proc = run_cli(repo_root, "energy", "prepare", "--params", str(params))
    assert proc.returncode == 2
    assert f"{params}: not UTF-8 text (line 2: byte 0xe9)" in proc.stderr and "Traceback" not in proc.stderr
