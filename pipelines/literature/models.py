"""The plain networks: a BERT encoder with a pooled-sentence head, or (roles) a head at every [SEP].

`scratch` builds a small BERT from `transformers.BertConfig` (random weights, the vocabulary of the
WordPiece tokenizer trained on train texts); `pretrained` loads a local folder with
`AutoModel.from_pretrained(path)` (never a hub id). Either way the exported model is the encoder's
config + a state_dict, rebuilt with `AutoModel.from_config`, so serving needs no pretrained folder.

`domain_adapt` continues masked-LM training of the encoder on the task's texts before fine-tuning
(`model.dapt_epochs`); `freeze_encoder` then optionally fixes it, so that only the head is trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EncoderHead(nn.Module):
    """What both networks share: an encoder, and the option to freeze it (`freeze_encoder`).

    A frozen encoder stays in eval mode whatever `train()` is called with (Lightning calls it every epoch):
    its dropout would otherwise make the "fixed" features a different random draw at every step.
    """

    frozen = False

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self


def freeze_encoder(net: EncoderHead) -> EncoderHead:
    """No gradient into the encoder and no dropout inside it: only the head (and its dropout) is trained."""
    net.frozen = True
    net.encoder.requires_grad_(False)
    net.encoder.eval()
    return net


class SentenceClassifier(EncoderHead):
    """One text -> one label: masked mean of the token states (or [CLS]), dropout, linear."""

    sequential = False

    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder, self.pooling, self.n_labels = encoder, pooling, n_labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:  # the mean over real tokens: learns from few examples faster than [CLS] of a random encoder
            pooled = masked_mean(hidden, attention_mask)
        return self.head(self.dropout(pooled))


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states over real (unmasked) tokens: [N, T, H] -> [N, H]."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


CitationClassifier = SentenceClassifier  # the first slice's name


class SequentialSentenceClassifier(EncoderHead):
    """Cohan et al. 2019: the abstract is one sequence; a linear head on every position's state.

    Logits come out for every position [B, L, n_labels]; a sentence's prediction is the one at its [SEP]
    (the training targets are IGNORE elsewhere, data.encode_abstracts says where each [SEP] is). Through
    self-attention each [SEP] state sees the whole abstract: the sentence's context.
    """

    sequential = True

    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float, sep_id: int | None = None) -> None:
        super().__init__()
        self.encoder, self.n_labels = encoder, n_labels
        self.sep_id = sep_id  # set (`context: position`): each sentence attends to its own tokens only
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.sep_id is not None:
            attention_mask = sentence_blocks(input_ids, attention_mask, self.sep_id)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(hidden))


def sentence_blocks(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_id: int) -> torch.Tensor:
    """(B, 1, L, L) bool attention: a token sees the tokens of its own sentence only ([CLS] joins the first).

    The abstract stays one sequence, so every token keeps its position embedding (where the sentence sits),
    while no state mixes in a neighbour's words: the `position` arm of the context ablation. Sentence k is
    the tokens after the k-th [SEP] up to and including the next one. The diagonal is always open, so a
    padding row still attends somewhere (an all-closed row would give NaN, even where no loss is read).
    """
    is_sep = input_ids == sep_id
    sentence = is_sep.long().cumsum(1) - is_sep.long()  # a [SEP] closes its own sentence
    same = sentence.unsqueeze(2) == sentence.unsqueeze(1)
    blocks = same & attention_mask.bool().unsqueeze(1)
    blocks |= torch.eye(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
    return blocks.unsqueeze(1)


def classifier(
    encoder: nn.Module,
    n_labels: int,
    dropout: float,
    sequential: bool,
    pooling: str = "mean",
    sep_id: int | None = None,  # roles with `context: position` only: the [SEP] that bounds a sentence
):
    if sequential:
        return SequentialSentenceClassifier(encoder, n_labels, dropout, sep_id)
    return SentenceClassifier(encoder, n_labels, dropout, pooling)


def scratch_config(vocab_size: int, hidden: int, layers: int, heads: int, max_len: int, dropout: float, pad_id: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_len,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=pad_id,
    )


def build_encoder(model: Any, vocab_size: int, pad_id: int) -> nn.Module:
    """The encoder the config asks for (`model` is the params' model section)."""
    from transformers import AutoModel

    if model.encoder == "pretrained":
        from pipelines.literature.data import require_local_model

        encoder = AutoModel.from_pretrained(str(require_local_model(model.encoder_path)), local_files_only=True)
        limit = getattr(encoder.config, "max_position_embeddings", model.max_len)
        if model.max_len > limit:
            raise ValueError(f"literature.model.max_len {model.max_len} exceeds the encoder's {limit} positions")
        return encoder
    config = scratch_config(vocab_size, model.hidden, model.layers, model.heads, model.max_len, model.dropout, pad_id)
    return AutoModel.from_config(config)


def encoder_from_config(config_dict: dict) -> nn.Module:
    """An encoder of the exported architecture (random weights: the state_dict is loaded next)."""
    from transformers import AutoConfig, AutoModel

    config = dict(config_dict)
    return AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config))


def predict_rows(net: nn.Module, input_ids, attention_mask, row=None, n_rows: int | None = None, batch: int = 256):
    """Class probabilities [n_rows, n_labels] in eval mode without gradients; roles: read at each row's [SEP]."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(input_ids), batch):
            out.append(torch.softmax(net(input_ids[i : i + batch], attention_mask[i : i + batch]), dim=-1))
    if not out:
        return torch.empty(0, net.n_labels)
    proba = torch.cat(out)
    if not getattr(net, "sequential", False):
        return proba
    n_rows = int(row.max()) + 1 if n_rows is None else n_rows
    result = torch.full((n_rows, net.n_labels), float("nan"))
    result[row[row >= 0]] = proba[row >= 0]
    return result


def predict_proba(net: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch: int = 256):
    return predict_rows(net, input_ids, attention_mask, batch=batch)


# ---- domain-adaptive pre-training ---------------------------------------------------------------------


def domain_adapt(
    encoder: nn.Module,
    tokenizer,  # a tokenizers.Tokenizer (the one saved at prepare)
    texts: list[str],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    max_len: int,
    mlm_probability: float,
    seed: int,
) -> list[float]:
    """Continued masked-LM training of `encoder` in place (Gururangan et al. 2020); the mean loss per epoch.

    The encoder becomes the base model of an `AutoModelForMaskedLM` of its own config (a BertForMaskedLM
    for BERT and MiniLM), whose LM head is tied to the encoder's embeddings and otherwise new: only the
    encoder is kept afterwards. Masking is transformers' DataCollatorForLanguageModeling (80/10/10).
    """
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    tokenizer.no_padding()
    tokenizer.no_truncation()
    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]"}  # fmt: skip
    missing = [t for t in specials.values() if tokenizer.token_to_id(t) is None]
    if missing:
        raise ValueError(f"literature.model.dapt_epochs: the tokenizer lacks {missing}, masked-LM needs them")
    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)
    collator = DataCollatorForLanguageModeling(hf, mlm=True, mlm_probability=mlm_probability)
    mlm = AutoModelForMaskedLM.from_config(encoder.config)
    setattr(mlm, mlm.base_model_prefix, encoder)  # the encoder itself is trained, not a copy
    mlm.tie_weights()
    examples = [{"input_ids": ids} for ids in hf(list(texts), truncation=True, max_length=max_len)["input_ids"]]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the collator masks with torch's global generator
    optimiser = torch.optim.AdamW(mlm.parameters(), lr=lr)
    mlm.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        total, n = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = collator([examples[i] for i in order[start : start + batch_size]])
            loss = mlm(**batch).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, n = total + float(loss), n + 1
        losses.append(total / max(n, 1))
    encoder.train()
    return losses
