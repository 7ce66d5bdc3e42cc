"""Output decoding (document section 3, step 3): strategies that pick the next token, generation
with a cache, batched greedy decoding, and beam search. Works with any language model that has
``forward(idx, cache=)``, ``new_cache()`` and ``evaluating()``."""
from .beam import beam_search
from .generate import context_window_start, generate, greedy_continuations, next_token_logits
from .strategies import (
                         STRATEGIES,
                         greedy_token,
                         log_softmax,
                         next_token_distribution,
                         select_next_token,
                         softmax,
                         top_k_filter,
                         top_p_filter,
)

__all__ = ["STRATEGIES", "beam_search", "context_window_start", "generate", "greedy_continuations",
           "greedy_token", "log_softmax", "next_token_distribution", "next_token_logits", "select_next_token",
           "softmax", "top_k_filter", "top_p_filter"]
