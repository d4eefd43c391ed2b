"""Citation-intent data: the demo generator, the validation rules, the split, the tokenizer, the data module.

Raw files (SciCite's SciBERT copy, or the synthetic demo in the same format): `train.txt`, `dev.txt`
and, when `data.test_file` is set, `heldout<suffix>`. Roles after `prepare`: train minus a carved
validation part (`val`), dev as `test` (the split the literature reports and the gate compares),
the optional official test file as `heldout` (reported, never used for any choice).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from pipelines.literature.sources.labelled import SCICITE_LABELS, Citation, read_scicite, resolve_conflicts, text_key

LABELS = SCICITE_LABELS  # background, method, result: class index = position
TRAIN_FILE, DEV_FILE = "train.txt", "dev.txt"
SPLITS = ("train", "val", "test")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
        words.insert(rng.randrange(len(words) + 1), rng.choice(_CUES[rng.choice([x for x in LABELS if x != label])]))
    words.insert(rng.randrange(len(words) + 1), cue)
    topic = rng.choice(_TOPICS)
    return f"{topic.capitalize()} {' '.join(words)} ({rng.choice(_AUTHORS)} et al., {rng.randint(1980, 2024)})."


def write_demo(out: Path, rows: int, seed: int) -> list[Path]:
    """train.txt (`rows` rows) and dev.txt (rows // 5), seeded, no text in both; labels 55/30/15 like SciCite."""
    rng, seen, files = random.Random(seed), set(), []
    for name, n in ((TRAIN_FILE, rows), (DEV_FILE, max(rows // 5, 15))):
        lines = []
        for i in range(n):
            label = LABELS[i % 3] if i < 3 else rng.choices(LABELS, weights=(55, 30, 15))[0]
            text = _demo_text(rng, label)
            while text_key(text) in seen:
                text = _demo_text(rng, label)
            seen.add(text_key(text))
            lines.append(json.dumps({"text": text, "label": label, "metadata": {}}))
        (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(out / name)
    return files


# ---- the records and the rules ----------------------------------------------------------------------


def heldout_name(test_file: str) -> str:
    return "heldout" + (Path(test_file).suffix or ".txt")


def read_split_file(path: Path) -> list[Citation]:
    """A SciCite file (any of its three formats) by path: how the held-out official test split is loaded."""
    return read_scicite(Path(path))


def apply_rules(
    train: list[Citation], dev: list[Citation], conflicts: str, leak: str, heldout: list[Citation] = ()
) -> dict:
    """The documented rules, in order: conflicting duplicates (majority / fail), then the train/dev leak.

    The leak rule compares train with dev and the held-out file. Returns the kept train and dev records and what each rule found; with a rule set to "fail" nothing is
    dropped and the validation checks report the rows instead.
    """
    found = {"conflicts": [], "leaked": 0}
    if conflicts == "majority":
        train, train_conflicts = resolve_conflicts(train)
        dev, dev_conflicts = resolve_conflicts(dev)
        found["conflicts"] = [c.text for c in train_conflicts + dev_conflicts]
    if leak == "drop_train":
        dev_keys = {text_key(r.text) for r in [*dev, *heldout]}
        kept = [r for r in train if text_key(r.text) not in dev_keys]
        found["leaked"], train = len(train) - len(kept), kept
    return {"train": train, "dev": dev, **found}


def split_groups(records: list[Citation]) -> list[str]:
    """The unit a validation split keeps whole: the citing paper where every record names one, else the text.

    SciBERT's copy has no paper ids (its metadata is empty): then duplicated texts stay on one side.
    """
    if records and all(r.citing_paper_id for r in records):
        return [f"paper:{r.citing_paper_id}" for r in records]
    return [f"text:{text_key(r.text)}" for r in records]


def carve_validation(records: list[Citation], fraction: float, seed: int) -> list[str]:
    """'train' or 'val' per record: whole groups, seeded, until the val part holds >= fraction of the rows."""
    groups = split_groups(records)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    roles, target, n_val = ["train"] * len(records), fraction * len(records), 0
    for g in order:
        if n_val >= target:
            break
        for i in members[g]:
            roles[i] = "val"
        n_val += len(members[g])
    return roles


# ---- the tokenizer ------------------------------------------------------------------------------------


def train_wordpiece(texts: list[str], vocab_size: int, min_frequency: int):
    """A BERT WordPiece tokenizer (lower-cased) trained on `texts` only: the caller passes train texts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def pretrained_tokenizer(encoder_path: str):
    """The fast tokenizer saved with a local encoder, as a `tokenizers.Tokenizer`, and its pad token."""
    from transformers import AutoTokenizer

    folder = require_local_model(encoder_path)
    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"literature.model.encoder_path {folder}: no fast tokenizer (tokenizer.json) to export")
    return hf.backend_tokenizer, hf.pad_token or "[PAD]"


def require_local_model(encoder_path: str) -> Path:
    folder = Path(encoder_path)
    if not encoder_path.strip():
        raise ValueError("literature.model.encoder_path is unset: encoder=pretrained needs a local model folder")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"literature.model.encoder_path {folder}: no such model folder (expected config.json in it); "
            "give a local folder, hub ids are never downloaded"
        )
    return folder


def encode(tokenizer, texts: list[str], max_len: int, pad_id: int):
    """input_ids [N, max_len] (int64) and attention_mask, truncated and padded to max_len."""
    import torch

    tokenizer.enable_truncation(max_len)
    tokenizer.enable_padding(length=max_len, pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "[PAD]")
    encoded = tokenizer.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in encoded], dtype=torch.long).reshape(len(encoded), max_len)
    mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long).reshape(len(encoded), max_len)
    return ids, mask


# ---- prepare and the data module ----------------------------------------------------------------------


def prepare(data, model, raw: Path, seed: int, out: Path) -> dict:
    """texts.parquet (text, label, y, split), tokenizer.json, encoded.pt, meta.json into `out`."""
    import pandas as pd
    import torch

    heldout = read_split_file(raw / heldout_name(data.test_file)) if data.test_file else []
    ruled = apply_rules(
        read_scicite(raw / TRAIN_FILE), read_scicite(raw / DEV_FILE), data.conflicts, data.leak, heldout
    )
    train, dev = ruled["train"], ruled["dev"]
    roles = carve_validation(train, data.val_fraction, seed)
    rows = [(r.text, r.label, role) for r, role in zip(train, roles, strict=True)]
    rows += [(r.text, r.label, "test") for r in dev]
    if data.test_file:
        rows += [(r.text, r.label, "heldout") for r in heldout]
    frame = pd.DataFrame(rows, columns=["text", "label", "split"])
    frame["y"] = frame["label"].map(LABELS.index).astype("int64")
    train_texts = frame.loc[frame["split"] == "train", "text"].tolist()
    if model.encoder == "scratch":
        tokenizer, pad_token = train_wordpiece(train_texts, model.vocab_size, model.min_frequency), "[PAD]"
    else:
        tokenizer, pad_token = pretrained_tokenizer(model.encoder_path)
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.save(str(out / "tokenizer.json"))
    encoded = {}
    for split in frame["split"].unique():
        part = frame[frame["split"] == split]
        ids, mask = encode(tokenizer, part["text"].tolist(), model.max_len, pad_id)
        encoded[split] = {"input_ids": ids, "attention_mask": mask, "y": torch.tensor(part["y"].to_numpy())}
    torch.save(encoded, out / "encoded.pt")
    frame.to_parquet(out / "texts.parquet", index=False)
    counts = {s: int((frame["split"] == s).sum()) for s in frame["split"].unique()}
    meta = {
        "labels": list(LABELS),
        "pad_id": pad_id,
        "vocab_size": tokenizer.get_vocab_size(),
        "max_len": model.max_len,
        "encoder": model.encoder,
        "tokenizer_fitted_on": {"split": "train", "rows": len(train_texts)} if model.encoder == "scratch" else None,
        "groups": "citing paper" if split_groups(train)[:1] and split_groups(train)[0].startswith("paper:") else "text",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {
        "counts": counts,
        "label_counts": {s: frame[frame["split"] == s]["label"].value_counts().to_dict() for s in counts},
        "conflicts_resolved": len(ruled["conflicts"]),
        "leaked_train_rows_dropped": ruled["leaked"],
        **meta,
    }


def make_datamodule(prepared: Path, batch_size: int, num_workers: int = 0):
    """A LightningDataModule over encoded.pt (Lightning imported here: it costs seconds)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from components.steps import SplitLoaders, loader_options

    class CitationDataModule(SplitLoaders, pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoded = torch.load(prepared / "encoded.pt", weights_only=True)
            self.meta = json.loads((prepared / "meta.json").read_text())
            self.labels = self.meta["labels"]
            self.vocab_size = self.meta["vocab_size"]
            for split in SPLITS:
                if split not in self.encoded or len(self.encoded[split]["y"]) == 0:
                    raise ValueError(f"{prepared}: the {split} split is empty")

        def tensors(self, split: str):
            e = self.encoded[split]
            return e["input_ids"], e["attention_mask"], e["y"]

        def loader(self, split: str, train: bool):
            return DataLoader(
                TensorDataset(*self.tensors(split)), batch_size=batch_size, shuffle=train, **loader_options(num_workers)
            )

    return CitationDataModule()


# ---- validation ---------------------------------------------------------------------------------------


def rule_columns(records: list[Citation], others: list[Citation]) -> tuple[list[str], list[str]]:
    """Per record: its conflict state (none / kept / dropped, by the majority rule) and leak state (none / in_dev)."""
    kept, _ = resolve_conflicts(records)
    kept_ids = {id(r) for r in kept}
    labels: dict[str, set] = defaultdict(set)
    for r in records:
        labels[text_key(r.text)].add(r.label)
    conflict = [
        "none" if len(labels[text_key(r.text)]) < 2 else ("kept" if id(r) in kept_ids else "dropped") for r in records
    ]
    other_keys = {text_key(r.text) for r in others}
    leak = ["in_dev" if text_key(r.text) in other_keys else "none" for r in records]
    return conflict, leak


def scicite_checks(data, raw: Path) -> list:
    """Great Expectations checks of each raw file, after the documented rules (`data.conflicts`, `data.leak`).

    Per file: the label set, no blank text, at most `max_chars` characters, duplicated texts with
    conflicting labels (allowed only as resolved by the majority rule), and for train the leak check:
    a train text that is also in dev or the held-out file fails unless `leak: drop_train` drops it.
    """
    import great_expectations as gx
    import pandas as pd

    from components.validate import Check, read_failure
    from pipelines.literature.sources.labelled import LabelledDataError

    files = {"train": raw / TRAIN_FILE, "dev": raw / DEV_FILE}
    if data.test_file:
        files["heldout"] = raw / heldout_name(data.test_file)
    records = {}
    for split, file in files.items():
        try:
            records[split] = read_scicite(file)
        except (LabelledDataError, OSError, UnicodeDecodeError) as err:
            raise read_failure(f"{file.name} records", file, str(err)) from None
    allowed_conflict = ["none", "kept", "dropped"] if data.conflicts == "majority" else ["none"]
    allowed_leak = ["none", "in_dev"] if data.leak == "drop_train" else ["none"]
    checks = []
    for split, file in files.items():
        rs = records[split]
        others = [r for s in files if s != "train" for r in records[s]] if split == "train" else []
        conflict, leak = rule_columns(rs, others)
        frame = pd.DataFrame(
            {"text": [r.text for r in rs], "label": [r.label for r in rs], "conflict": conflict, "leak": leak},
            index=[r.line for r in rs],
        )
        expectations = [
            gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS)),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="text"),
            gx.expectations.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$"),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=data.max_chars),
            gx.expectations.ExpectColumnValuesToBeInSet(column="conflict", value_set=allowed_conflict),
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=3),
        ]
        if split == "train":
            expectations.append(gx.expectations.ExpectColumnValuesToBeInSet(column="leak", value_set=allowed_leak))
        suite = gx.ExpectationSuite(name=f"literature-{split}", expectations=expectations)
        checks.append(Check(f"{file.name} citations", file, frame, suite))
    return checks
