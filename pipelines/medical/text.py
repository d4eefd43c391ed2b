"""The non-image input: what a clinician knows before reading the film, as WordPiece token ids.

For NIH ChestX-ray14 that is the metadata (age, sex, view position), written as one word per
fact, "age_55 sex_f view_pa", so each fact becomes one token and a text attribution scores a fact.
The tokenizer is a WordPiece vocabulary (HF `tokenizers`) trained here on the TRAIN split's texts
only: a vocabulary built on val/test texts would leak their word statistics into the model. No
hub vocabulary is downloaded; the trained tokenizer is saved as one JSON file beside the model.

Id 0 is [PAD]: the models mask `tokens == 0`. Sequences start with [CLS] (its encoder output is
the text summary the multimodal head reads); no [SEP] is appended. This is byte for byte the
format of data.py's `tokenizer_encoder`, and `metadata_text` here is the one function that writes
the texts, for the prepare stage and for serving alike, so a model trained on the data module's
batches sees the same ids at serving time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["SPECIAL_TOKENS", "PAD_ID", "metadata_text", "train_tokenizer", "load_tokenizer", "encode"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # in this order: [PAD] gets id 0
PAD_ID = 0  # what the models mask and what encode pads with
UNKNOWN = "unknown"  # the word for a missing value: "not recorded" is information too, keep it a token
AGE_STEP = 5  # 5-year buckets: finer ages would leave rare, nearly unique tokens
MAX_AGE = 120  # years, as the validation suite: NIH's 2017 CSV had typing errors like 414
SEXES = ("m", "f")  # NIH's Patient Gender and MIMIC's gender, lower-cased
# NIH's View Position (PA, AP) and MIMIC-CXR-JPG's ViewPosition values, lower-cased; anything else
# is a typo or garbage in a request, and a silent new token would be unseen by the model.
VIEWS = (
    "pa",
    "ap",
    "lateral",
    "ll",
    "ap axial",
    "ap lld",
    "ap rld",
    "pa lld",
    "pa rld",
    "lao",
    "rao",
    "lpo",
    "xtable lateral",
    "swimmers",
)


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(value != value)  # NaN (float, numpy)
    except TypeError:
        return True  # pandas.NA: its comparisons are ambiguous, and it means missing


def _age_word(age) -> str:
    if _missing(age):
        return UNKNOWN
    if isinstance(age, bool):
        raise ValueError(f"age must be a number, got {age!r}")
    text = str(age).strip()
    try:
        # "058Y" is DICOM's PatientAge format
        years = float(text[:-1] if text[-1:] in ("Y", "y") else text)
    except ValueError:
        raise ValueError(f"age must be a number of years, got {age!r}") from None
    if not math.isfinite(years) or not 0 <= years <= MAX_AGE:
        raise ValueError(f"age must be between 0 and {MAX_AGE} years (or missing), got {age!r}")
    return str(int(years) // AGE_STEP * AGE_STEP)


def _sex_word(sex) -> str:
    if _missing(sex):
        return UNKNOWN
    word = str(sex).strip().lower()
    if word not in SEXES:
        raise ValueError(f"sex must be one of M, F (or missing), got {sex!r}")
    return word


def _view_word(view) -> str:
    if _missing(view):
        return UNKNOWN
    words = str(view).lower().split()
    if " ".join(words) not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(v.upper() for v in VIEWS)} (or missing), got {view!r}")
    return "_".join(words)  # "AP AXIAL" -> "ap_axial": one word, one token


def metadata_text(age, sex, view) -> str:
    """Metadata as text: (58, "F", "PA") -> "age_55 sex_f view_pa"; missing -> "age_unknown" etc.

    The one writer of these texts, for training (data.prepare) and for requests (pyfunc, app).
    Ages are bucketed to 5 years. A missing value (None, NaN, "") is allowed and becomes "unknown";
    a value that is present but wrong (age not a number or outside [0, 120], sex other than M/F,
    a view outside VIEWS) is a ValueError naming it: garbage must never become a token silently.
    """
    return f"age_{_age_word(age)} sex_{_sex_word(sex)} view_{_view_word(view)}"


def _texts(texts, what: str) -> list[str]:
    if isinstance(texts, str):  # a str is a sequence of characters: almost surely a bug
        raise TypeError(f"{what} must be a list of strings, got one string {texts[:40]!r}")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{what}[{bad[0]}] is {type(texts[bad[0]]).__name__}, not str")
    return texts


def _check_specials(tokenizer: Tokenizer, where: str) -> None:
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
    if ids != {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}:
        raise ValueError(
            f"{where}: special token ids must be {dict(zip(SPECIAL_TOKENS, range(4)))} "
            f"(the models mask id 0 as padding), got {ids}"
        )


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2000, out_path: str | Path | None = None) -> Tokenizer:
    """A WordPiece tokenizer trained on `texts` (the TRAIN split's only), saved as JSON at `out_path`.

    The vocabulary may come out smaller than `vocab_size` (a metadata corpus has few words): size
    the model's embedding with `tokenizer.get_vocab_size()`, not with this argument.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    texts = _texts(texts, "texts")
    if not any(t.strip() for t in texts):
        raise ValueError("train_tokenizer needs at least one non-empty text")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)  # also cleans control chars, accents
    # \w+|[^\w\s]+ : keeps "age_55" one word (BertPreTokenizer would split it at the underscore)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS))
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # tokenizer.encode(text) then gives what encode() gives (without padding / truncation)
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    _check_specials(tokenizer, "train_tokenizer")
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(out_path))
    return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer saved by train_tokenizer; errors name the file."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the Rust side raises its own Exception type
        raise ValueError(f"{path}: not a tokenizers JSON file: {e}") from None
    _check_specials(tokenizer, str(path))
    return tokenizer


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_len: int) -> torch.Tensor:
    """Texts -> LongTensor [B, max_len]: [CLS] and the text's ids, truncated, then 0 (padding).

    The tokenizer's own post-processor, padding and truncation settings are not used, so the
    result does not depend on how the file was saved (same rule as data.tokenizer_encoder).
    """
    texts = _texts(texts, "texts")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1 (room for [CLS]), got {max_len!r}")
    cls_id = tokenizer.token_to_id("[CLS]")
    out = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    for i, enc in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        ids = [cls_id, *enc.ids][:max_len]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
