"""The GitHub workflows: valid against GitHub's schema, and every command they run exists.

Nothing here talks to GitHub. `check-jsonschema --builtin-schema vendor.github-workflows` validates
offline (the schema ships in the wheel); the commands the `run:` steps call are checked where they
would fail first: `make -n <target>` (a dry run) for make targets, and the CLI's own argument parser
for `python -m pipelines <project> <command> ...`, also for the pipelines commands make would run.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.registry import PROJECTS

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
SHELL_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "time", "exec", "{", "}"}


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:  # PyYAML reads the key `on:` as the boolean True (YAML 1.1)
        data["on"] = data.pop(True)
    return data


def run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow.get("jobs", {}).values() for step in job.get("steps", []) if "run" in step]


def substitute(script: str, project: str) -> str:
    """The matrix variable (directly or through the job's $PROJECT) -> a project name."""
    script = re.sub(r"\$\{\{\s*matrix\.project\s*\}\}", project, script)
    script = re.sub(r"\$\{PROJECT\}|\$PROJECT\b", project, script)
    return re.sub(r"\$\{\{[^}]*\}\}", "EXPR", script)  # any other expression: an opaque word


def commands(script: str) -> list[list[str]]:
    """Simple commands of a shell script: each line split like the shell, at ; && || | (redirections dropped)."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current, skip = [], False
        for word in lexer:
            if skip:
                skip = False
            elif word in OPERATORS:
                out.append(current)
                current = []
            elif set(word) <= set("<>&") or re.fullmatch(r"\d?[<>]+&?", word):
                skip = True  # a redirection and its target
            elif word not in SHELL_WORDS or current:
                current.append(word)
        out.append(current)
    return [c for c in out if c]


def pipelines_argv(words: list[str]) -> list[str] | None:
    """['python', '-m', 'pipelines', 'energy', 'pull'] -> ['energy', 'pull']; None if not such a command."""
    for i, word in enumerate(words[:-2]):
        if re.fullmatch(r"(.*/)?python(3(\.\d+)?)?", word) and words[i + 1 : i + 3] == ["-m", "pipelines"]:
            return words[i + 3 :]
    return None


def collect() -> tuple[list, list]:
    """(make calls, pipelines calls) of every workflow, once per project."""
    makes, clis = [], []
    for path in workflow_files():
        for script in run_scripts(load(path)):
            for project in PROJECTS:
                for words in commands(substitute(script, project)):
                    if words[0] == "make":
                        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
                        variables = [w for w in words[1:] if "=" in w and not w.startswith("-")]
                        for target in targets or ["help"]:
                            item = (path.name, target, tuple(variables), project)
                            if item not in makes:
                                makes.append(item)
                    elif (argv := pipelines_argv(words)) is not None:
                        item = (path.name, tuple(argv))
                        if item not in clis:
                            clis.append(item)
    return makes, clis


MAKES, CLIS = collect()


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    assert CHECK_JSONSCHEMA.exists(), f"{CHECK_JSONSCHEMA} missing: pip install check-jsonschema (the [test] extra)"
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def parses(argv: list[str]) -> str | None:
    """None if the CLI's parser accepts argv, else argparse's message."""
    from pipelines.__main__ import parse_args

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parse_args(list(argv))
    except SystemExit as exit:
        return f"exit {exit.code}: {err.getvalue().strip()}"
    return None


# ---- (a) the schema -----------------------------------------------------------------------


def test_the_workflows_exist():
    names = {p.name for p in workflow_files()}
    assert {"ci.yml", "retrain.yml"} <= names


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_is_valid_against_githubs_schema(path):
    proc = check_jsonschema(path)
    assert proc.returncode == 0, f"{path.name}:\n{proc.stdout}\n{proc.stderr}"
    assert "ok -- validation done" in proc.stdout


def test_the_schema_check_can_fail(tmp_path):
    """The same workflow passes, and fails once broken: the check above is not a rubber stamp."""
    good = tmp_path / "good.yml"
    good.write_text((WORKFLOWS / "retrain.yml").read_text())
    assert check_jsonschema(good).returncode == 0

    broken = load(WORKFLOWS / "retrain.yml")
    del broken["on"]  # no trigger
    job = broken["jobs"]["retrain"]
    job["step"] = job.pop("steps")  # a typo in a key
    job["timeout-minutes"] = "soon"
    bad = tmp_path / "broken.yml"
    bad.write_text(yaml.safe_dump(broken, sort_keys=False))
    proc = check_jsonschema(bad)
    assert proc.returncode != 0, proc.stdout
    assert "'on' is a required property" in proc.stdout


# ---- (b) the commands the workflows call ---------------------------------------------------


def test_the_workflows_call_commands():
    """The parametrised checks below are not vacuous."""
    targets = {(name, target) for name, target, _, _ in MAKES}
    assert {("retrain.yml", "install"), ("retrain.yml", "monitor"), ("retrain.yml", "retrain")} <= targets
    assert {argv[1] for name, argv in CLIS if name == "retrain.yml" and len(argv) > 1} >= {"pull"}
    assert {argv[0] for name, argv in CLIS} == set(PROJECTS)


@pytest.mark.parametrize(
    "name,target,variables,project", MAKES, ids=[f"{m[0]}:make {' '.join([m[1], *m[2]])}:{m[3]}" for m in MAKES]
)
def test_make_target_exists(name, target, variables, project):
    """`make -n` (a dry run: prints, runs nothing) of each target a workflow calls; the pipelines
    commands the recipe would run must pass the CLI's parser too."""
    cmd = ["make", "-n", target, *variables]
    if not any(v.startswith("PROJECT=") for v in variables):
        cmd.append(f"PROJECT={project}")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{name}: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    for line in proc.stdout.splitlines():
        for words in commands(line):
            argv = pipelines_argv(words)
            if argv is not None:
                assert parses(argv) is None, f"{name}: make {target} runs `{line.strip()}`: {parses(argv)}"


@pytest.mark.parametrize("name,argv", CLIS, ids=[f"{c[0]}:{' '.join(c[1])}" for c in CLIS])
def test_pipelines_command_parses(name, argv):
    assert parses(argv) is None, f"{name}: python -m pipelines {' '.join(argv)}: {parses(argv)}"


@pytest.mark.parametrize("project", PROJECTS)
@pytest.mark.parametrize("command", [["monitor"], ["retrain"], ["retrain", "--if-drift"]], ids=" ".join)
def test_the_retraining_loop_commands_parse(project, command):
    """What `make monitor` / `make retrain [RETRAIN_ARGS=--if-drift]` run for the retrain workflow."""
    assert parses([project, *command]) is None, parses([project, *command])


# ---- the workflows' shape ------------------------------------------------------------------


def test_ci_runs_make_test_through_ci_run():
    ci = load(WORKFLOWS / "ci.yml")
    scripts = run_scripts(ci)
    assert any(".ci/run" in word for s in scripts for c in commands(s) for word in c), scripts
    calls = commands((REPO / ".ci" / "run").read_text())
    assert ["make", "test"] in calls, calls
    assert ci["permissions"] == {"contents": "read"}


def test_retrain_workflow_shape():
    wf = load(WORKFLOWS / "retrain.yml")
    assert wf["permissions"] == {"contents": "read"}
    assert wf["on"]["schedule"][0]["cron"].split()[4] != "*"  # weekly: one day of the week
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["project"]["type"] == "choice" and set(inputs["project"]["options"]) == {"all", *PROJECTS}
    assert inputs["force"]["type"] == "boolean"
    job = wf["jobs"]["retrain"]
    assert "matrix.project" in job["concurrency"]["group"] and job["concurrency"]["cancel-in-progress"] is False
    assert job["env"]["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert all(project in job["strategy"]["matrix"]["project"] for project in PROJECTS)
    steps = job["steps"]
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@v4")]
    assert len(uploads) == 1 and uploads[0]["if"] == "always()"
    assert {"monitoring/reports/${{ matrix.project }}", "data/${{ matrix.project }}/registry"} <= set(
        uploads[0]["with"]["path"].splitlines()
    )
    retrain = [c for s in run_scripts(wf) for c in commands(s) if c[:2] == ["make", "retrain"]]
    assert any("RETRAIN_ARGS=--if-drift" in c for c in retrain) and any(
        not any("RETRAIN_ARGS" in w for w in c) for c in retrain
    )
    order = [
        c[:2] if c[0] == "make" else (pipelines_argv(c) or [""])[1:2]
        for s in run_scripts(substitute_all(wf))
        for c in commands(s)
    ]
    flat = [" ".join(o) for o in order]
    assert flat.index("make install") < flat.index("pull") < flat.index("make monitor") < flat.index("make retrain")


def substitute_all(workflow: dict) -> dict:
    return {
        "jobs": {
            k: {
                "steps": [
                    {**s, "run": substitute(s["run"], "energy")} if "run" in s else s for s in job.get("steps", [])
                ]
            }
            for k, job in workflow["jobs"].items()
        }
    }
