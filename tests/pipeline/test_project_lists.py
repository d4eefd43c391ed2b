"""One source for the project list, and DVC code deps that match what each stage imports.

pipelines/registry.py's PROJECTS is the source. dvc.yaml (vars), MLproject (entry points),
params.yaml (sections), the retrain workflow (choices and matrix) and the inference-log folders must
agree with it. And every components/ module a stage imports, directly or through other components,
must be a dep of that stage in dvc.yaml, or a code change would leave a stale model registered.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from components.stages import STAGES, STUDIES
from pipelines.registry import PROJECTS

SHARED_KEYS = {"profile", "seed", "tracking", "profiles", "ablations"}  # params.yaml keys that are not projects


def load(repo_root: Path, name: str) -> dict:
    return yaml.safe_load((repo_root / name).read_text())


def test_dvc_yaml_runs_every_registered_project(repo_root):
    dvc = load(repo_root, "dvc.yaml")
    (projects,) = [v["projects"] for v in dvc["vars"] if "projects" in v]
    assert projects == list(PROJECTS)
    foreach = {name for name, stage in dvc["stages"].items() if "foreach" in stage}
    assert foreach == {*STAGES, *STUDIES, "monitor"}
    own = set(dvc["stages"]) - foreach  # a project's own stages (literature's analyses): <project>-<step>
    assert all(name.split("-")[0] in PROJECTS for name in own), sorted(own)


def pipeline_imports(tree: ast.AST) -> set[str]:
    """pipelines.* modules imported anywhere in `tree` (as module paths; a package import as its __init__)."""
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipelines.")
    }


def module_file(repo_root: Path, module: str) -> Path:
    path = repo_root / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_a_project_stage_depends_on_the_code_it_runs_and_every_component_it_reaches(repo_root):
    """literature-corpus and -analysis run `python -m pipelines.literature.analysis`: every pipelines module it
    reaches (imports, transitively) lies inside a code dep, and so does every component those reach."""
    dvc = load(repo_root, "dvc.yaml")
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            continue
        assert name.split("-")[0] in PROJECTS, name
        deps = [d for d in stage["deps"] if d.startswith(("pipelines/", "components/"))]
        entry = stage["cmd"].split("python -m ", 1)[1].split()[0]  # e.g. pipelines.literature.analysis
        seen, todo, components = set(), [f"{entry}.__main__"], set()
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            path = module_file(repo_root, module)
            relative = path.relative_to(repo_root).as_posix()
            assert any(relative == d or relative.startswith(d + "/") for d in deps), f"{name}: {relative} is no dep"
            tree = ast.parse(path.read_text())
            todo += pipeline_imports(tree)
            components |= component_imports(tree)
        needed = {m.replace(".", "/") + ".py" for m in closure(repo_root, components)}
        assert needed <= set(deps), f"{name}: dvc.yaml lacks {sorted(needed - set(deps))}"
        listed = {d for d in deps if d.startswith("components/")}
        assert listed <= needed, f"{name}: dvc.yaml lists components it never reaches: {sorted(listed - needed)}"


def test_mlproject_has_an_entry_point_per_project(repo_root):
    entry_points = load(repo_root, "MLproject")["entry_points"]
    assert sorted(entry_points) == sorted(PROJECTS)
    for name, entry in entry_points.items():
        assert entry["command"].startswith(f"python -m pipelines {name} all ")


def test_params_yaml_has_a_section_per_project_and_nothing_else(repo_root):
    params = load(repo_root, "params.yaml")
    assert set(params) - SHARED_KEYS == set(PROJECTS)
    for profile, changes in params["profiles"].items():
        assert set(changes or {}) <= set(PROJECTS) | SHARED_KEYS, f"profiles.{profile}"
    assert set(params["ablations"]) == set(PROJECTS)  # every project has a study (ablate@<p> runs for each)


def test_retrain_workflow_offers_every_project(repo_root):
    text = (repo_root / ".github/workflows/retrain.yml").read_text()
    workflow = yaml.safe_load(text)
    options = workflow[True]["workflow_dispatch"]["inputs"]["project"]["options"]  # YAML reads `on:` as True
    assert options == ["all", *PROJECTS]
    matrix = re.findall(r"'(\[[^']*\])'", text)[-1]  # the matrix when every project is retrained
    assert yaml.safe_load(matrix) == list(PROJECTS)


def test_the_inference_log_folder_is_in_git(repo_root):
    # monitor@<p> depends on the whole folder (dvc fails on a missing dep); a fresh clone has no logs yet
    assert (repo_root / "monitoring" / "inference" / ".gitkeep").exists()


# ---- code deps --------------------------------------------------------------------------------


def component_imports(tree: ast.AST) -> set[str]:
    """components.* modules imported anywhere in `tree` (module or function level), except type-only ones."""
    found = set()
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "components":
                found |= {f"components.{alias.name}" for alias in node.names}
            elif node.module.startswith("components."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("components.")}
    return found


def closure(repo_root: Path, modules: set[str]) -> set[str]:
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module in seen or module == "components.stages":  # stages.py: only the stage's own function counts
            continue
        seen.add(module)
        path = repo_root / (module.replace(".", "/") + ".py")
        todo += component_imports(ast.parse(path.read_text()))
    return seen


def stage_modules(repo_root: Path, stage: str) -> set[str]:
    """components/ modules the stage function reaches: stages.py's own imports plus the function's."""
    tree = ast.parse((repo_root / "components/stages.py").read_text())
    module_level = component_imports(
        ast.Module(body=[n for n in tree.body if isinstance(n, ast.ImportFrom)], type_ignores=[])
    )
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == stage]
    return {"components.stages"} | closure(repo_root, {*module_level, *component_imports(function)})


@pytest.mark.parametrize("stage", [*STAGES, *STUDIES])
def test_each_stage_depends_on_every_component_it_imports(repo_root, stage):
    deps = set(load(repo_root, "dvc.yaml")["stages"][stage]["do"]["deps"])
    needed = {m.replace(".", "/") + ".py" for m in stage_modules(repo_root, stage)}
    assert "pipelines/${item}" in deps  # a change to any file of the project re-runs its stages
    assert needed <= deps, f"{stage}: dvc.yaml lacks {sorted(needed - deps)}"


def test_monitor_stage_depends_on_the_monitor_and_the_logs(repo_root):
    deps = set(load(repo_root, "dvc.yaml")["stages"]["monitor"]["do"]["deps"])
    needed = {m.replace(".", "/") + ".py" for m in closure(repo_root, {"components.monitor"})}
    assert needed <= deps, f"monitor: dvc.yaml lacks {sorted(needed - deps)}"
    # the whole log folder: a project with tasks logs under one folder per registered model (literature-intent-demo)
    assert {"pipelines/${item}", "monitoring/inference"} <= deps
