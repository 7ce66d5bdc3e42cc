r"""ROUGE (Lin, 2004), as Google's ``rouge-score`` computes it (document section 8).

ROUGE compares a predicted text (a summary, an answer) with a target written by a person, and asks
how much of the target the prediction recovers. Each type gives a precision P (over the
prediction's units), a recall R (over the target's) and their harmonic mean F:

$$\mathrm{F} = \frac{2PR}{P + R}\quad (0 \text{ when } P + R = 0)$$

**ROUGE-N**: n-gram overlap, each n-gram counted at most as often as it occurs in the other text,

$$\mathrm{match} = \sum_g \min\big(c_{\mathrm{tgt}}(g),\, c_{\mathrm{pred}}(g)\big),\qquad
  P = \frac{\mathrm{match}}{\max(1,\ \#\text{pred n-grams})},\qquad
  R = \frac{\mathrm{match}}{\max(1,\ \#\text{tgt n-grams})}$$

**ROUGE-L**: the longest common subsequence of the two token sequences (in order, not necessarily
adjacent), $P = \mathrm{LCS}/|\mathrm{pred}|$, $R = \mathrm{LCS}/|\mathrm{tgt}|$, from the table

$$L_{i,j} = \begin{cases} L_{i-1,j-1} + 1 & t_i = p_j \\ \max(L_{i-1,j},\, L_{i,j-1}) & \text{else}\end{cases}$$

**ROUGE-Lsum** (summary level): both texts are split into sentences at newlines. For each target
sentence $r$, take one LCS with each prediction sentence and the *union* of the target positions
they cover; the tokens at those positions are hits, each token counted at most as often as it
occurs in either whole text. $P = \text{hits}/|\mathrm{pred}|$, $R = \text{hits}/|\mathrm{tgt}|$.
Which LCS is taken matters when several tie, so it is read back from the table as the reference
does: from the bottom-right corner, step diagonally on a match, else left when the cell on the
left is strictly larger, else up.

**Tokens.** By default, as the reference: lowercase, every run of characters outside ``a-z0-9``
becomes a space, and tokens are what remains. That tokenizer deletes every Chinese character: a
Chinese prediction and target both become empty and score 0, whatever they say. Pass
``tokenizer=PerCharacterTokenizer()`` (one token per letter or digit, so per Chinese character) to
score Chinese. ``use_stemmer=True`` applies the Porter stemmer to tokens longer than three
characters; the stemmer is not the subject here, so npgpt uses ``nltk``'s (the one the reference
uses) and says so when nltk is not installed.

Differences from the reference: ``rougeN`` takes any N >= 1 (the reference only one digit), and
bad input raises ValueError naming it.
"""
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from ..checks import UsageError

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_ROUGE_N = re.compile(r"rouge([0-9]+)")


class Score(NamedTuple):
    """Precision, recall and F-measure of one ROUGE type (the reference's ``Score``)."""
    precision: float
    recall: float
    fmeasure: float


def fmeasure(precision: float, recall: float) -> float:
    """The harmonic mean 2PR / (P + R), 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# ----------------------------------------------------------------------------- tokenizers
class Tokenizer(Protocol):
    """What :func:`rouge` takes as a tokenizer (as the reference does): an object with this method."""

    def tokenize(self, text: str) -> list[str]: ...


class Stemmer(Protocol):
    """What :func:`porter_stemmer` gives: nltk's ``PorterStemmer`` (nltk has no type information)."""

    def stem(self, word: str) -> str: ...


class DefaultTokenizer:
    """The reference's tokenizer: lowercase, non-``[a-z0-9]`` runs to spaces, optional stemming of
    tokens longer than three characters."""

    def __init__(self, use_stemmer: bool = False) -> None:
        self.stemmer = porter_stemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        words = _NON_ALPHANUMERIC.sub(" ", text.lower()).split()
        if self.stemmer is not None:
            words = [self.stemmer.stem(w) if len(w) > 3 else w for w in words]
        return [w for w in words if w and _NON_ALPHANUMERIC.search(w) is None]


class PerCharacterTokenizer:
    """One token per letter or digit (``str.isalnum``), lowercased; spaces and punctuation dropped.
    For Chinese, whose words are not separated by spaces, this is ROUGE over characters. It has the
    reference's ``tokenize(text)`` method, so ``rouge_score`` can use it too."""

    def tokenize(self, text: str) -> list[str]:
        return [ch for ch in text.lower() if ch.isalnum()]


def porter_stemmer() -> Stemmer:
    """nltk's Porter stemmer (the reference's), or an ImportError saying how to get it."""
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError:
        raise ImportError("use_stemmer=True needs nltk's Porter stemmer, which npgpt does not rewrite "
                          "(the stemmer is not the subject): pip install nltk") from None
    return PorterStemmer()


# ----------------------------------------------------------------------------- ROUGE-N
def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """c(g) for every n-gram g (a tuple) of ``tokens``."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(target_tokens: Sequence[str], prediction_tokens: Sequence[str], n: int) -> Score:
    """ROUGE-N: clipped n-gram matches over the prediction's (P) and the target's (R) n-grams."""
    tgt, pred = ngrams(target_tokens, n), ngrams(prediction_tokens, n)
    match = sum(min(count, pred[g]) for g, count in tgt.items())
    p = match / max(sum(pred.values()), 1)
    r = match / max(sum(tgt.values()), 1)
    return Score(p, r, fmeasure(p, r))


# ----------------------------------------------------------------------------- ROUGE-L
def lcs_table(t: Sequence[str], p: Sequence[str]) -> list[list[int]]:
    """``L[i][j]``: the length of the longest common subsequence of ``t[:i]`` and ``p[:j]``."""
    L = [[0] * (len(p) + 1) for _ in range(len(t) + 1)]
    for i in range(1, len(t) + 1):
        for j in range(1, len(p) + 1):
            L[i][j] = L[i - 1][j - 1] + 1 if t[i - 1] == p[j - 1] else max(L[i - 1][j], L[i][j - 1])
    return L


def lcs_positions(t: Sequence[str], p: Sequence[str]) -> list[int]:
    """The positions in ``t`` of one longest common subsequence with ``p``, chosen as the reference
    chooses among ties (module docstring)."""
    L = lcs_table(t, p)
    i, j, positions = len(t), len(p), []
    while i > 0 and j > 0:
        if t[i - 1] == p[j - 1]:
            positions.append(i - 1)
            i, j = i - 1, j - 1
        elif L[i][j - 1] > L[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return positions[::-1]


def rouge_l(target_tokens: Sequence[str], prediction_tokens: Sequence[str]) -> Score:
    """ROUGE-L: LCS / |prediction| and LCS / |target|."""
    if not target_tokens or not prediction_tokens:
        return Score(0.0, 0.0, 0.0)
    lcs = lcs_table(target_tokens, prediction_tokens)[-1][-1]
    p, r = lcs / len(prediction_tokens), lcs / len(target_tokens)
    return Score(p, r, fmeasure(p, r))


def rouge_lsum(target_sentences: Sequence[Sequence[str]], prediction_sentences: Sequence[Sequence[str]]
               ) -> Score:
    """ROUGE-Lsum: the union LCS of each target sentence with every prediction sentence, its tokens
    counted at most as often as each whole text has them."""
    m = sum(len(s) for s in target_sentences)
    n = sum(len(s) for s in prediction_sentences)
    if not m or not n:
        return Score(0.0, 0.0, 0.0)
    left_tgt = Counter(tok for s in target_sentences for tok in s)
    left_pred = Counter(tok for s in prediction_sentences for tok in s)
    hits = 0
    for r in target_sentences:
        union = sorted(set().union(*(lcs_positions(r, c) for c in prediction_sentences)))
        for tok in (r[i] for i in union):
            if left_tgt[tok] > 0 and left_pred[tok] > 0:
                hits += 1
                left_tgt[tok] -= 1
                left_pred[tok] -= 1
    precision, recall = hits / n, hits / m      # not p, r: r is a target sentence above
    return Score(precision, recall, fmeasure(precision, recall))


# ----------------------------------------------------------------------------- the API
def rouge(target: str, prediction: str, rouge_types: Sequence[str] = DEFAULT_TYPES, use_stemmer: bool = False,
          tokenizer: Tokenizer | Callable[[str], list[str]] | None = None) -> dict[str, Score]:
    """ROUGE of ``prediction`` against ``target`` (the reference's order: target first): a dict
    type -> :class:`Score` (precision, recall, fmeasure) for each of ``rouge_types``: "rougeN" for
    any N >= 1, "rougeL", "rougeLsum". ``tokenizer``: any object with ``tokenize(text) -> list``
    (such as :class:`PerCharacterTokenizer` for Chinese) or a function text -> list; by default the
    reference's (:class:`DefaultTokenizer`, stemming when ``use_stemmer``). Equal to
    ``rouge_score.rouge_scorer.RougeScorer(rouge_types, use_stemmer).score(target, prediction)``."""
    for name, text in (("target", target), ("prediction", prediction)):
        if not isinstance(text, str):
            raise UsageError(f"{name} must be a string, got {type(text).__name__} {text!r}"[:200])
    types = _check_types(rouge_types)
    tokenize = _tokenize_function(tokenizer, use_stemmer)
    tgt, pred = tokenize(target), tokenize(prediction)
    scores: dict[str, Score] = {}
    for kind in types:
        if kind == "rougeL":
            scores[kind] = rouge_l(tgt, pred)
        elif kind == "rougeLsum":
            scores[kind] = rouge_lsum([tokenize(s) for s in target.split("\n") if s],
                                      [tokenize(s) for s in prediction.split("\n") if s])
        else:
            scores[kind] = rouge_n(tgt, pred, int(kind[5:]))
    return scores


def _check_types(rouge_types: Sequence[str]) -> list[str]:
    if isinstance(rouge_types, str) or not isinstance(rouge_types, (list, tuple)) or not rouge_types:
        raise UsageError(f"rouge_types must be a non-empty list such as {list(DEFAULT_TYPES)}, got {rouge_types!r}")
    for kind in rouge_types:
        match = _ROUGE_N.fullmatch(kind) if isinstance(kind, str) else None
        if kind not in ("rougeL", "rougeLsum") and (match is None or int(match.group(1)) < 1):
            raise UsageError(f"unknown ROUGE type {kind!r}: expected 'rougeN' with N >= 1 (rouge1, rouge2, "
                             f"...), 'rougeL' or 'rougeLsum'")
    return list(rouge_types)


def _tokenize_function(tokenizer: Tokenizer | Callable[[str], list[str]] | None, use_stemmer: bool
                       ) -> Callable[[str], list[str]]:
    if tokenizer is None:
        return DefaultTokenizer(use_stemmer).tokenize
    if hasattr(tokenizer, "tokenize") and callable(tokenizer.tokenize):
        return tokenizer.tokenize
    if callable(tokenizer):
        return tokenizer
    raise UsageError(f"tokenizer must have a tokenize(text) method or be a function text -> tokens, "
                     f"got {type(tokenizer).__name__}")
