"""What the monitor watches for medical, and the streams the replay tool sends.

One item is one image row of a request. Its monitored features: the image as it arrived (mean
intensity, contrast as standard deviation and 5th/95th percentiles, height, width), the metadata
(age, sex, view), the model's penultimate-layer embedding and its 14 probabilities.

Embeddings wider than EMBEDDING_DIMS are reduced by a fixed Gaussian random projection (seeded, the
same for reference and traffic): Rabanser et al. 2019 ("Failing loudly") found such untrained
projections as good as learned reductions for detecting shift, and the domain classifier behind
Evidently's embedding test stays fast.

Reference: the validation images. Streams (`replay_requests`), all drawn from the held-back test images
without replacement (the test set is one fixed sample of patients, so replays are not independent
draws from the population: a chance difference between the validation and test patients, e.g. in
their sex ratio, is seen by every replay):
- unshifted: test images as they are;
- intensity: the same images 35% darker (an exposure / scanner-processing change);
- age:       only patients aged 60 or more (a different age mix);
- view:      only AP views (bedside imaging instead of the PA mix).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd

from components.monitor import FeatureSpec, even_sample

EMBEDDING_DIMS = 32  # the random projection's output width
STREAMS = ("unshifted", "intensity", "age", "view")
IMAGE_STATS = ("image_mean", "image_std", "image_p05", "image_p95", "height", "width")


def spec(python_model) -> FeatureSpec:
    return FeatureSpec(
        numerical=[*IMAGE_STATS, "age"],
        categorical=["sex", "view"],
        outputs=[f"p:{f}" for f in python_model.config["findings"]],
        embeddings={"penultimate": [f"emb_{i}" for i in range(EMBEDDING_DIMS)]},
    )


def features(python_model, request: pd.DataFrame, answer: pd.DataFrame) -> pd.DataFrame:
    """One row per image: what arrived, what the network made of it, what it answered."""
    from pipelines.medical.sources.nih import decode_image

    images, texts = python_model.read_request(request)
    rows = []
    for data in images:
        a = decode_image(data, "request image").astype(np.float64)
        p05, p95 = np.percentile(a, [5, 95])
        rows.append(
            {
                "image_mean": a.mean(),
                "image_std": a.std(),
                "image_p05": p05,
                "image_p95": p95,
                "height": a.shape[0],
                "width": a.shape[1],
            }
        )
    table = pd.DataFrame(rows)
    table["age"] = pd.to_numeric(request.get("age", pd.Series([np.nan] * len(request))), errors="coerce").to_numpy()
    for column in ("sex", "view"):
        values = request[column] if column in request else pd.Series([None] * len(request))
        table[column] = values.fillna("unknown").astype(str).str.upper().to_numpy()
    emb = embeddings(python_model, images, texts)
    table[[f"emb_{i}" for i in range(emb.shape[1])]] = emb
    for finding in python_model.config["findings"]:
        table[f"p:{finding}"] = answer[finding].to_numpy(dtype=np.float64)
    return table


def embeddings(python_model, images: list[bytes], texts: list[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        x, tokens = python_model.tensors(images, texts)
        emb = python_model.net.forward_features(x, tokens).float().numpy()
    if emb.shape[1] > EMBEDDING_DIMS:
        projection = np.random.default_rng(0).normal(0, 1 / np.sqrt(EMBEDDING_DIMS), (emb.shape[1], EMBEDDING_DIMS))
        emb = emb @ projection
    elif emb.shape[1] < EMBEDDING_DIMS:
        emb = np.pad(emb, ((0, 0), (0, EMBEDDING_DIMS - emb.shape[1])))
    return emb


# ---- images as requests -----------------------------------------------------------------------


def _entries(prepared_dir: Path, split: str) -> pd.DataFrame:
    entries = pd.read_parquet(prepared_dir / "entries.parquet")
    return entries[entries["split"] == split].reset_index(drop=True)


def _requests(paths, rows: pd.DataFrame, darken: float = 0.0) -> list[pd.DataFrame]:
    from pipelines.medical.sources.shards import open_images

    store = open_images(paths.raw / "images")  # validated: the manifest checked these shards
    out = []
    for row in rows.itertuples():
        data = store.read(row.image)
        if darken:
            data = _darker(data, darken)
        out.append(
            pd.DataFrame(
                [
                    {
                        "image": base64.b64encode(data).decode("ascii"),
                        "age": float(row.age),
                        "sex": row.sex,
                        "view": row.view,
                    }
                ]
            )
        )
    return out


def _darker(data: bytes, fraction: float) -> bytes:
    from PIL import Image

    from pipelines.medical.sources.nih import decode_image

    a = decode_image(data, "replay image").astype(np.float64) * (1 - fraction)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def reference_requests(cfg, paths, limit: int) -> list[pd.DataFrame]:
    val = _entries(paths.prepared, "val")
    return _requests(paths, val.iloc[even_sample(list(range(len(val))), limit)])


def replay_requests(cfg, paths, stream: str, n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Up to `n` one-image requests of a stream, distinct test images (fewer when fewer qualify)."""
    test = _entries(paths.prepared, "test")
    if stream == "age":
        test = test[test["age"] >= 60]
    elif stream == "view":
        test = test[test["view"].str.upper() == "AP"]
    elif stream not in ("unshifted", "intensity"):
        raise ValueError(f"medical stream {stream!r} is not one of {STREAMS}")
    if len(test) < 5:
        raise ValueError(f"medical stream {stream!r}: only {len(test)} test image(s) qualify; need at least 5")
    # without replacement: a duplicate would sit on both sides of the embedding test's domain classifier
    rows = test.iloc[rng.choice(len(test), size=min(n, len(test)), replace=False)]
    return _requests(paths, rows, darken=0.35 if stream == "intensity" else 0.0)
