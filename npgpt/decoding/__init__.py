"""Output decoding (document section 3, step 3): strategies that pick the next token, generation
with a cache, batched greedy decoding, and beam search. Works with any language model that has
``config.block_size``, ``config.vocab_size``, ``forward(idx, cache=)``, ``new_cache()`` and
``evaluating()``: the :class:`~npgpt.decoding.generate.LanguageModel` protocol says it in types."""
from .beam import beam_search
from .generate import LanguageModel, context_window_start, generate, greedy_continuations, next_token_logits
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

__all__ = ["STRATEGIES", "LanguageModel", "beam_search", "context_window_start", "generate",
           "greedy_continuations", "greedy_token", "log_softmax", "next_token_distribution", "next_token_logits",
           "select_next_token", "softmax", "top_k_filter", "top_p_filter"]
