"""The plain network: a BERT encoder, a pooled vector (masked mean or [CLS]), dropout, a linear head.

`scratch` builds a small BERT from `transformers.BertConfig` (random weights, the vocabulary of the
WordPiece tokenizer trained on train texts); `pretrained` loads a local folder with
`AutoModel.from_pretrained(path)` (never a hub id). Either way the exported model is the encoder's
config + a state_dict, rebuilt with `AutoModel.from_config`, so serving needs no pretrained folder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CitationClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:  # the mean over real tokens: learns from few examples faster than [CLS] of a random encoder
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


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

        return AutoModel.from_pretrained(str(require_local_model(model.encoder_path)), local_files_only=True)
    config = scratch_config(vocab_size, model.hidden, model.layers, model.heads, model.max_len, model.dropout, pad_id)
    return AutoModel.from_config(config)


def encoder_from_config(config_dict: dict) -> nn.Module:
    """An encoder of the exported architecture (random weights: the state_dict is loaded next)."""
    from transformers import AutoConfig, AutoModel

    config = dict(config_dict)
    return AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config))


def predict_proba(net: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch: int = 256):
    """Class probabilities [N, n_labels], in eval mode, without gradients."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(input_ids), batch):
            out.append(torch.softmax(net(input_ids[i : i + batch], attention_mask[i : i + batch]), dim=1))
    return torch.cat(out) if out else torch.empty(0, net.head.out_features)
