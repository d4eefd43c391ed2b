"""The stage runner's command line: clear one-line errors, fast start, non-zero exits."""

from __future__ import annotations

import os
import subprocess
import sys


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
