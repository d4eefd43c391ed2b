"""A synthetic corpus in the real formats, for the demo profile and the tests.

`write_demo_pubmed` writes efetch XML (PubmedArticleSet, structured abstracts with Label/NlmCategory, MeSH
headings, languages) and `write_demo_arxiv` Kaggle-snapshot JSON lines; the corpus step then reads them
through the real readers (sources/pubmed.py, sources/arxiv.py), so the demo exercises the same code as the
real sources. Several topics each own a vocabulary, MeSH terms / categories and journals, and their shares
drift over the years (some rise, some fall), so that trends has something to find and the recommender's
ground truth (shared MeSH terms / categories) is tied to the text, noisily: a record also carries a generic
MeSH term and, sometimes, one of another topic. Results sections carry p-values and confidence intervals,
some conclusions are positive despite a non-significant result (spin), some sentences hedge.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from xml.sax.saxutils import escape

from components.io import atomic_write

# topic -> (words, MeSH terms, journals, share trend: + rising, - falling)
PUBMED_TOPICS = {
    "amyloid": (
        "amyloid beta plaques aggregation oligomers clearance secretase fibrils deposition".split(),
        ["Amyloid beta-Peptides", "Plaque, Amyloid"],
        ["Neurobiology of Aging", "Journal of Neurochemistry"],
        -1.0,
    ),
    "tau": (
        "tau phosphorylation tangles spreading kinase microtubule propagation seeding".split(),
        ["tau Proteins", "Neurofibrillary Tangles"],
        ["Acta Neuropathologica", "Journal of Neurochemistry"],
        0.0,
    ),
    "microglia": (
        "microglia inflammation cytokines TREM2 phagocytosis astrocytes complement innate".split(),
        ["Microglia", "Neuroinflammatory Diseases"],
        ["Journal of Neuroinflammation", "Glia"],
        1.0,
    ),
    "genetics": (
        "APOE allele risk loci genome variants heritability polygenic sequencing".split(),
        ["Apolipoproteins E", "Genome-Wide Association Study"],
        ["Nature Genetics", "Neurobiology of Aging"],
        0.8,
    ),
    "trials": (
        "donepezil placebo randomized cognitive decline dose patients efficacy cholinesterase".split(),
        ["Randomized Controlled Trials as Topic", "Cholinesterase Inhibitors"],
        ["Lancet Neurology", "Neurology"],
        -0.6,
    ),
}
GENERIC = "study analysis data results observed increased associated model levels group cohort".split()
ARXIV_TOPICS = {
    "language": (
        "language parsing translation tokens transformer corpus syntax dialogue".split(),
        ["cs.CL"],
        1.0,
    ),
    "vision": ("image segmentation pixels convolutional detection video camera scenes".split(), ["cs.CV"], 0.5),
    "reinforcement": ("reinforcement policy reward agent exploration actions environment".split(), ["cs.LG"], 0.0),
    "bayesian": ("bayesian posterior inference prior sampling variational likelihood".split(), ["stat.ML"], -1.0),
    "neural": ("neurons spiking cortex coding synaptic firing brain".split(), ["q-bio.NC"], -0.5),
}
HEDGES = ["may", "might", "suggest that", "appears to", "is likely to", "could"]


def _topic(rng: random.Random, trends: dict[str, float], t: float) -> str:
    """A topic drawn with weights exp(trend * t), t in [-1, 1]: rising topics gain share over the years."""
    import math

    names = list(trends)
    weights = [math.exp(1.2 * trends[n] * t) for n in names]
    return rng.choices(names, weights=weights)[0]


def _words(rng: random.Random, own: list[str], n: int, noise: float = 0.25) -> str:
    return " ".join(rng.choice(GENERIC) if rng.random() < noise else rng.choice(own) for _ in range(n))


def _results(rng: random.Random, significant: bool) -> str:
    if significant:
        p = rng.choice(["P < 0.001", "p = 0.003", "p=0.01", "P<0.05"])
        ci = rng.choice(["95% CI 0.55-0.82", "(95% CI, 1.20 to 1.85)"])
    else:
        p = rng.choice(["p = 0.23", "P=0.41", "p-value of 0.08", "p = 0.67"])
        ci = rng.choice(["95% CI 0.8-1.3", "(95% CI, 0.85 to 1.20)"])
    return f"The primary outcome differed between groups (odds ratio {rng.uniform(0.6, 1.6):.2f}, {ci}; {p})."


def write_demo_pubmed(folder: Path, n: int = 240, seed: int = 0, first_year: int = 2000, years: int = 20) -> list[Path]:
    """efetch pages of 100 records (efetch_00000.xml, ...) in a folder; return the page paths."""
    rng = random.Random(seed)
    trends = {k: v[3] for k, v in PUBMED_TOPICS.items()}
    articles = []
    for i in range(n):
        year = first_year + i % years
        topic = _topic(rng, trends, 2 * (year - first_year) / (years - 1) - 1)
        words, mesh, journals, _ = PUBMED_TOPICS[topic]
        title = f"{_words(rng, words, 6, 0.2).capitalize()} in Alzheimer disease"
        significant = rng.random() < 0.6
        conclusion_positive = significant or rng.random() < 0.5  # half the null results are spun
        hedge = rng.choice(HEDGES)
        parts = [
            ("BACKGROUND", "BACKGROUND", f"{_words(rng, words, 12).capitalize()}."),
            ("METHODS", "METHODS", f"We studied {_words(rng, words, 10)} in a cohort of {rng.randint(40, 900)}."),
            ("RESULTS", "RESULTS", _results(rng, significant) + f" {_words(rng, words, 9).capitalize()}."),
            (
                "CONCLUSIONS",
                "CONCLUSIONS",
                f"{words[0].capitalize()} treatment significantly improved {rng.choice(words)} outcomes."
                if conclusion_positive
                else f"{words[0].capitalize()} {hedge} not change {rng.choice(words)} outcomes.",
            ),
        ]
        if rng.random() < 0.3:
            parts[1] = ("METHODS", "METHODS", f"These data {hedge} indicate a role for {_words(rng, words, 6)}.")
        no_abstract = rng.random() < 0.04
        terms = [*mesh, "Humans", "Alzheimer Disease"]
        if rng.random() < 0.25:  # a cross-topic term: the ground truth is noisy, as real indexing is
            other = rng.choice([t for t in PUBMED_TOPICS if t != topic])
            terms.append(PUBMED_TOPICS[other][1][0])
        indexed = rng.random() > 0.05  # ~5 % not yet indexed (status In-Process): no MeSH
        language = "ger" if rng.random() < 0.05 else "eng"
        abstract_xml = (
            ""
            if no_abstract
            else "<Abstract>"
            + "".join(
                f'<AbstractText Label="{lab}" NlmCategory="{cat}">{escape(text)}</AbstractText>'
                for lab, cat, text in parts
            )
            + "</Abstract>"
        )
        mesh_xml = (
            "<MeshHeadingList>"
            + "".join(
                f'<MeshHeading><DescriptorName UI="D{j:06d}">{escape(t)}</DescriptorName></MeshHeading>'
                for j, t in enumerate(terms)
            )
            + "</MeshHeadingList>"
            if indexed
            else ""
        )
        ptype = "Randomized Controlled Trial" if topic == "trials" else "Journal Article"
        articles.append(
            f'<PubmedArticle><MedlineCitation Status="{"MEDLINE" if indexed else "In-Process"}" Owner="NLM">'
            f'<PMID Version="1">{30_000_000 + i * 7}</PMID><Article PubModel="Print">'
            f"<Journal><JournalIssue><PubDate><Year>{year}</Year><Month>{rng.choice(['Jan', 'Jun', 'Oct'])}</Month>"
            f"</PubDate></JournalIssue><Title>{escape(rng.choice(journals))}</Title></Journal>"
            f"<ArticleTitle>{escape(title)}.</ArticleTitle>{abstract_xml}<Language>{language}</Language>"
            f"<PublicationTypeList><PublicationType>{ptype}</PublicationType></PublicationTypeList>"
            f"</Article>{mesh_xml}</MedlineCitation></PubmedArticle>"
        )
    folder = Path(folder)
    paths = []
    for page, start in enumerate(range(0, n, 100)):
        body = '<?xml version="1.0" ?>\n<PubmedArticleSet>\n' + "\n".join(articles[start : start + 100])
        paths.append(atomic_write(folder / f"efetch_{page:05d}.xml", body + "\n</PubmedArticleSet>\n"))
    return paths


def write_demo_arxiv(path: Path, n: int = 160, seed: int = 0, first_year: int = 2010, years: int = 10) -> Path:
    """Snapshot JSON lines (the Kaggle format `read_snapshot` reads) with topic-bound categories."""
    rng = random.Random(seed)
    trends = {k: v[2] for k, v in ARXIV_TOPICS.items()}
    lines = []
    for i in range(n):
        year = first_year + i % years
        topic = _topic(rng, trends, 2 * (year - first_year) / (years - 1) - 1)
        words, categories, _ = ARXIV_TOPICS[topic]
        categories = list(categories)
        if rng.random() < 0.3:
            other = rng.choice([t for t in ARXIV_TOPICS if t != topic])
            categories.append(ARXIV_TOPICS[other][1][0])
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        created = dt.datetime(year, month, day, 10).strftime("%a, %-d %b %Y %H:%M:%S GMT")  # the snapshot's RFC 2822
        row = {
            "id": f"{year % 100:02d}{month:02d}.{10000 + i:05d}",
            "submitter": "Ada Lovelace",
            "authors": "Ada Lovelace",
            "title": _words(rng, words, 7, 0.2).capitalize(),
            "comments": None,
            "journal-ref": None,
            "doi": None,
            "report-no": None,
            "categories": " ".join(categories),
            "license": None,
            "abstract": "  " + ". ".join(_words(rng, words, 14).capitalize() for _ in range(3)) + ".\n",
            "versions": [{"version": "v1", "created": created}],
            "update_date": f"{year}-{month:02d}-{day:02d}",
            "authors_parsed": [["Lovelace", "Ada", ""]],
        }
        lines.append(json.dumps(row, separators=(",", ":")))
    return atomic_write(Path(path), "\n".join(lines) + "\n")
