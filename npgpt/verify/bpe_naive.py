"""The classic BPE trainer: recount every pair of the whole text before each merge.

The baseline that ``npgpt.text.bpe_train`` is timed and tested against. Same rules as the fast trainer:
pre-tokens never merge across each other, the most frequent pair wins (the smallest ``(a, b)`` on
ties), and merge k makes token 256 + k. Each step costs a pass over the whole text, so it is very
slow on a real corpus -- that is the point.
"""
import itertools

import regex

from ..text.bpe import PATTERNS
from ..text.bpe_train import Merge


def train_naive(text, vocab_size, pattern="gpt2", special_tokens=()):
    """Returns (tokens in rank order as bytes, list of Merge) for ``vocab_size - len(special_tokens)``
    mergeable tokens, like ``npgpt.text.bpe_train.train_bpe``."""
    pattern = PATTERNS.get(pattern, pattern)
    parts = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
    pieces = [p for part in parts for p in (regex.findall(pattern, part) if pattern else [part]) if p]
    words = [list(piece.encode("utf-8")) for piece in pieces]
    tokens = [bytes([b]) for b in range(256)]
    log = []
    while len(tokens) < vocab_size - len(special_tokens):
        counts = count_pairs(words)
        if not counts:
            break
        (a, b), n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        t = len(tokens)
        tokens.append(tokens[a] + tokens[b])
        words = [merge(word, a, b, t) for word in words]
        log.append(Merge(a, b, t, n))
    return tokens, log


def count_pairs(words):
    """(a, b) -> how many times a is directly followed by b, over all words."""
    counts = {}
    for word in words:
        for pair in itertools.pairwise(word):
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(word, a, b, t):
    """``word`` with every adjacent a, b (scanning left to right) replaced by t."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(t)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
