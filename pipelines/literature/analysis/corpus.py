"""The corpus step: data/literature/corpus/{pubmed,arxiv}.parquet, one row per record, validated.

PubMed comes from E-utilities (a resumable pull, sources/eutils.py; the base URL may be a loopback mirror),
from a folder of efetch pages or baseline/update files (sources/pubmed.py), or from the demo writer; arXiv
from a snapshot, saved OAI pages or the Atom API (sources/arxiv.py), or the demo writer. Demo files are
written in the real formats and read back through the same readers.

Each table is checked with Great Expectations (components/validate.py): unique ids, plausible years, the
share of records with abstracts (and, for PubMed, with MeSH terms). Duplicate ids are first reported by
file and record, which GX's row numbers alone cannot say. Any failure raises, and nothing is written: both
tables and the validation report are swapped in together (components.io.atomic_dir).

Sentences and tokens come from spaCy's blank English pipeline with the rule-based `sentencizer`: no trained
spaCy or scispaCy model is on PyPI (they install from GitHub releases, which this platform cannot reach), so
no parser-based sentence boundaries; the sentencizer splits on . ! ? and keeps "p = 0.05" whole.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from pipelines.literature.analysis.common import AnalysisError, corpus_dir

log = logging.getLogger("scifolio.literature.analysis.corpus")

PMID = r"^\d{1,9}$"
ARXIV_ID = r"^(?:\d{4}\.\d{4,5}|[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7})$"  # 1801.05533, math/0502287, math.GT/0309136
PULL_DIR = "pubmed_pull"  # the resumable E-utilities pull, beside (not inside) the corpus folder


# ---- spaCy ------------------------------------------------------------------------------------------

_NLP = None


def nlp():
    """spaCy's blank English tokenizer + rule-based sentencizer (no trained model is installable here)."""
    global _NLP
    if _NLP is None:
        import spacy

        _NLP = spacy.blank("en")
        _NLP.add_pipe("sentencizer")
    return _NLP


def split_sentences(texts: list[str], batch_size: int = 256) -> list[list[str]]:
    """Sentences of each text; a newline (PubMed's boundary between abstract sections) always ends one."""
    pipe = nlp()
    pieces, owner = [], []
    for i, text in enumerate(texts):
        for part in (text or "").split("\n"):
            if part.strip():
                pieces.append(part)
                owner.append(i)
    out: list[list[str]] = [[] for _ in texts]
    for i, doc in zip(owner, pipe.pipe(pieces, batch_size=batch_size), strict=True):
        out[i].extend(s.text.strip() for s in doc.sents if s.text.strip())
    return out


def count_tokens(texts: list[str]) -> list[int]:
    return [sum(1 for t in doc if not t.is_space) for doc in nlp().tokenizer.pipe(texts, batch_size=256)]


# ---- reading the sources ------------------------------------------------------------------------------


def _pubmed_rows(records, where: str) -> list[dict]:
    rows = []
    for number, r in enumerate(records, start=1):
        rows.append(
            {
                "id": r.pmid,
                "title": r.title,
                "abstract": r.abstract,
                "abstract_labels": [(lab or cat or "") for lab, cat, _ in r.abstract_parts],
                "year": r.year,
                "journal": r.journal,
                "venue": r.journal,
                "mesh": list(r.mesh),
                "labels": list(r.mesh),
                "publication_types": list(r.publication_types),
                "language": r.languages[0] if r.languages else None,
                "has_abstract": bool(r.abstract.strip()),
                "has_mesh": bool(r.mesh),
                "source": f"{where}#{number}",
            }
        )
    return rows


def _pubmed_files(folder: Path):
    """(file, records) per file: baseline/update files merged in NLM's order, efetch pages in name order."""
    from pipelines.literature.sources.pubmed import UPDATE_FILE, iter_articles, read_files

    if not folder.is_dir():
        raise AnalysisError(f"literature.corpus.pubmed_dir: {folder} is not a folder")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith((".xml", ".xml.gz")))
    if not names:
        raise AnalysisError(f"{folder}: no PubMed XML files (*.xml, *.xml.gz)")
    updates = [n for n in names if UPDATE_FILE.fullmatch(n)]
    if updates:  # replacements and DeleteCitation applied across files (md5 checked where a sibling exists)
        order = sorted(updates, key=lambda n: tuple(int(g) for g in UPDATE_FILE.fullmatch(n).groups()))
        yield str(folder), read_files([folder / n for n in order], require_md5=False)
        return
    key = lambda n: (int(m.group()) if (m := re.search(r"\d+", n)) else -1, n)  # noqa: E731  (page 2 before 10)
    for name in sorted(names, key=key):
        yield str(folder / name), iter_articles(folder / name)


def read_pubmed(cfg, data_dir: Path) -> tuple[list[dict], str]:
    """The PubMed rows and where they came from (for messages), per literature.corpus.pubmed."""
    c = cfg.project.corpus
    if c.pubmed == "none":
        return [], ""
    if c.pubmed == "demo":
        from pipelines.literature.analysis.demo import write_demo_pubmed

        folder = Path(data_dir) / "literature" / "corpus_demo" / "pubmed"
        write_demo_pubmed(folder, c.demo_pubmed, cfg.seed)
        sources = list(_pubmed_files(folder))
    elif c.pubmed == "files":
        folder = Path(c.pubmed_dir)
        sources = list(_pubmed_files(folder))
    else:
        from pipelines.literature.sources.eutils import Eutils, pull, read_pull

        email = c.email or os.environ.get("NCBI_EMAIL", "")
        if "@" not in email:
            raise AnalysisError(
                "literature.corpus.email: E-utilities need a contact email (NCBI's rule); set it or NCBI_EMAIL"
            )
        folder = Path(data_dir) / "literature" / PULL_DIR
        result = pull(
            folder,
            c.query,
            eutils=Eutils(email=email, base_url=c.eutils_url),
            mindate=c.mindate or None,
            maxdate=c.maxdate or None,
            max_records=c.max_records,
            retmax=min(c.eutils_batch, c.max_records),
        )
        log.info("PubMed %r: %d match, %d records pulled into %s", c.query, result.count, result.records, folder)
        sources = [(str(folder), read_pull(folder))]
    rows = []
    for where, records in sources:
        rows += _pubmed_rows(records, where)
    return rows, str(folder)


def _arxiv_rows(records, where: str, limit: int) -> list[dict]:
    rows = []
    for number, r in enumerate(records, start=1):
        if len(rows) >= limit:
            break
        rows.append(
            {
                "id": r.arxiv_id,
                "title": r.title,
                "abstract": r.abstract,
                "year": int(r.published[:4]) if r.published else None,
                "published": r.published,
                "categories": list(r.categories),
                "venue": r.primary_category,
                "labels": list(r.categories),
                "language": None,  # arXiv records carry no language
                "has_abstract": bool((r.abstract or "").strip()),
                "source": f"{where}#{number}",
            }
        )
    return rows


def read_arxiv(cfg, data_dir: Path) -> tuple[list[dict], str]:
    from pipelines.literature.sources import arxiv

    c = cfg.project.corpus
    if c.arxiv == "none":
        return [], ""
    if c.arxiv == "demo":
        from pipelines.literature.analysis.demo import write_demo_arxiv

        path = write_demo_arxiv(Path(data_dir) / "literature" / "corpus_demo" / "arxiv.jsonl", c.demo_arxiv, cfg.seed)
        records = arxiv.read_snapshot(path)
    elif c.arxiv == "snapshot":
        path = Path(c.arxiv_path)
        records = arxiv.read_snapshot(path)
    elif c.arxiv == "oai":
        path = Path(c.arxiv_path)
        records = arxiv.read_oai(path)
    else:
        path = c.arxiv_api_url
        records = arxiv.search(c.arxiv_query, max_results=c.arxiv_max, base_url=c.arxiv_api_url)
    try:
        return _arxiv_rows(records, str(path), c.arxiv_max), str(path)
    except FileNotFoundError as err:
        raise AnalysisError(f"literature.corpus.arxiv_path: {err}") from None


# ---- validation -----------------------------------------------------------------------------------


def _duplicates(rows: list[dict], what: str, where: str) -> None:
    """Duplicate ids named with the files and records they sit in (GX would give row numbers only)."""
    seen: dict[str, str] = {}
    dups = []
    for row in rows:
        if row["id"] in seen:
            dups.append(f"{what} {row['id']} in {seen[row['id']]} and again in {row['source']}")
        else:
            seen[row["id"]] = row["source"]
    if dups:
        more = f" (and {len(dups) - 3} more)" if len(dups) > 3 else ""
        raise AnalysisError(f"{where}: duplicate {what}s, each record must appear once: {'; '.join(dups[:3])}{more}")


def checks(frames: dict[str, Any], sources: dict[str, str], c) -> list:
    """One GX suite per table: ids unique and well-formed, years plausible, shares with abstracts / MeSH."""
    import great_expectations as gx

    from components.validate import Check

    out = []
    for name, frame in frames.items():
        gx_frame = frame[["id", "year", "has_abstract"] + (["has_mesh"] if name == "pubmed" else [])].copy()
        gx_frame["has_abstract"] = gx_frame["has_abstract"].astype(int)  # GX takes the mean of numbers
        if name == "pubmed":
            gx_frame["has_mesh"] = gx_frame["has_mesh"].astype(int)
        gx_frame.index = range(1, len(gx_frame) + 1)  # the record's number in read order
        e = gx.expectations
        expectations = [
            e.ExpectTableRowCountToBeBetween(min_value=1),
            e.ExpectColumnValuesToNotBeNull(column="id"),
            e.ExpectColumnValuesToBeUnique(column="id"),
            e.ExpectColumnValuesToMatchRegex(column="id", regex=PMID if name == "pubmed" else ARXIV_ID),
            e.ExpectColumnValuesToNotBeNull(column="year", mostly=0.95),  # a few PubDates carry no year
            e.ExpectColumnValuesToBeBetween(column="year", min_value=c.min_year, max_value=c.max_year),
            e.ExpectColumnMeanToBeBetween(column="has_abstract", min_value=c.min_abstract_share, max_value=1.0),
        ]
        if name == "pubmed":
            expectations.append(e.ExpectColumnMeanToBeBetween(column="has_mesh", min_value=c.min_mesh_share))
        suite = gx.ExpectationSuite(name=f"literature-corpus-{name}", expectations=expectations)
        out.append(Check(f"{name} corpus", Path(sources[name]), gx_frame, suite))
    return out


def build_corpus(cfg, data_dir: Path) -> dict:
    """Read, validate and write the corpus tables; return the summary (counts per table)."""
    import pandas as pd

    from components.io import atomic_dir
    from components.validate import ValidationFailed, run_checks, write_report

    frames, sources, summary = {}, {}, {}
    for name, reader in (("pubmed", read_pubmed), ("arxiv", read_arxiv)):
        rows, where = reader(cfg, data_dir)
        if not where:
            continue
        if not rows:
            raise AnalysisError(f"{where}: no {name} records read: an empty corpus cannot be analysed")
        _duplicates(rows, "PMID" if name == "pubmed" else "arXiv id", where)
        frame = pd.DataFrame(rows)
        full = (frame["title"].fillna("") + "\n" + frame["abstract"].fillna("")).tolist()
        frame["n_sentences"] = [len(s) for s in split_sentences(full)]
        frame["n_tokens"] = count_tokens([t.replace("\n", " ") for t in full])
        frame["year"] = frame["year"].astype("Int64")
        frames[name], sources[name] = frame, where
    if not frames:
        raise AnalysisError("literature.corpus: pubmed and arxiv are both 'none': no corpus to build")
    result = run_checks(checks(frames, sources, cfg.project.corpus))
    if not result.success:
        raise ValidationFailed(result)
    with atomic_dir(corpus_dir(data_dir)) as tmp:
        for name, frame in frames.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
            summary[name] = {
                "records": len(frame),
                "with_abstract": int(frame["has_abstract"].sum()),
                "with_labels": int(frame["labels"].map(len).gt(0).sum()),
                "years": [int(frame["year"].min()), int(frame["year"].max())],
                "sentences": int(frame["n_sentences"].sum()),
                "tokens": int(frame["n_tokens"].sum()),
                "source": sources[name],
            }
        write_report(result, tmp)
    return summary


def run(cfg, data_dir: Path) -> dict:
    from pipelines.literature.analysis.common import log_run, step_dir

    summary = build_corpus(cfg, data_dir)
    metrics = {}
    for name, s in summary.items():
        metrics |= {f"corpus/{name}/records": s["records"], f"corpus/{name}/with_abstract": s["with_abstract"]}
        metrics[f"corpus/{name}/with_labels"] = s["with_labels"]
    from components.io import atomic_dir

    with atomic_dir(step_dir(data_dir, "corpus")) as tmp:
        from pipelines.literature.analysis.common import md_table, write_report

        rows = [
            {"corpus": k, **{x: y for x, y in v.items() if x != "years"}, "years": "{}-{}".format(*v["years"])}
            for k, v in summary.items()
        ]
        write_report(tmp, "Corpus", [md_table(rows)], summary)
    log_run(cfg, "corpus", metrics, step_dir(data_dir, "corpus"))
    return summary
