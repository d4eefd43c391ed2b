"""The corpus step: demo files through the real readers, real shared files (efetch pages, also served as a
loopback E-utilities mirror, and the arXiv snapshot), Great Expectations checks, and bad input."""

from __future__ import annotations

import gzip
import http.server
import re
import threading
import urllib.parse

import pandas as pd
import pytest

from components.validate import ValidationFailed
from pipelines.literature.analysis.common import AnalysisError, corpus_dir
from pipelines.literature.analysis.corpus import build_corpus, run, split_sentences
from tests.literature.analysis_helpers import SHARED, SMALL_DEMO, make_cfg

ALZFORUM = SHARED / "pubmed_efetch_alzforum"
SNAPSHOT = SHARED / "arxiv_metadata" / "arxiv-metadata-oai-snapshot.json"


def test_demo_corpus_is_written_read_back_and_logged(tmp_path):
    import mlflow

    cfg = make_cfg(tmp_path, SMALL_DEMO)
    summary = run(cfg, tmp_path / "data")
    pubmed = pd.read_parquet(corpus_dir(tmp_path / "data") / "pubmed.parquet")
    arxiv = pd.read_parquet(corpus_dir(tmp_path / "data") / "arxiv.parquet")
    assert len(pubmed) == 120 and len(arxiv) == 80 and summary["pubmed"]["records"] == 120
    for column in ("id", "title", "abstract", "year", "journal", "mesh", "language", "has_abstract"):
        assert column in pubmed.columns
    assert {"categories", "year", "has_abstract"} <= set(arxiv.columns)
    assert pubmed["id"].is_unique and pubmed["year"].between(2000, 2019).all()
    assert 0.85 < pubmed["has_abstract"].mean() < 1.0  # the writer leaves ~4 % without an abstract
    assert pubmed["mesh"].map(len).gt(0).mean() > 0.8
    assert (pubmed.loc[pubmed["has_abstract"], "n_sentences"] >= 5).all()  # title + four labelled sections
    assert "PASSED" in (corpus_dir(tmp_path / "data") / "validation.md").read_text()
    runs = mlflow.search_runs(experiment_names=["literature-analysis-demo"])
    assert runs["metrics.corpus/pubmed/records"].iloc[0] == 120


def test_sentencizer_keeps_p_values_and_sections_apart():
    [sentences] = split_sentences(["Risk fell (p = 0.03, 95% CI 0.5-0.9). It was safe.\nCONCLUSION here"])
    assert sentences == ["Risk fell (p = 0.03, 95% CI 0.5-0.9).", "It was safe.", "CONCLUSION here"]


def _efetch(pmids: list[str]) -> str:
    articles = "".join(
        f"<PubmedArticle><MedlineCitation><PMID>{p}</PMID><Article><Journal><JournalIssue><PubDate><Year>2001"
        f"</Year></PubDate></JournalIssue><Title>J</Title></Journal><ArticleTitle>T{p}</ArticleTitle><Abstract>"
        f"<AbstractText>Text {p}.</AbstractText></Abstract></Article><MeshHeadingList><MeshHeading>"
        f"<DescriptorName>Mice</DescriptorName></MeshHeading></MeshHeadingList></MedlineCitation></PubmedArticle>"
        for p in pmids
    )
    return f"<PubmedArticleSet>{articles}</PubmedArticleSet>"


def test_duplicate_pmids_name_both_files_and_nothing_is_written(tmp_path):
    folder = tmp_path / "efetch"
    folder.mkdir()
    (folder / "page1.xml").write_text(_efetch(["11", "12"]))
    (folder / "page2.xml").write_text(_efetch(["13", "12"]))
    cfg = make_cfg(
        tmp_path,
        ["literature.corpus.pubmed=files", f"literature.corpus.pubmed_dir={folder}", "literature.corpus.arxiv=none"],
    )
    with pytest.raises(AnalysisError, match=r"duplicate PMIDs.*PMID 12 in .*page1.xml#2 and again in .*page2.xml#2"):
        build_corpus(cfg, tmp_path / "data")
    assert not corpus_dir(tmp_path / "data").exists()


def test_empty_corpus_is_a_clear_error(tmp_path):
    folder = tmp_path / "efetch"
    folder.mkdir()
    (folder / "empty.xml").write_text("<PubmedArticleSet></PubmedArticleSet>")
    cfg = make_cfg(
        tmp_path,
        ["literature.corpus.pubmed=files", f"literature.corpus.pubmed_dir={folder}", "literature.corpus.arxiv=none"],
    )
    with pytest.raises(AnalysisError, match=r"efetch: no pubmed records read: an empty corpus"):
        build_corpus(cfg, tmp_path / "data")


def test_a_failed_expectation_refuses_the_corpus_atomically(tmp_path):
    cfg = make_cfg(tmp_path, [*SMALL_DEMO, "literature.corpus.min_abstract_share=1.0"])
    build_corpus(make_cfg(tmp_path, SMALL_DEMO), tmp_path / "data")  # a good corpus first
    before = (corpus_dir(tmp_path / "data") / "pubmed.parquet").stat().st_mtime_ns
    with pytest.raises(ValidationFailed, match=r"has_abstract"):
        build_corpus(cfg, tmp_path / "data")
    assert (corpus_dir(tmp_path / "data") / "pubmed.parquet").stat().st_mtime_ns == before  # untouched


def test_real_alzforum_efetch_pages_and_arxiv_snapshot(tmp_path):
    cfg = make_cfg(
        tmp_path,
        [
            "literature.corpus.pubmed=files",
            f"literature.corpus.pubmed_dir={ALZFORUM}",
            "literature.corpus.arxiv=snapshot",
            f"literature.corpus.arxiv_path={SNAPSHOT}",
            "literature.corpus.min_year=1900",
        ],
        profile="full",
    )
    summary = build_corpus(cfg, tmp_path / "data")
    # the counts SOURCE.md states for the shared files
    assert summary["pubmed"]["records"] == 3690
    assert summary["pubmed"]["with_abstract"] == 3579
    assert summary["pubmed"]["with_labels"] == 3633
    assert summary["pubmed"]["years"] == [1964, 2024]
    assert summary["arxiv"]["records"] == 200 and summary["arxiv"]["years"][0] == 2007


class _Eutils(http.server.BaseHTTPRequestHandler):
    """esearch/efetch answered from the shared efetch pages: page N holds records N*100..N*100+99."""

    pages = {int(re.match(r"pubmed_(\d+)_to", p.name).group(1)) // 100: p for p in ALZFORUM.glob("*.xml.gz")}

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.endswith("esearch.fcgi"):
            body = (
                f"<eSearchResult><Count>{100 * len(self.pages)}</Count><RetMax>0</RetMax><QueryKey>1</QueryKey>"
                "<WebEnv>MCID_test</WebEnv><QueryTranslation>x</QueryTranslation></eSearchResult>"
            ).encode()
        else:
            body = gzip.decompress(self.pages[int(query["retstart"]) // 100].read_bytes())
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_eutils_pull_from_a_loopback_mirror_of_real_pages(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Eutils)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = make_cfg(
            tmp_path,
            [
                f"literature.corpus.eutils_url=http://127.0.0.1:{server.server_port}/",
                "literature.corpus.pubmed=eutils",
                "literature.corpus.email=test@example.org",
                "literature.corpus.max_records=300",
                "literature.corpus.eutils_batch=100",
                "literature.corpus.arxiv=none",
            ],
        )
        summary = build_corpus(cfg, tmp_path / "data")
    finally:
        server.shutdown()
    assert summary["pubmed"]["records"] == 91 + 100 + 100  # pages 0-2 (SOURCE.md: 91, 100, 100 records)
    assert summary["pubmed"]["years"] == [1984, 2013]  # SOURCE.md: 1984-2013, 2000-2000, 2000-2001
