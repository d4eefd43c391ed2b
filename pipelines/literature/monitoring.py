"""What the monitor watches for literature, and the streams the replay tool sends.

One item is one text row of a request (a citation context, a sentence). Its monitored features:
- the text as it arrived: characters, words, and the out-of-vocabulary share (words the model's own
  tokenizer has no whole-word token for: a new field's vocabulary shows here first, before any
  label moves);
- the encoder's mean-pooled embedding, reduced to EMBEDDING_DIMS by a fixed seeded Gaussian random
  projection (the same on both sides; Rabanser et al. 2019 found such projections as good as learned
  reductions for shift detection), compared by Evidently's domain classifier;
- the model's class probabilities.
Texts are independent items, so the column test is K-S with a Bonferroni correction (params.yaml
`literature.monitor.column_test: ks`).

Reference: the validation texts (carved from train). Streams (`replay_requests`):
- unshifted: the test split's texts (the official dev split), as they are;
- arxiv:     sentences of arXiv abstracts: computer-science and physics prose sent to a model trained
             on citation contexts (the corpus step's arxiv.parquet when it exists, otherwise arXiv
             records in the metadata-snapshot format written by the demo generator and read back
             through the real reader);
- decade:    sentences of PubMed abstracts from the corpus's earliest decade (needs the corpus step).
"""

from __future__ import annotations

import re
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from components.monitor import FeatureSpec, even_sample

EMBEDDING_DIMS = 32  # the random projection's output width (Evidently's classifier stays fast)
STREAMS = ("unshifted", "arxiv", "decade")
TEXT_STATS = ("n_chars", "n_words", "oov_share")
MIN_STREAM_TEXTS = 5  # a stream with fewer texts is refused: no drift decision rests on a handful
WORD = re.compile(r"[^\W\d_]+")  # letters only: numbers and punctuation say nothing about vocabulary


def spec(python_model) -> FeatureSpec:
    return FeatureSpec(
        numerical=list(TEXT_STATS),
        categorical=[],
        outputs=[f"p_{label}" for label in python_model.labels],
        embeddings={"encoder": [f"emb_{i}" for i in range(EMBEDDING_DIMS)]},
    )


def features(python_model, request: pd.DataFrame, answer: pd.DataFrame) -> pd.DataFrame:
    """One row per text: what arrived, what the encoder made of it, what the model answered."""
    texts = python_model.check(request)
    vocabulary = _whole_words(python_model.tokenizer)
    rows = []
    for text in texts:
        words = WORD.findall(text.lower())
        unknown = sum(w not in vocabulary for w in words)
        rows.append({"n_chars": len(text), "n_words": len(words), "oov_share": unknown / len(words) if words else 0.0})
    table = pd.DataFrame(rows)
    emb = embeddings(python_model, texts)
    table[[f"emb_{i}" for i in range(EMBEDDING_DIMS)]] = emb
    for label in python_model.labels:
        table[f"p_{label}"] = answer[f"p_{label}"].to_numpy(dtype=np.float64)
    return table


def _whole_words(tokenizer) -> frozenset[str]:
    return _vocabulary_of(tokenizer.to_str())


@lru_cache(maxsize=8)
def _vocabulary_of(serialised: str) -> frozenset[str]:
    """The tokenizer's whole-word tokens (no '##' continuation pieces, no [SPECIAL] tokens), lower-cased."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(serialised).get_vocab()
    return frozenset(t.lower() for t in vocab if not t.startswith("##") and not (t.startswith("[") and t.endswith("]")))


def embeddings(python_model, texts: list[str]) -> np.ndarray:
    """The encoder's masked-mean embedding of each text, projected to EMBEDDING_DIMS."""
    import torch

    from pipelines.literature.data import encode
    from pipelines.literature.models import masked_mean

    config = python_model.config
    ids, mask = encode(python_model.tokenizer, texts, config["max_len"], config["pad_id"])
    with torch.inference_mode():
        hidden = python_model.net.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        emb = masked_mean(hidden, mask).float().numpy()
    projection = np.random.default_rng(0).normal(0, 1 / np.sqrt(EMBEDDING_DIMS), (emb.shape[1], EMBEDDING_DIMS))
    return emb @ projection


# ---- texts as requests --------------------------------------------------------------------------


def _split_texts(paths, split: str) -> list[str]:
    texts = pd.read_parquet(paths.prepared / "texts.parquet")
    return texts.loc[texts["split"] == split, "text"].tolist()


def _requests(texts: list[str]) -> list[pd.DataFrame]:
    return [pd.DataFrame({"text": [t]}) for t in texts]


def reference_requests(cfg, paths, limit: int) -> list[pd.DataFrame]:
    val = _split_texts(paths, "val")
    return _requests([val[i] for i in even_sample(list(range(len(val))), limit)])


def replay_requests(cfg, paths, stream: str, n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Up to `n` one-text requests of a stream, distinct texts drawn at random (fewer when fewer exist)."""
    if stream == "unshifted":
        texts = _split_texts(paths, "test")
    elif stream == "arxiv":
        texts = arxiv_sentences(cfg, paths)
    elif stream == "decade":
        texts = earliest_decade_sentences(paths)
    else:
        raise ValueError(f"literature stream {stream!r} is not one of {STREAMS}")
    max_chars = cfg.project.data.max_chars
    texts = [t for t in dict.fromkeys(texts) if t.strip() and len(t) <= max_chars]
    if len(texts) < MIN_STREAM_TEXTS:
        raise ValueError(f"literature stream {stream!r}: only {len(texts)} text(s); need at least {MIN_STREAM_TEXTS}")
    chosen = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return _requests([texts[i] for i in chosen])


def sentences(abstracts) -> list[str]:
    """Sentences of abstracts, split by spaCy's rule-based sentencizer.

    A blank English pipeline + `sentencizer` works offline; no trained spaCy or scispaCy model is
    installable here (none is on PyPI), and punctuation rules are enough to cut abstracts into sentences.
    """
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    out = []
    for doc in nlp.pipe(a for a in abstracts if isinstance(a, str) and a.strip()):
        out += [s.text.strip() for s in doc.sents if len(s.text.split()) >= 4]
    return out


def _corpus(paths, name: str) -> Path:
    return paths.root / "corpus" / f"{name}.parquet"


def arxiv_sentences(cfg, paths) -> list[str]:
    corpus = _corpus(paths, "arxiv")
    if corpus.is_file():
        return sentences(pd.read_parquet(corpus)["abstract"])
    from pipelines.literature.sources.arxiv import read_snapshot, write_demo_snapshot

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "arxiv-metadata-oai-snapshot.json"
        write_demo_snapshot(snapshot, n=60, seed=cfg.seed + 1)
        return sentences(r.abstract for r in read_snapshot(snapshot))


def earliest_decade_sentences(paths) -> list[str]:
    corpus = _corpus(paths, "pubmed")
    if not corpus.is_file():
        raise ValueError(f"literature stream 'decade' needs the PubMed corpus ({corpus}): run the corpus step first")
    records = pd.read_parquet(corpus, columns=["abstract", "year"]).dropna()
    if records.empty:
        raise ValueError(f"{corpus}: no PubMed record with an abstract and a year")
    first = int(records["year"].min()) // 10 * 10
    return sentences(records.loc[records["year"] < first + 10, "abstract"])
