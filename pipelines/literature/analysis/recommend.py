"""The recommend step: a faiss inner-product index over unit-length MiniLM embeddings, and its offline evaluation.

Queries: free text (encoded like the papers), a paper's id (its own vector, itself excluded), or a reader's
library (several ids: the normalised mean of their vectors; the library's papers are never recommended back).

Evaluation, the same queries for every ranker (MiniLM + faiss, a TF-IDF baseline, a seeded random ranking),
because recommendation has no published benchmark on these corpora (BENCHMARKS.md):
- label-overlap precision@k: a recommended paper is relevant when it shares an informative label with the
  query paper (a MeSH descriptor for PubMed, a category for arXiv). Labels on more than `max_label_share` of
  the corpus ("Humans", "Alzheimer Disease" in an Alzheimer corpus) are left out: they would make almost
  every paper relevant. The query paper is held out of its own ranking.
- leave-one-out on simulated libraries: `library_size` papers sharing one label, one held out; the rest is
  the query; hit@k and MRR of the held-out paper (ranked among all papers outside the library).
Leakage: TF-IDF's vocabulary and idf are fitted on the indexed corpus, which is what a deployed recommender
has seen; no label is seen by either ranker, and the labels only score the rankings.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from pipelines.literature.analysis.common import (
    AnalysisError,
    available_corpora,
    corpus_vectors,
    embed,
    load_corpus,
    log_run,
    md_table,
    step_dir,
    step_output,
    texts,
    write_report,
)

log = logging.getLogger("scifolio.literature.analysis.recommend")
METHODS = ("minilm", "tfidf", "random")


def build_index(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])  # exact inner product = cosine on unit vectors
    index.add(np.ascontiguousarray(vectors, dtype="float32"))
    return index


def library_vector(vectors: np.ndarray) -> np.ndarray:
    """A library's query: the mean of its papers' unit vectors, made unit again."""
    mean = vectors.mean(axis=0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype("float32")


def informative_labels(labels: list[list[str]], max_share: float) -> list[set[str]]:
    from collections import Counter

    df = Counter(label for row in labels for label in set(row))
    limit = max_share * len(labels)
    return [{x for x in row if df[x] <= limit} for row in labels]


class Rankers:
    """The three rankers on one corpus: full score rows per query (corpora here are thousands of papers)."""

    def __init__(self, docs: list[str], vectors: np.ndarray, seed: int):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectors, self.index = vectors, build_index(vectors)
        # sublinear tf and English stop words: the usual strong lexical baseline for document similarity
        self.tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1)
        self.matrix = self.tfidf.fit_transform(docs)  # rows are l2-normalised: dot product = cosine
        self.rng = np.random.default_rng(seed)

    def scores(self, method: str, members: list[int]) -> np.ndarray:
        n = len(self.vectors)
        if method == "minilm":
            query = library_vector(self.vectors[members])[None, :]
            sims, ids = self.index.search(query, n)
            out = np.empty(n, dtype="float32")
            out[ids[0]] = sims[0]
            return out
        if method == "tfidf":
            query = np.asarray(self.matrix[members].mean(axis=0))
            return np.asarray(self.matrix @ query.ravel()).ravel()
        return self.rng.random(n)  # random: a fresh permutation per query


def ranked(scores: np.ndarray, exclude: set[int]) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    return order[~np.isin(order, list(exclude))] if exclude else order


def evaluate(frame, vectors: np.ndarray, a, seed: int = 0) -> dict:
    """Precision@k and leave-one-out hit@k / MRR of every ranker on the same seeded queries."""
    docs, k = texts(frame), a.k
    labels = informative_labels([list(x) for x in frame["labels"]], a.max_label_share)
    rankers = Rankers(docs, vectors, seed)
    rng = np.random.default_rng(seed)
    candidates = [i for i, x in enumerate(labels) if x]
    if len(candidates) < 2:
        raise AnalysisError(f"{len(candidates)} papers with an informative label: nothing to evaluate against")
    queries = rng.choice(candidates, size=min(a.n_queries, len(candidates)), replace=False).tolist()
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(labels):
        for x in row:
            by_label.setdefault(x, []).append(i)
    seeds = sorted(x for x, members in by_label.items() if len(members) >= max(a.min_label_papers, a.library_size))
    libraries = []
    for _ in range(a.n_libraries if seeds else 0):
        label = seeds[rng.integers(len(seeds))]
        members = rng.choice(by_label[label], size=a.library_size, replace=False).tolist()
        libraries.append((label, members[:-1], members[-1]))  # the last one is held out
    result = {"queries": len(queries), "libraries": len(libraries), "k": k, "papers": len(docs)}
    for method in METHODS:
        precisions = []
        for q in queries:
            top = ranked(rankers.scores(method, [q]), {q})[:k]
            precisions.append(np.mean([bool(labels[q] & labels[j]) for j in top]))
        hits, reciprocal = [], []
        for _, members, held in libraries:
            order = ranked(rankers.scores(method, members), set(members))
            rank = int(np.flatnonzero(order == held)[0]) + 1
            hits.append(rank <= k)
            reciprocal.append(1.0 / rank)
        result[method] = {
            f"precision_at_{k}": float(np.mean(precisions)),
            f"precision_at_{k}_se": float(np.std(precisions, ddof=1) / np.sqrt(len(precisions))),
            f"hit_at_{k}": float(np.mean(hits)) if hits else None,
            "mrr": float(np.mean(reciprocal)) if reciprocal else None,
        }
    # the chance level of precision@k: the share of relevant papers for the average query
    result["chance_precision"] = float(np.mean([np.mean([bool(labels[q] & x) for x in labels]) for q in queries]))
    return result


class Recommender:
    """The saved index of one corpus (data/literature/analysis/recommend/<corpus>.*), for the app and scripts."""

    def __init__(self, folder: Path, corpus: str, encoder: str = "minilm"):
        import faiss
        import pandas as pd

        folder = Path(folder)
        for suffix in (".faiss", "_papers.parquet"):
            if not (folder / f"{corpus}{suffix}").is_file():
                raise AnalysisError(f"{folder / (corpus + suffix)}: missing; run the recommend step first")
        self.index = faiss.read_index(str(folder / f"{corpus}.faiss"))
        self.papers = pd.read_parquet(folder / f"{corpus}_papers.parquet")
        self.row = {pid: i for i, pid in enumerate(self.papers["id"])}
        self.encoder = encoder

    def _table(self, sims, ids, k: int, exclude: set[int]):
        rows = [(int(i), float(s)) for s, i in zip(sims, ids, strict=True) if i >= 0 and int(i) not in exclude][:k]
        table = self.papers.iloc[[i for i, _ in rows]].copy()
        table.insert(0, "score", [round(s, 4) for _, s in rows])
        return table.reset_index(drop=True)

    def search_text(self, text: str, k: int = 10):
        if not text.strip():
            raise AnalysisError("the query is empty: type a few words or give paper ids")
        query = embed(self.encoder, [text])
        sims, ids = self.index.search(query, k)
        return self._table(sims[0], ids[0], k, set())

    def similar(self, ids: list[str], k: int = 10):
        """Papers like one id, or like a library of several (their mean vector); the library itself left out."""
        unknown = [i for i in ids if i not in self.row]
        if unknown or not ids:
            raise AnalysisError(f"unknown paper id(s) {unknown or ids}: not in the index of {len(self.row)} papers")
        members = [self.row[i] for i in ids]
        vectors = np.vstack([self.index.reconstruct(m) for m in members])
        sims, found = self.index.search(library_vector(vectors)[None, :], k + len(members))
        return self._table(sims[0], found[0], k, set(members))


def run(cfg, data_dir: Path) -> dict:
    import faiss

    a = cfg.project.analysis
    corpora = available_corpora(data_dir)
    if not corpora:
        load_corpus(data_dir, "pubmed")  # raises the error naming the missing file
    results, metrics, sections = {}, {}, []
    with step_output(data_dir, "recommend") as tmp:
        for name in corpora:
            frame = load_corpus(data_dir, name, a.max_docs, a.seed)
            start = time.perf_counter()
            vectors = corpus_vectors(data_dir, name, frame, a.encoder, a.batch_size)
            encoded = time.perf_counter()
            result = evaluate(frame, vectors, a, a.seed)
            result["seconds"] = {"encode": encoded - start, "evaluate": time.perf_counter() - encoded}
            faiss.write_index(build_index(vectors), str(tmp / f"{name}.faiss"))
            papers = frame[["id", "title", "year", "venue"]].copy()
            papers.to_parquet(tmp / f"{name}_papers.parquet", index=False)
            (tmp / f"{name}_ids.json").write_text(json.dumps(frame["id"].tolist()) + "\n")  # row -> id map
            results[name] = result
            k = a.k
            for method in METHODS:
                prefix = f"recommend/{name}" + ("" if method == "minilm" else f"/{method}")
                for key in (f"precision_at_{k}", f"hit_at_{k}", "mrr"):
                    metrics[f"{prefix}/{key}"] = result[method][key]
            rows = [{"ranker": m, **{x: v for x, v in result[m].items()}} for m in METHODS]
            sections.append(
                f"## {name}\n\n{result['papers']} papers; {result['queries']} id queries, {result['libraries']} "
                f"libraries of {a.library_size} (one held out); chance precision {result['chance_precision']:.3f}; "
                f"encoding {result['seconds']['encode']:.1f} s, evaluation {result['seconds']['evaluate']:.1f} s.\n\n"
                + md_table(rows)
            )
        note = (
            "Relevance = sharing a MeSH descriptor (PubMed) or an arXiv category with the query paper, labels on "
            f"more than {a.max_label_share:.0%} of the corpus left out. No published benchmark exists for these "
            "corpora, so MiniLM + faiss is compared with TF-IDF (sklearn) and a random ranking on the same queries."
        )
        write_report(tmp, "Recommendation", [note, *sections], results)
    log_run(cfg, "recommend", metrics, step_dir(data_dir, "recommend"))
    return results
