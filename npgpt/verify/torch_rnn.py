"""The PyTorch twin of npgpt's RecurrentLM: ``nn.Embedding`` -> ``nn.LSTM``/``GRU``/``RNN`` (batch
first) -> ``nn.Linear``, under the same parameter names, so an npgpt state dict loads as is.

Used as the reference in tests (outputs and gradients must match) and as the speed reference in
the benchmarks. Requires torch; the npgpt library never imports this.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class TorchRecurrentLM(nn.Module):
    """Embedding, recurrent stack, output layer; dropout on the embeddings, between recurrent
    layers and before the output layer (``cfg`` is an :class:`npgpt.models.recurrent.RecurrentConfig`)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.rnn = CELLS[cfg.cell](cfg.n_embd, cfg.n_hidden, cfg.n_layer, batch_first=True,
                                   dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(cfg.n_hidden, cfg.vocab_size)

    def forward(self, idx, targets=None):
        x = F.dropout(self.embedding(idx), self.cfg.dropout, self.training)
        h, _ = self.rnn(x)
        logits = self.lm_head(F.dropout(h, self.cfg.dropout, self.training))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        return logits, loss


def from_npgpt(model):
    """A TorchRecurrentLM holding a copy of npgpt ``model``'s parameters, in the same dtype."""
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    twin = TorchRecurrentLM(model.config).to(dtype)
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.params.items()}, strict=True)
    return twin
