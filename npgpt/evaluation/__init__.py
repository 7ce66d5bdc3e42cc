"""Evaluation (document section 8): perplexity and bits per character of a language model on
held-out text, BLEU (as sacrebleu computes it) and ROUGE (as Google's rouge-score computes it),
each written from its formula and tested equal to the reference tool, and bootstrap confidence
intervals for a corpus mean."""
from .bleu import BLEUScore, bleu, sentence_bleu
from .bleu_tokenizers import TOKENIZERS as BLEU_TOKENIZERS
from .bootstrap import AggregateScore, bootstrap_aggregate
from .perplexity import (
    TextScore,
    bits_per_byte,
    bits_per_character,
    bits_per_token,
    evaluate_text,
    perplexity,
    token_nlls,
)
from .rouge import DefaultTokenizer, PerCharacterTokenizer, Score, rouge

__all__ = ["BLEUScore", "bleu", "sentence_bleu", "BLEU_TOKENIZERS", "AggregateScore", "bootstrap_aggregate",
           "TextScore", "bits_per_byte", "bits_per_character", "bits_per_token", "evaluate_text", "perplexity",
           "token_nlls", "DefaultTokenizer", "PerCharacterTokenizer", "Score", "rouge"]
