"""The bias step: (a) hedging by year and journal, (b) a spin check, (c) the share of positive conclusions by year.

(a) sentences of the corpus abstracts (spaCy sentencizer, a seeded sample of `max_sentences`) are classified
    by the hedging model (hedging.py: the registered one, else the TF-IDF baseline, trained and scored on
    BioScope here); the report says which was used and, for the baseline, its F1 beside CoNLL-2010's ~86.
(b) spin.py's rule on PubMed abstracts (arXiv abstracts seldom report p-values), with the rule's precision
    and recall on the hand-labelled sample (pipelines/literature/analysis/spin_sample.jsonl), shown in the report.
(c) per year, the share of abstracts whose conclusion is positive (spin.positive_sentence), and, where a
    primary statistic is reported, the share of significant ones.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipelines.literature.analysis import spin
from pipelines.literature.analysis.common import (
    AnalysisError,
    available_corpora,
    load_corpus,
    log_run,
    md_table,
    step_dir,
    step_output,
    write_report,
)
from pipelines.literature.analysis.corpus import split_sentences

log = logging.getLogger("scifolio.literature.analysis.bias")


def _split_one(text: str) -> list[str]:
    return split_sentences([text])[0]


def spin_precision(fixture: Path, alpha: float) -> dict:
    """The rule against the hand labels: precision and recall of the spin flag, and the sample itself."""
    if not fixture.is_file():
        raise AnalysisError(f"literature.analysis.spin_fixture: {fixture} is missing")
    rows = []
    for number, line in enumerate(fixture.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            verdict = spin.judge(item["results"], item["conclusions"], alpha, _split_one)
            rows.append(
                {
                    "id": item["id"],
                    "hand": bool(item["spin"]),
                    "rule": verdict["spin"],
                    "primary": verdict["primary"],
                    "note": item.get("note", ""),
                }
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise AnalysisError(
                f"{fixture}:{number}: not a {{id, results, conclusions, spin}} object ({err})"
            ) from None
    tp = sum(r["hand"] and r["rule"] for r in rows)
    flagged, positives = sum(r["rule"] for r in rows), sum(r["hand"] for r in rows)
    return {
        "precision": tp / flagged if flagged else None,
        "recall": tp / positives if positives else None,
        "flagged": flagged,
        "hand_spin": positives,
        "n": len(rows),
        "sample": rows,
    }


def sentences_table(frame, corpus: str, limit: int, seed: int):
    import pandas as pd

    split = split_sentences(frame["abstract"].tolist())
    rows = [
        {"corpus": corpus, "id": i, "year": y, "venue": v, "text": s}
        for i, y, v, ss in zip(frame["id"], frame["year"], frame["venue"], split, strict=True)
        for s in ss
    ]
    table = pd.DataFrame(rows)
    return table.sample(n=limit, random_state=seed) if len(table) > limit else table


def spin_table(frame, alpha: float):
    import pandas as pd

    rows = []
    for pid, year, abstract, labels in zip(
        frame["id"], frame["year"], frame["abstract"], frame.get("abstract_labels", [[]] * len(frame)), strict=True
    ):
        results, conclusions = spin.sections(abstract, list(labels), _split_one)
        rows.append({"id": pid, "year": int(year), **spin.judge(results, conclusions, alpha, _split_one)})
    return pd.DataFrame(rows)


def _plot(series: dict, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for label, s in series.items():
        ax.plot(s.index, s.values, marker="o", label=label)
    ax.set_xlabel("publication year")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg, data_dir: Path) -> dict:
    import pandas as pd

    from pipelines.literature.analysis import hedging

    a = cfg.project.analysis
    corpora = available_corpora(data_dir)
    if not corpora:
        load_corpus(data_dir, "pubmed")  # raises the error naming the missing file
    frames = {n: load_corpus(data_dir, n) for n in corpora}
    model, why = hedging.load_registered(a.hedging_model)
    summary: dict = {"hedging": {}, "spin": {}, "positive": {}}
    metrics: dict = {}
    if model is None:
        sentences = hedging.read_bioscope_sentences(a.bioscope, data_dir, cfg.seed)
        model, scores = hedging.train_baseline(sentences, a.test_fraction, a.seed)
        summary["hedging"]["classifier"] = f"TF-IDF + logistic regression baseline on BioScope ({why})"
        summary["hedging"]["bioscope"] = scores
        metrics["bias/hedging_f1"] = scores["f1"]
    else:
        summary["hedging"]["classifier"] = f"registered model {a.hedging_model}"
    by_year, by_venue = {}, []
    for name, frame in frames.items():
        table = sentences_table(frame, name, a.max_sentences, a.seed)
        predicted = model.predict(pd.DataFrame({"text": table["text"].tolist()}))
        table["uncertain"] = (predicted["label"] == "uncertain").to_numpy()
        counts = table.groupby("year")["uncertain"].agg(["mean", "size"])
        by_year[name] = counts[counts["size"] >= a.min_year_docs]["mean"]
        venues = table.groupby("venue")["uncertain"].agg(["mean", "size"]).sort_values("size", ascending=False)
        by_venue += [
            {"corpus": name, "venue": v, "sentences": int(r["size"]), "uncertain_share": float(r["mean"])}
            for v, r in venues.head(10).iterrows()
        ]
        summary["hedging"][name] = {"sentences": len(table), "uncertain_share": float(table["uncertain"].mean())}
        metrics[f"bias/{name}/hedging_share"] = float(table["uncertain"].mean())
    fixture = spin_precision(Path(a.spin_fixture), a.alpha)
    summary["spin"]["fixture"] = fixture
    metrics |= {"spin/precision": fixture["precision"], "spin/recall": fixture["recall"]}
    positive_by_year, significant_by_year = {}, {}
    for name, frame in frames.items():
        verdicts = spin_table(frame, a.alpha)
        with_stat = verdicts[verdicts["significant"].notna()]
        summary["spin"][name] = {
            "abstracts": len(verdicts),
            "with_primary_statistic": len(with_stat),
            "flagged": int(verdicts["spin"].sum()),
            "flagged_share_of_with_statistic": float(with_stat["spin"].mean()) if len(with_stat) else None,
        }
        summary["positive"][name] = {"positive_share": float(verdicts["positive_conclusion"].mean())}
        metrics[f"spin/{name}/flagged_share"] = summary["spin"][name]["flagged_share_of_with_statistic"]
        metrics[f"bias/{name}/positive_share"] = summary["positive"][name]["positive_share"]
        years = verdicts.groupby("year").agg(n=("id", "size"), positive=("positive_conclusion", "mean"))
        positive_by_year[name] = years[years["n"] >= a.min_year_docs]["positive"]
        stats = with_stat.assign(significant=with_stat["significant"].astype(bool)).groupby("year")
        sig = stats.agg(n=("id", "size"), share=("significant", "mean"))
        significant_by_year[f"{name}: significant primary"] = sig[sig["n"] >= a.min_year_docs]["share"]
    with step_output(data_dir, "bias") as tmp:
        _plot(dict(by_year), "share of uncertain (hedged) sentences", tmp / "hedging_by_year.png")
        _plot(
            {**{f"{n}: positive conclusion": s for n, s in positive_by_year.items()}, **significant_by_year},
            "share of abstracts",
            tmp / "positive_by_year.png",
        )
        pd.DataFrame(by_venue).to_csv(tmp / "hedging_by_venue.csv", index=False)
        h = summary["hedging"]
        hedging_text = f"Classifier: {h['classifier']}."
        if "bioscope" in h:
            s = h["bioscope"]
            hedging_text += (
                f"\n\nBioScope held-out split grouped by document ({s['test_documents']} documents, "
                f"{s['test_sentences']} sentences): F1(uncertain) {s['f1']:.1f} (precision {s['precision']:.1f}, "
                f"recall {s['recall']:.1f}); CoNLL-2010 task 1's best biological system: about "
                f"{hedging.CONLL2010_F1:.0f} F1 (Farkas et al. 2010, on its own test set: not the same split)."
            )
        sample = [{k: r[k] for k in ("id", "hand", "rule", "primary", "note")} for r in fixture["sample"]]
        sections = [
            "## (a) Hedging\n\n"
            + hedging_text
            + "\n\n"
            + md_table([{"corpus": n, **v} for n, v in h.items() if isinstance(v, dict) and "sentences" in v])
            + "\n\nBy venue (the 10 with most sentences):\n\n"
            + md_table(by_venue)
            + "\n\n![hedging_by_year.png](hedging_by_year.png)",
            "## (b) Spin\n\nA positive conclusion over a non-significant primary result (rules in spin.py). "
            f"On the hand-labelled sample ({fixture['n']} snippets, {fixture['hand_spin']} with spin by hand): "
            f"precision {fixture['precision']:.2f}, recall {fixture['recall']:.2f}.\n\n"
            + md_table(sample)
            + "\n\n"
            + md_table([{"corpus": n, **v} for n, v in summary["spin"].items() if n != "fixture"]),
            "## (c) Positive conclusions over years\n\n"
            + md_table([{"corpus": n, **v} for n, v in summary["positive"].items()])
            + "\n\n![positive_by_year.png](positive_by_year.png)",
        ]
        write_report(tmp, "Hedging, spin and positive results", sections, summary)
    log_run(cfg, "bias", metrics, step_dir(data_dir, "bias"))
    return {k: v for k, v in summary.items() if k != "spin"} | {
        "spin": {
            n: v if n != "fixture" else {x: v[x] for x in ("precision", "recall", "n")}
            for n, v in summary["spin"].items()
        }
    }
