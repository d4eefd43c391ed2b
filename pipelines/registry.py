"""Project name -> plug-in. Lazy: the CLI imports a project only when it runs one of its stages."""

from __future__ import annotations

import importlib

PROJECTS = {
    "energy": "pipelines.energy.project:ENERGY",
    "medical": "pipelines.medical.project:MEDICAL",
    "literature": "pipelines.literature.project:LITERATURE",
    "protein": "pipelines.protein.project:PROTEIN",
    "art": "pipelines.art.project:ART",
}


def get_project(name: str):
    try:
        target = PROJECTS[name]
    except KeyError:
        raise SystemExit(f"unknown project {name!r}; projects: {', '.join(PROJECTS)}") from None
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)
