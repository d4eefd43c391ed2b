"""The trends step: topics over publication years, with BERTopic on MiniLM embeddings.

BERTopic (UMAP -> HDBSCAN -> class-based TF-IDF words per cluster) is given precomputed embeddings from the
local all-MiniLM-L6-v2 (common.embed), so it never loads a model itself. Then, per year with at least
`min_year_docs` papers, each topic's share of that year's papers that have a topic (HDBSCAN's outliers,
topic -1, are left out of the denominator: they are "no topic", not a topic); a topic's trend is the
least-squares slope of its share over the years (scipy.stats.linregress, with its p-value: with 10-60
yearly points a slope is a description, not a forecast).

Fallback, documented because it changes the method: HDBSCAN finds no cluster, or a single one, in a tiny
corpus (the demo, a capped run) or when min_topic_size is too large; the step then fits BERTopic again with
`hdbscan_model=KMeans(fallback_topics)` (BERTopic accepts any clusterer with fit/labels_), which assigns
every paper a topic. The report and the MLflow run say which clusterer produced the topics.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipelines.literature.analysis.common import (
    available_corpora,
    corpus_vectors,
    embed,
    load_corpus,
    log_run,
    md_table,
    step_output,
    texts,
    write_report,
)

log = logging.getLogger("scifolio.literature.analysis.trends")


def _reducer(kind: str, n: int, seed: int):
    """BERTopic's dimension reduction: UMAP (its default, keeps local structure) or PCA.

    UMAP's numba kernels are compiled in every fresh process (20-30 s on 2 cores), more than the whole
    fit on the demo's few hundred papers, where PCA to 5 dimensions separates the planted topics as well;
    the full profile uses UMAP.
    """
    if kind == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=min(5, n - 1), random_state=seed)
    from umap import UMAP

    return UMAP(n_neighbors=min(15, max(2, n - 1)), n_components=5, min_dist=0.0, metric="cosine", random_state=seed)


def _bertopic(docs, embeddings, cluster_model, seed: int, reducer: str = "umap"):
    from bertopic import BERTopic
    from bertopic.vectorizers import ClassTfidfTransformer
    from sklearn.feature_extraction.text import CountVectorizer

    umap_model = _reducer(reducer, len(docs), seed)
    # English stop words out; no min_df: BERTopic fits the vectorizer on one joined document per topic, so
    # min_df=2 would keep only words shared by two topics and drop exactly the words that tell them apart
    vectorizer = CountVectorizer(stop_words="english")
    # reduce_frequent_words: words frequent in every topic ("study", "patients") stop labelling all of them
    ctfidf = ClassTfidfTransformer(reduce_frequent_words=True)
    model = BERTopic(
        umap_model=umap_model,
        hdbscan_model=cluster_model,
        vectorizer_model=vectorizer,
        ctfidf_model=ctfidf,
        top_n_words=8,
    )
    topics, _ = model.fit_transform(docs, embeddings=embeddings)
    return model, list(topics)


def fit_topics(docs: list[str], embeddings, a, seed: int = 0) -> dict:
    """Topics of `docs`: {topics: per doc, words: topic -> top words, clusterer: 'hdbscan' | 'kmeans'}."""
    from hdbscan import HDBSCAN
    from sklearn.cluster import KMeans

    hdbscan = HDBSCAN(
        min_cluster_size=a.min_topic_size, metric="euclidean", cluster_selection_method="eom", prediction_data=True
    )
    model, topics = _bertopic(docs, embeddings, hdbscan, seed, a.reducer)
    clusterer = "hdbscan"
    if len({t for t in topics if t != -1}) < 2:  # the fallback of the module docstring
        log.warning(
            "HDBSCAN found %d topic(s) in %d papers; refitting with KMeans(%d)",
            len({t for t in topics if t != -1}),
            len(docs),
            a.fallback_topics,
        )
        kmeans = KMeans(n_clusters=min(a.fallback_topics, len(docs) - 1), n_init=10, random_state=seed)
        model, topics = _bertopic(docs, embeddings, kmeans, seed, a.reducer)
        clusterer = "kmeans"
    words = {int(t): [w for w, _ in model.get_topic(t)] for t in sorted(set(topics)) if t != -1}
    return {"topics": [int(t) for t in topics], "words": words, "clusterer": clusterer}


def yearly_shares(years: list[int], topics: list[int], min_year_docs: int):
    """A years x topics frame of shares (rows sum to 1 over the topics), years with enough papers only."""
    import pandas as pd

    frame = pd.DataFrame({"year": years, "topic": topics})
    frame = frame[frame["topic"] != -1]
    counts = frame.groupby(["year", "topic"]).size().unstack(fill_value=0)
    counts = counts[counts.sum(axis=1) >= min_year_docs]
    return counts.div(counts.sum(axis=1), axis=0)


def slopes(shares) -> list[dict]:
    """Per topic: the slope of its share per year, its p-value and its first/last shares; steepest rise first."""
    from scipy.stats import linregress

    out = []
    if len(shares) < 3:  # a slope through two points says nothing
        return out
    years = shares.index.to_numpy(dtype=float)
    for topic in shares.columns:
        fit = linregress(years, shares[topic].to_numpy(dtype=float))
        out.append(
            {
                "topic": int(topic),
                "slope_per_year": float(fit.slope),
                "p_value": float(fit.pvalue),
                "share_first": float(shares[topic].iloc[0]),
                "share_last": float(shares[topic].iloc[-1]),
            }
        )
    return sorted(out, key=lambda r: -r["slope_per_year"])


def _plots(shares, trend_rows: list[dict], labels: dict[int, str], folder: Path, name: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(9, 5))
    shown = [r["topic"] for r in trend_rows[:3]] + [r["topic"] for r in trend_rows[-3:]]
    for topic in dict.fromkeys(shown):
        ax.plot(shares.index, shares[topic], marker="o", label=labels[topic][:40])
    ax.set_xlabel("publication year")
    ax.set_ylabel("share of the year's papers")
    ax.set_title(f"{name}: the most rising and falling topics")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / f"{name}_topic_shares.png", dpi=110)
    files.append(f"{name}_topic_shares.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, max(3, 0.35 * len(trend_rows))))
    ax.barh([labels[r["topic"]][:40] for r in trend_rows], [r["slope_per_year"] for r in trend_rows])
    ax.invert_yaxis()
    ax.set_xlabel("slope of share per year")
    ax.set_title(f"{name}: topic trends")
    fig.tight_layout()
    fig.savefig(folder / f"{name}_topic_slopes.png", dpi=110)
    files.append(f"{name}_topic_slopes.png")
    plt.close(fig)
    return files


def analyse(frame, a, seed: int = 0, embeddings=None) -> dict:
    """Topics and trends of one corpus table; plain data (the plots are drawn by `run`)."""
    start = time.perf_counter()
    docs = texts(frame)
    if embeddings is None:
        embeddings = embed(a.encoder, docs, a.batch_size)
    encoded = time.perf_counter()
    fit = fit_topics(docs, embeddings, a, seed)
    years = frame["year"].astype(int).tolist()
    shares = yearly_shares(years, fit["topics"], a.min_year_docs)
    trend_rows = slopes(shares)
    labels = {t: f"{t}: " + " ".join(w[:4]) for t, w in fit["words"].items()}
    counts = {t: fit["topics"].count(t) for t in fit["words"]}
    return {
        "papers": len(docs),
        "topics_found": len(fit["words"]),
        "clusterer": fit["clusterer"],
        "outlier_share": fit["topics"].count(-1) / len(docs),
        "years": [int(shares.index.min()), int(shares.index.max())] if len(shares) else [],
        "topics": [{"topic": t, "papers": counts[t], "words": " ".join(w)} for t, w in fit["words"].items()],
        "rising": [r for r in trend_rows if r["slope_per_year"] > 0][: a.top_trends],
        "falling": [r for r in reversed(trend_rows) if r["slope_per_year"] < 0][: a.top_trends],
        "trends": trend_rows,
        "assignments": {"id": frame["id"].tolist(), "year": years, "topic": fit["topics"]},
        "seconds": {"encode": encoded - start, "topics": time.perf_counter() - encoded},
        "_shares": shares,
        "_labels": labels,
    }


def _named(labels: dict[int, str]):
    """Trend rows with the topic's label in place of its number, for the report's tables."""

    def named(rows: list[dict]) -> list[dict]:
        return [{"topic": labels[r["topic"]], **{k: v for k, v in r.items() if k != "topic"}} for r in rows]

    return named


def run(cfg, data_dir: Path) -> dict:
    import pandas as pd

    a = cfg.project.analysis
    results, metrics, sections = {}, {}, []
    corpora = available_corpora(data_dir)
    if not corpora:
        load_corpus(data_dir, "pubmed")  # raises the error that names the missing file
    with step_output(data_dir, "trends") as tmp:
        for name in corpora:
            frame = load_corpus(data_dir, name, a.max_docs, a.seed)
            vectors = corpus_vectors(data_dir, name, frame, a.encoder, a.batch_size)
            result = analyse(frame, a, a.seed, embeddings=vectors)
            shares, labels = result.pop("_shares"), result.pop("_labels")
            result["figures"] = _plots(shares, result["trends"], labels, tmp, name) if result["trends"] else []
            shares.rename(columns=labels).to_csv(tmp / f"{name}_topic_shares.csv")
            pd.DataFrame(result.pop("assignments")).to_parquet(tmp / f"{name}_topics.parquet", index=False)
            results[name] = result
            metrics |= {
                f"trends/{name}/topics": result["topics_found"],
                f"trends/{name}/outlier_share": result["outlier_share"],
                f"trends/{name}/seconds": sum(result["seconds"].values()),
            }
            named = _named(labels)
            sections += [
                f"## {name}\n\n{result['papers']} papers, {result['topics_found']} topics ({result['clusterer']}; "
                f"outliers {result['outlier_share']:.1%}), years {result['years']}; encoding "
                f"{result['seconds']['encode']:.1f} s, topics {result['seconds']['topics']:.1f} s.",
                "### Topics\n\n" + md_table(result["topics"]),
                "### Rising\n\n" + md_table(named(result["rising"])),
                "### Falling\n\n" + md_table(named(result["falling"])),
                "\n".join(f"![{f}]({f})" for f in result["figures"]),
            ]
        note = (
            "Topic share = the topic's papers / the year's papers with a topic (HDBSCAN outliers left out); "
            "slope by least squares over years with at least "
            f"{a.min_year_docs} papers. No published benchmark exists for topic trends on these corpora."
        )
        write_report(tmp, "Topic trends", [note, *sections], results)
    log_run(cfg, "trends", metrics, Path(data_dir) / "literature" / "analysis" / "trends")
    return {
        n: {k: r[k] for k in ("papers", "topics_found", "clusterer", "rising", "falling")} for n, r in results.items()
    }
