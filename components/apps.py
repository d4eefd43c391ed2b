"""What the interactive apps share: the model a page serves, from a registered URI or a trained folder.

A page takes a model URI (default: the profile's champion, `models:/<project>[-demo]@champion`) or a local
folder holding what the `train` stage writes (data/<project>/model), and calls the pyfunc's own `predict`,
so the payload checks are the server's. A missing or half-written model is a `ModelMissing` whose message
says which stage writes or registers one, never a traceback in the page.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ModelMissing(Exception):
    """No model at the URI; the message says which stage writes or registers one."""


def default_model_uri(project: str, cfg) -> str:
    from components.config import model_name

    return f"models:/{model_name(project, cfg.profile)}@champion"


def load_model(uri: str, cfg, project: str, files: tuple[str, ...], from_dir: Callable[[Path], Any]):
    """The python model at `uri`: a local model folder (`from_dir`, no MLflow) or an MLflow model URI (unwrapped,
    so the payload checks raise PayloadError, whose message the page shows, not MLflow's wrapper)."""
    folder = Path(uri).expanduser()
    local = Path("data") / project / "model"  # Paths.of(project).model, relative to the repo root
    if folder.is_dir() and not (folder / "MLmodel").is_file():  # what `train` writes
        missing = [name for name in files if not (folder / name).is_file()]
        if missing:
            raise ModelMissing(
                f"`{folder}` has no {' or '.join(missing)}: run `python -m pipelines {project} train` "
                f"(it writes `{local}`), or give a registered model URI."
            )
        return from_dir(folder)
    import mlflow

    profile = getattr(cfg, "profile", "demo")
    # models:/ resolves against the project's store, as the stages and the server see it
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri)
    try:
        return mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except Exception as err:  # not registered, no champion, bad URI or path: say so and what to run
        raise ModelMissing(
            f"No model at `{uri}`: {str(err).splitlines()[0][:300]}. Train and register one "
            f"(`python -m pipelines {project} all --profile {profile}`; its `register` stage sets @champion), "
            f"or give a trained model folder such as `{local}` (the `train` stage writes it)."
        ) from err
