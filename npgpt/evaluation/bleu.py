r"""BLEU (Papineni et al., 2002), as sacrebleu computes it (document section 8).

For a corpus of hypotheses $h_s$, each with one or more references $r_{s,1..R}$, count for every
order $n = 1..4$ the hypothesis n-grams and how many of them a reference holds, each n-gram's
count clipped at the most any one reference has of it:

$$m_n = \sum_s \sum_{g \in \text{n-grams}(h_s)} \min\big(c_{h_s}(g),\ \max_j c_{r_{s,j}}(g)\big),\qquad
  t_n = \sum_s \big(|h_s| - n + 1\big)^+,\qquad p_n = m_n / t_n$$

Short hypotheses would score high precisions, so a brevity penalty compares the corpus's
hypothesis length $c = \sum_s |h_s|$ with its reference length $r = \sum_s r_s$, where $r_s$ is the
reference length closest to $|h_s|$ (the shorter one on a tie):

$$\mathrm{BP} = \begin{cases} 1 & c \ge r \\ e^{\,1 - r/c} & 0 < c < r \\ 0 & c = 0\end{cases},\qquad
  \mathrm{BLEU} = \mathrm{BP}\cdot\exp\Big(\frac1N \sum_{n=1}^{N} \log p_n\Big)$$

reported times 100. The counts are summed over the corpus *before* dividing: corpus BLEU is not a
mean of sentence BLEUs.

**Smoothing** (Chen and Cherry, 2014) decides what a zero $m_n$ does to the geometric mean:
``none`` leaves it (BLEU is then 0), ``floor`` uses $p_n = \epsilon / t_n$ ($\epsilon$ = 0.1),
``add-k`` uses $p_n = (m_n + k)/(t_n + k)$ for $n \ge 2$ ($k$ = 1), ``exp`` (the default, mteval's)
uses $p_n = 1/(2^{z}\, t_n)$ for the $z$-th zero precision. When no n-gram of any order matches,
BLEU is 0 whatever the smoothing. **Effective order** (sentence BLEU) averages only the orders
the hypothesis is long enough to have ($t_n > 0$).

Quirks kept so the numbers equal sacrebleu's: with ``add-k`` the ``counts`` and ``totals`` reported
for orders 2 and up include the added $k$ (sacrebleu reports them so); a zero precision enters the
logarithm as $-9999999999$; the hypothesis and each reference lose trailing whitespace before
tokenizing (after lowercasing, with ``lowercase=True``).
"""
import importlib.metadata
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from ..checks import UsageError
from .bleu_tokenizers import get_tokenizer

MAX_ORDER = 4
SmoothMethod = Literal["none", "floor", "add-k", "exp"]
BleuTokenizer = Literal["13a", "intl", "char", "zh", "none"]     # bleu_tokenizers.TOKENIZERS
SMOOTH_DEFAULTS: dict[str, float | None] = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}
LOG_ZERO = -9999999999       # what log(0) counts as in the mean of the log precisions


class BLEUScore:
    """A BLEU result: ``score`` (0-100), ``counts`` $m_n$, ``totals`` $t_n$, ``precisions`` (percent),
    ``bp``, ``ratio`` = c / r, ``sys_len`` c, ``ref_len`` r; :meth:`format` gives the one-line report
    with its signature."""

    def __init__(self, score: float, counts: Sequence[float], totals: Sequence[float],
                 precisions: Sequence[float], bp: float, sys_len: int, ref_len: int, signature: str) -> None:
        self.score, self.counts, self.totals, self.precisions = score, counts, totals, precisions
        self.bp, self.sys_len, self.ref_len = bp, sys_len, ref_len
        self.ratio = sys_len / ref_len if ref_len else 0
        self.signature = signature

    def format(self, width: int = 2, signature: bool = True) -> str:
        """``BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:npgpt-0.1.0 = 25.00 60.0/...``:
        the score, the four precisions, BP, the length ratio and the lengths (sacrebleu's layout)."""
        head = f"BLEU|{self.signature}" if signature else "BLEU"
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"{head} = {self.score:.{width}f} {precisions} (BP = {self.bp:.3f} ratio = {self.ratio:.3f} "
                f"hyp_len = {self.sys_len:d} ref_len = {self.ref_len:d})")

    def __repr__(self) -> str:
        return self.format()


# ----------------------------------------------------------------------------- the formula
def ngram_counts(tokens: Sequence[str], max_order: int = MAX_ORDER) -> Counter[tuple[str, ...]]:
    """c(g) for every n-gram g of ``tokens`` (tuples) with 1 <= n <= max_order."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def closest_ref_len(hyp_len: int, ref_lens: Iterable[int]) -> int:
    """$r_s$: the reference length closest to the hypothesis length, the shorter one on a tie."""
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


def segment_statistics(hyp_tokens: Sequence[str], refs_tokens: Sequence[Sequence[str]],
                       max_order: int = MAX_ORDER) -> tuple[int, int, list[int], list[int]]:
    """(|h|, r_s, matches per order, totals per order) of one hypothesis against its references."""
    max_ref: Counter[tuple[str, ...]] = Counter()      # max_j c_{r_j}(g): the clip of each n-gram
    for ref in refs_tokens:
        max_ref |= ngram_counts(ref, max_order)
    matches, totals = [0] * max_order, [0] * max_order
    for g, count in ngram_counts(hyp_tokens, max_order).items():
        n = len(g) - 1
        totals[n] += count
        matches[n] += min(count, max_ref[g])
    return len(hyp_tokens), closest_ref_len(len(hyp_tokens), [len(r) for r in refs_tokens]), matches, totals


def compute_bleu(matches: Iterable[float], totals: Iterable[float], sys_len: int, ref_len: int,
                 smooth_method: SmoothMethod = "exp", smooth_value: float | None = None,
                 effective_order: bool = False, signature: str = "") -> BLEUScore:
    """BLEU from the corpus sums: the brevity penalty, the smoothed precisions, their geometric mean."""
    if smooth_value is None:
        # a number for add-k and floor, the two methods that use it; mypy cannot follow that, hence
        # the three ignore comments below
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    matches, totals = list(matches), list(totals)
    max_order = len(matches)
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    precisions = [0.0] * max_order
    if not any(matches):                     # nothing matched: 0 whatever the smoothing
        return BLEUScore(0.0, matches, totals, precisions, bp, sys_len, ref_len, signature)
    zeros_seen, order = 0, max_order
    for n in range(max_order):
        if smooth_method == "add-k" and n > 0:
            matches[n] += smooth_value      # type: ignore[operator]
            totals[n] += smooth_value       # type: ignore[operator]
        if totals[n] == 0:                   # the hypotheses are too short for this order
            break
        if effective_order:
            order = n + 1
        if matches[n] > 0:
            precisions[n] = 100.0 * matches[n] / totals[n]
        elif smooth_method == "exp":
            zeros_seen += 1
            precisions[n] = 100.0 / (2 ** zeros_seen * totals[n])
        elif smooth_method == "floor":
            precisions[n] = 100.0 * smooth_value / totals[n]   # type: ignore[operator]
    log_mean = sum(math.log(p) if p > 0 else LOG_ZERO for p in precisions[:order]) / order
    return BLEUScore(bp * math.exp(log_mean), matches, totals, precisions, bp, sys_len, ref_len, signature)


# ----------------------------------------------------------------------------- the API
def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str | None]], tokenize: BleuTokenizer = "13a",
         smooth_method: SmoothMethod = "exp", smooth_value: float | None = None, lowercase: bool = False,
         effective_order: bool = False) -> BLEUScore:
    """Corpus BLEU of the hypotheses ``hyps`` (a list of strings) against ``refs``, a list of
    reference *streams*, each a list parallel to ``hyps`` (sacrebleu's layout: ``refs[j][s]`` is
    the j-th reference of sentence s). A reference may be None where a sentence has fewer
    references than others. Returns a :class:`BLEUScore`, equal to ``sacrebleu.corpus_bleu``.

    ``tokenize``: "13a", "intl", "char", "zh" or "none" (:mod:`npgpt.evaluation.bleu_tokenizers`);
    ``smooth_method``: "exp", "floor", "add-k" or "none", ``smooth_value`` its epsilon or k (None:
    0.1 for floor, 1 for add-k); ``lowercase``: compare lowercased text.
    """
    tokenizer = get_tokenizer(tokenize)
    smooth_method, smooth_value = _check_smoothing(smooth_method, smooth_value)
    hyps, refs = _check_corpus(hyps, refs)

    def tokens(line: str) -> list[str]:
        return tokenizer((line.lower() if lowercase else line).rstrip()).split()

    sys_len = ref_len = 0
    matches, totals = [0] * MAX_ORDER, [0] * MAX_ORDER
    n_refs: set[int] = set()
    for s, hyp in enumerate(hyps):
        given = [ref for ref in (stream[s] for stream in refs) if ref is not None]
        n_refs.add(len(given))
        h, r, m, t = segment_statistics(tokens(hyp), [tokens(ref) for ref in given])
        sys_len, ref_len = sys_len + h, ref_len + r
        matches = [a + b for a, b in zip(matches, m)]
        totals = [a + b for a, b in zip(totals, t)]
    signature = _signature(n_refs.pop() if len(n_refs) == 1 else "var", lowercase, effective_order,
                           tokenize, smooth_method, smooth_value)
    return compute_bleu(matches, totals, sys_len, ref_len, smooth_method, smooth_value, effective_order,
                        signature)


def sentence_bleu(hyp: str, refs: Sequence[str], tokenize: BleuTokenizer = "13a",
                  smooth_method: SmoothMethod = "exp", smooth_value: float | None = None,
                  lowercase: bool = False) -> BLEUScore:
    """BLEU of one hypothesis string against a list of reference strings, with effective order
    (orders longer than the hypothesis are left out of the mean), as ``sacrebleu.sentence_bleu``."""
    if not isinstance(hyp, str):
        raise UsageError(f"hyp must be a string, got {type(hyp).__name__} {hyp!r}")
    if isinstance(refs, str) or not isinstance(refs, (list, tuple)) or not refs:
        raise UsageError(f"refs must be a non-empty list of reference strings, got {_show(refs)}")
    return bleu([hyp], [[ref] for ref in refs], tokenize, smooth_method, smooth_value, lowercase,
                effective_order=True)


# ----------------------------------------------------------------------------- checks and signature
def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_smoothing(method: SmoothMethod, value: float | None) -> tuple[SmoothMethod, float | None]:
    if not isinstance(method, str) or method not in SMOOTH_DEFAULTS:
        raise UsageError(f"smooth_method must be one of {tuple(SMOOTH_DEFAULTS)}, got {method!r}")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value < 0):
        raise UsageError(f"smooth_value must be None or a finite number >= 0, got {value!r}")
    return method, value


def _check_corpus(hyps: Sequence[str], refs: Sequence[Sequence[str | None]]
                  ) -> tuple[list[str], list[list[str | None]]]:
    """hyps (list of str) and refs (list of streams, each as long as hyps, of str or None)."""
    if isinstance(hyps, str) or not isinstance(hyps, (list, tuple)) or not hyps:
        raise UsageError(f"hyps must be a non-empty list of hypothesis strings, got {_show(hyps)}")
    if isinstance(refs, str) or not isinstance(refs, (list, tuple)) or not refs:
        raise UsageError(f"refs must be a non-empty list of reference streams (each a list of strings "
                         f"parallel to hyps), got {_show(refs)}")
    for s, hyp in enumerate(hyps):
        if not isinstance(hyp, str):
            raise UsageError(f"hyps[{s}] must be a string, got {type(hyp).__name__} {_show(hyp)}")
    for j, stream in enumerate(refs):
        if isinstance(stream, str) or not isinstance(stream, (list, tuple)):
            raise UsageError(f"refs[{j}] must be a list of reference strings parallel to hyps (refs is a "
                             f"list of streams, as sacrebleu takes it), got {_show(stream)}")
        if len(stream) != len(hyps):
            raise UsageError(f"refs[{j}] has {len(stream)} references but there are {len(hyps)} "
                             f"hypotheses: each reference stream must be parallel to hyps")
        for s, ref in enumerate(stream):
            if ref is not None and not isinstance(ref, str):
                raise UsageError(f"refs[{j}][{s}] must be a string (or None for no reference), got "
                                 f"{type(ref).__name__} {_show(ref)}")
    for s in range(len(hyps)):
        if all(stream[s] is None for stream in refs):
            raise UsageError(f"hypothesis {s} has no reference: every refs[j][{s}] is None")
    return list(hyps), [list(stream) for stream in refs]


def _signature(n_refs: int | str, lowercase: bool, effective_order: bool, tokenize: str, smooth_method: str,
               smooth_value: float | None) -> str:
    """sacrebleu's signature, with npgpt's version (its installed metadata) in place of sacrebleu's."""
    smooth = smooth_method
    if SMOOTH_DEFAULTS[smooth_method] is not None:
        smooth += f"[{SMOOTH_DEFAULTS[smooth_method] if smooth_value is None else smooth_value:.2f}]"
    return (f"nrefs:{n_refs}|case:{'lc' if lowercase else 'mixed'}|eff:{'yes' if effective_order else 'no'}"
            f"|tok:{tokenize}|smooth:{smooth}|version:npgpt-{_npgpt_version()}")


def _npgpt_version() -> str:
    """npgpt's version as installed (``pip install -e .`` records it); the package root is not
    imported for it, since it sits above this floor."""
    try:
        return importlib.metadata.version("npgpt")
    except importlib.metadata.PackageNotFoundError:      # run from a source tree that was never installed
        return "unknown"
