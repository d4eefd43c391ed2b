"""Citation intent, SciCite (Cohan et al. 2019): background / method / result from the citation context.

Raw files: SciBERT's copy (`train.txt`, `dev.txt`, JSON lines); dev is the test split. Groups: the citing
paper where a record names one (AllenAI's original format), else the whitespace-normalised text, so that
duplicated texts never sit on both sides of the validation carve.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from pipelines.literature.sources.labelled import SCICITE_LABELS, read_scicite, text_key
from pipelines.literature.tasks import Item, TaskSpec

TRAIN_FILE, DEV_FILE = "train.txt", "dev.txt"

# ---- the demo source ------------------------------------------------------------------------------
# Synthetic SciCite in the SciBERT JSON-lines format. Each label has its own cue phrases; the rest of a
# sentence is drawn from a shared vocabulary, and one text in six also carries another label's cue, so
# a model must learn the cues (above chance, not trivially perfect). Every text is unique across files:
# the leak check passes on the demo by construction. (`write_demo_scicite` repeats three fixed templates,
# whose texts recur between files at a few hundred rows; the tests use it for the held-out file.)

_CUES = {
    "background": ["has been widely studied", "previous work showed", "is well known", "prior studies reported"],
    "method": ["we used the method of", "following the procedure of", "was implemented as in", "we adopted"],
    "result": ["is consistent with", "our findings agree with", "similar results were reported by", "in line with"],
}
_TOPICS = ["kinase signalling", "graph embeddings", "protein folding", "topic models", "sepsis outcomes",
           "hedge cues", "citation networks", "gene expression", "image segmentation", "soil carbon"]  # fmt: skip
_FILLER = ["the", "a", "recent", "large", "cohort", "model", "data", "analysis", "sample", "approach",
           "measured", "clinical", "set", "study", "in", "of", "for", "with", "robust", "baseline"]  # fmt: skip
_AUTHORS = ["Smith", "Nakamura", "Okafor", "Jensen", "Moreau", "Silva", "Kowalski", "Haddad"]


def _demo_text(rng: random.Random, label: str) -> str:
    words = [rng.choice(_FILLER) for _ in range(rng.randint(3, 8))]
    cue = rng.choice(_CUES[label])
    if rng.random() < 1 / 6:  # a distractor cue of another label
        others = [x for x in SCICITE_LABELS if x != label]
        words.insert(rng.randrange(len(words) + 1), rng.choice(_CUES[rng.choice(others)]))
    words.insert(rng.randrange(len(words) + 1), cue)
    topic = rng.choice(_TOPICS)
    return f"{topic.capitalize()} {' '.join(words)} ({rng.choice(_AUTHORS)} et al., {rng.randint(1980, 2024)})."


def write_demo(out: Path, rows: int, seed: int) -> list[Path]:
    """train.txt (`rows` rows) and dev.txt (rows // 5), seeded, no text in both; labels 55/30/15 like SciCite."""
    rng, seen, files = random.Random(seed), set(), []
    for name, n in ((TRAIN_FILE, rows), (DEV_FILE, max(rows // 5, 15))):
        lines = []
        for i in range(n):
            label = SCICITE_LABELS[i % 3] if i < 3 else rng.choices(SCICITE_LABELS, weights=(55, 30, 15))[0]
            text = _demo_text(rng, label)
            while text_key(text) in seen:
                text = _demo_text(rng, label)
            seen.add(text_key(text))
            lines.append(json.dumps({"text": text, "label": label, "metadata": {}}))
        (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(out / name)
    return files


def read(path: Path) -> list[Item]:
    return [
        Item(
            r.text,
            r.label,
            f"paper:{r.citing_paper_id}" if r.citing_paper_id else f"text:{text_key(r.text)}",
            r.split,
            r.line,
        )
        for r in read_scicite(Path(path))
    ]


SPEC = TaskSpec(
    name="intent",
    labels=SCICITE_LABELS,
    dir_key="scicite_dir",
    files=(TRAIN_FILE, DEV_FILE),
    test_from="file",
    read=read,
    write_demo=write_demo,
    what="SciCite citation intent (background / method / result)",
    group_name="citing paper (or the text, where the file names no paper)",
)
