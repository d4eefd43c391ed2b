"""What the monitor watches for art, and the streams the replay tool sends.

One item is one generated image. Its monitored features:
- the request mix: which generator and which modality were asked for (chi-square), the DDIM steps and the
  guidance scale (K-S; defaults filled in, so "the studio's defaults" is a value like any other);
- the image statistics of the answer (pictures.image_stats: brightness, contrast, colour means and
  saturation, edge energy, dark share), compared with the reference's answers: a model that degrades
  (washed-out, noisy or collapsed samples) or traffic that asks for other things moves these first.
Images are independent items: K-S per column with a Bonferroni correction. The images themselves are
never logged (PyfuncSpec.log_omit), so nothing here reads them back.

Reference: requests shaped like the studio's (both generators, the validation tiles' class mix, default
settings, one image each, fixed seeds). Streams (`replay_requests`):
- unshifted: the same mix with fresh seeds;
- histology_burst: every request for histology from the diffusion model at strong guidance (a user batch-producing
  figure material): the label share and the colour statistics move.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from components.monitor import FeatureSpec

STREAMS = ("unshifted", "histology_burst")
STATS = ("mean", "std", "red", "green", "blue", "saturation", "edges", "dark_share")
REQUEST_NUMBERS = ("steps", "guidance")
REQUEST_LABELS = ("model", "label")


def spec(python_model) -> FeatureSpec:
    return FeatureSpec(numerical=list(REQUEST_NUMBERS), categorical=list(REQUEST_LABELS), outputs=list(STATS))


def features(python_model, request: pd.DataFrame, answer: pd.DataFrame) -> pd.DataFrame:
    """One row per generated image: the request row it came from (defaults filled) and its statistics."""
    from components.payload import check_columns

    values = check_columns(request, python_model.columns)
    rows = answer["row"].to_numpy(dtype=int)
    steps = [s or python_model.config["steps"] for s in values["steps"]]
    guidance = [python_model.config["guidance"] if g is None else g for g in values["guidance"]]
    table = pd.DataFrame(
        {
            "model": [values["model"][r] or "diffusion" for r in rows],
            "label": [values["label"][r] for r in rows],
            "steps": np.asarray([steps[r] for r in rows], dtype=np.float64),
            "guidance": np.asarray([guidance[r] for r in rows], dtype=np.float64),
        }
    )
    for column in STATS:
        table[column] = answer[column].to_numpy(dtype=np.float64)
    return table


def class_mix(paths) -> np.ndarray:
    return np.asarray(json.loads((paths.prepared / "meta.json").read_text())["class_shares"], dtype=np.float64)


def _request(model: str, label: str, seed: int, guidance: float | None = None) -> pd.DataFrame:
    row = {"model": model, "label": label, "seed": int(seed), "count": 1}
    if guidance is not None:
        row["guidance"] = guidance
    return pd.DataFrame([row])


def _studio_requests(paths, n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    from pipelines.art.images import CLASSES

    shares = class_mix(paths)
    labels = rng.choice(len(CLASSES), size=n, p=shares / shares.sum())
    models = rng.choice(["diffusion", "gan"], size=n)
    seeds = rng.integers(0, 2**31, size=n)
    return [_request(m, CLASSES[k], s) for m, k, s in zip(models, labels, seeds, strict=True)]


def reference_requests(cfg, paths, limit: int) -> list[pd.DataFrame]:
    return _studio_requests(paths, limit, np.random.default_rng(cfg.seed))


def replay_requests(cfg, paths, stream: str, n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    if stream == "unshifted":
        return _studio_requests(paths, n, rng)
    if stream == "histology_burst":
        return [_request("diffusion", "histology", s, guidance=6.0) for s in rng.integers(0, 2**31, size=n)]
    raise ValueError(f"art stream {stream!r} is not one of {STREAMS}")
