"""Exercise mode grades algorithms, not only numbers (issue 25, item 2): for every exercise, at
least three plausible wrong solutions -- a sign error, a missing term, a transposed matrix,
leftmost-first BPE, an off-by-one -- are graded FAILED, with a message that points at the mistake
(the output that is wrong, the case built to catch it, the factor or the shape), and the reference
passes.

Each wrong solution is listed with the words its failure message must contain: the name of the
wrong output and what the grader says about it, or the label of the case that exposes the mistake."""
import itertools
import math

import numpy as np
import pytest

from npgpt.exercises import ALL_EXERCISES, check, reset_hints, solution
from npgpt.ops import causal_mask, merge_heads, split_heads

WRONG: dict[str, list[tuple[str, object, list[str]]]] = {}


def wrong(name: str, *must_say: str):
    """Register the decorated function as a wrong solution of ``name`` whose failure message must
    contain every one of ``must_say``."""
    def register(fn):
        WRONG.setdefault(name, []).append((fn.__name__, fn, list(must_say)))
        return fn
    return register


# ---------------------------------------------------------------------- linear
def _linear(dout, cache):
    x, W, has_bias = cache
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    return x2, d2, W, has_bias


@wrong("linear_backward", "output dW has shape (5, 4) (transposed?); expected (4, 5)")
def linear_dW_transposed(dout, cache):
    x2, d2, W, has_bias = _linear(dout, cache)
    return (dout @ W.T, d2.T @ x2, d2.sum(0) if has_bias else None)


@wrong("linear_backward", "output db", "every entry is 0.1667 x the expected one")
def linear_db_mean_not_sum(dout, cache):
    x2, d2, W, has_bias = _linear(dout, cache)
    return (dout @ W.T, x2.T @ d2, d2.mean(0) if has_bias else None)


@wrong("linear_backward", "output dx", "every entry is -1 x the expected one")
def linear_dx_sign(dout, cache):
    x2, d2, W, has_bias = _linear(dout, cache)
    return (-(dout @ W.T), x2.T @ d2, d2.sum(0) if has_bias else None)


@wrong("linear_backward", "case 4 of 4 (square W", "output dW, shape (3, 3)")
def linear_dW_transposed_only_when_square(dout, cache):
    x2, d2, W, has_bias = _linear(dout, cache)
    dW = x2.T @ d2
    return (dout @ W.T, dW.T if dW.shape[0] == dW.shape[1] else dW, d2.sum(0) if has_bias else None)


# ---------------------------------------------------------------------- embedding
@wrong("embedding_backward", "case 1 of 3 (ids (2, 5) in a vocabulary of 4: every id repeats)", "output dW")
def embedding_assigns(dout, cache):
    idx, shape = cache
    dW = np.zeros(shape)
    dW[idx] += dout                  # fancy-index assignment: repeats overwrite
    return dW


@wrong("embedding_backward", "output dW has shape (3, 4) (transposed?); expected (4, 3)")
def embedding_transposed(dout, cache):
    idx, shape = cache
    dW = np.zeros(shape)
    np.add.at(dW, idx, dout)
    return dW.T


@wrong("embedding_backward", "case 3 of 3 (one id: [[2]], vocabulary 6)", "output dW has shape (3, 3); expected (6, 3)")
def embedding_sized_by_largest_id(dout, cache):
    idx, shape = cache
    dW = np.zeros((int(idx.max()) + 1, shape[1]))     # off by the ids never seen
    np.add.at(dW, idx, dout)
    return dW


# ---------------------------------------------------------------------- LayerNorm
def _layernorm(dout, cache, mean_term=True, var_term=True, var_sign=-1.0):
    xhat, rstd, w, has_bias = cache
    g = dout * w
    C = w.shape[0]
    dx = g.copy()
    if mean_term:
        dx -= g.mean(-1, keepdims=True)
    if var_term:
        dx += var_sign * xhat * (g * xhat).mean(-1, keepdims=True)
    return (rstd * dx, (dout * xhat).reshape(-1, C).sum(0), dout.reshape(-1, C).sum(0) if has_bias else None)


@wrong("layernorm_backward", "output dx", "right: dw, db", "gradient check", "x ")
def layernorm_without_the_mean_term(dout, cache):
    return _layernorm(dout, cache, mean_term=False)


@wrong("layernorm_backward", "output dx", "right: dw, db")
def layernorm_without_the_variance_term(dout, cache):
    return _layernorm(dout, cache, var_term=False)


@wrong("layernorm_backward", "output dx", "right: dw, db")
def layernorm_variance_term_sign(dout, cache):
    return _layernorm(dout, cache, var_sign=+1.0)


# ---------------------------------------------------------------------- GELU
_K = math.sqrt(2.0 / math.pi)


@wrong("gelu_backward", "output dx", "gradient check")
def gelu_without_the_tanh_term(dout, cache):
    x, t = cache
    return dout * 0.5 * (1.0 + t)                       # the product rule's second term is missing


@wrong("gelu_backward", "output dx")
def gelu_du_without_the_three(dout, cache):
    x, t = cache
    du = _K * (1.0 + 0.044715 * x ** 2)                 # d/dx x^3 is 3 x^2
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


@wrong("gelu_backward", "output dx")
def gelu_forgets_dout(dout, cache):
    x, t = cache
    du = _K * (1.0 + 3 * 0.044715 * x ** 2)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


# ---------------------------------------------------------------------- dropout
@wrong("dropout_backward", "case 3 of 3 (evaluation mode: the cache is None)", "your function raised TypeError")
def dropout_forgets_evaluation_mode(dout, cache):
    return dout * cache


@wrong("dropout_backward", "output dx", "every entry is 2 x the expected one")
def dropout_scales_twice(dout, cache):
    return dout if cache is None else dout * cache * cache


@wrong("dropout_backward", "output dx", "every entry is 0.5 x the expected one")
def dropout_forgets_the_scale(dout, cache):
    return dout if cache is None else dout * (cache > 0)


# ---------------------------------------------------------------------- softmax
@wrong("softmax_backward", "output dz", "gradient check", "z ")
def softmax_diagonal_only(dout, s):
    return s * dout


@wrong("softmax_backward", "output dz", "every entry is -1 x the expected one")
def softmax_sign(dout, s):
    return s * (np.sum(dout * s, axis=-1, keepdims=True) - dout)


@wrong("softmax_backward", "output dz")
def softmax_sum_over_the_wrong_axis(dout, s):
    return s * (dout - np.sum(dout * s, axis=0, keepdims=True))


# ---------------------------------------------------------------------- cross-entropy
def _ce(dloss, cache, by_rows=False, use_dloss=True, onehot=True):
    probs, rows, targets, n_scored = cache
    d = np.zeros_like(probs)
    d[rows] = probs[rows]
    if onehot:
        d[rows, targets[rows]] -= 1.0
    d /= len(probs) if by_rows else n_scored
    return d * dloss if use_dloss else d


@wrong("cross_entropy_backward", "case 2 of 3 (logits (6, 5), two targets ignored", "output dlogits",
       "every entry is 0.6667 x the expected one")
def cross_entropy_divides_by_all_rows(dloss, cache):
    return _ce(dloss, cache, by_rows=True)


@wrong("cross_entropy_backward", "case 1 of 3 (logits (4, 6), dloss = 1)", "does every term use the upstream gradient?")
def cross_entropy_forgets_dloss(dloss, cache):
    return _ce(dloss, cache, use_dloss=False)


@wrong("cross_entropy_backward", "case 1 of 3", "output dlogits")
def cross_entropy_forgets_the_onehot(dloss, cache):
    return _ce(dloss, cache, onehot=False)


# ---------------------------------------------------------------------- attention
def _attention(dy, cache, scale=True, full_softmax=True, dv_transposed=True):
    A, q, k, v = cache.softmax, cache.q, cache.k, cache.v
    s = cache.scale if scale else 1.0
    def T(a):
        return np.swapaxes(a, -1, -2)
    dv = T(A) @ dy if dv_transposed else A @ dy
    dA = dy @ T(v)
    dS = A * (dA - np.sum(dA * A, -1, keepdims=True)) if full_softmax else A * dA
    return dS @ k * s, T(dS) @ q * s, dv


@wrong("attention_backward", "output dq", "every entry is 2 x the expected one", "right: dv")
def attention_without_the_scale(dy, cache):
    return _attention(dy, cache, scale=False)


@wrong("attention_backward", "output dq", "output dk", "right: dv")
def attention_diagonal_softmax(dy, cache):
    return _attention(dy, cache, full_softmax=False)


@wrong("attention_backward", "output dv", "right: dq, dk")
def attention_dv_without_the_transpose(dy, cache):
    return _attention(dy, cache, dv_transposed=False)


# ---------------------------------------------------------------------- block
def _block(dy, cache, first_residual=True, second_residual=True, bias_keys=True):
    from npgpt.ops import dropout_backward, layernorm_backward, mlp_backward, self_attention_backward
    g = {}
    dm_in, g["mlp.c_fc.weight"], g["mlp.c_fc.bias"], g["mlp.c_proj.weight"], g["mlp.c_proj.bias"] = \
        mlp_backward(dropout_backward(dy, cache.drop_2), cache.mlp)
    dh_branch, g["ln_2.weight"], g["ln_2.bias"] = layernorm_backward(dm_in, cache.ln_2)
    dh = dy + dh_branch if second_residual else dh_branch
    da_in, g["attn.c_attn.weight"], g["attn.c_attn.bias"], g["attn.c_proj.weight"], g["attn.c_proj.bias"] = \
        self_attention_backward(dropout_backward(dh, cache.drop_1), cache.attn)
    dx_branch, g["ln_1.weight"], g["ln_1.bias"] = layernorm_backward(da_in, cache.ln_1)
    dx = dh + dx_branch if first_residual else dx_branch
    return dx, {k: v for k, v in g.items() if v is not None or not bias_keys}


@wrong("block_backward", "output dx", "gradient check")
def block_without_the_first_residual(dy, cache):
    return _block(dy, cache, first_residual=False)


@wrong("block_backward", "output dx", "output grads['attn.c_attn.weight']")
def block_without_the_second_residual(dy, cache):
    return _block(dy, cache, second_residual=False)


@wrong("block_backward", "case 2 of 2 (x (1, 4, 6), 3 heads, no biases)", "output grads has the wrong keys: unexpected")
def block_keeps_absent_biases(dy, cache):
    return _block(dy, cache, bias_keys=False)


# ---------------------------------------------------------------------- LSTM
def _lstm(dh_new, dc_new, cache, through_h=True, forget_gate=True, order=(0, 1, 2, 3)):
    x, h, c, w_ih, w_hh, i, f, g, o, tc, has_bias = cache
    dc_total = dc_new + (dh_new * o * (1.0 - tc * tc) if through_h else 0.0)
    do, di, df, dg = dh_new * tc, dc_total * g, dc_total * c, dc_total * i
    dc = dc_total * f if forget_gate else dc_total
    parts = [di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)]
    da = np.concatenate([parts[j] for j in order], axis=-1)
    db = da.sum(0) if has_bias else None
    return da @ w_ih, da @ w_hh, dc, da.T @ x, da.T @ h, db, db


@wrong("lstm_cell_backward", "output dc", "gradient check")
def lstm_cell_without_the_path_through_h(dh_new, dc_new, cache):
    return _lstm(dh_new, dc_new, cache, through_h=False)


@wrong("lstm_cell_backward", "output dc", "right: dx, dh, dw_ih, dw_hh, db_ih, db_hh")
def lstm_cell_dc_without_the_forget_gate(dh_new, dc_new, cache):
    return _lstm(dh_new, dc_new, cache, forget_gate=False)


@wrong("lstm_cell_backward", "output dx", "output dw_ih", "right: dc")
def lstm_cell_gates_in_the_wrong_order(dh_new, dc_new, cache):
    return _lstm(dh_new, dc_new, cache, order=(0, 1, 3, 2))          # i, f, o, g: Keras's order


# ---------------------------------------------------------------------- BPE training step
def _merge_step(words, counts, weighted=True, largest_on_ties=False, skip=2, from_the_right=False):
    pairs = {}
    for word, n in zip(words, counts):
        for ab in itertools.pairwise(word):
            pairs[ab] = pairs.get(ab, 0) + (n if weighted else 1)
    sign = -1 if largest_on_ties else 1
    best = min(pairs, key=lambda ab: (-pairs[ab], tuple(sign * t for t in ab)))
    merged = []
    for word in words:
        word = word[::-1] if from_the_right else word
        pair = best[::-1] if from_the_right else best
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(256)
                i += skip
            else:
                out.append(word[i])
                i += 1
        merged.append(out[::-1] if from_the_right else out)
    return best, pairs[best], merged


@wrong("bpe_merge_step", "case 1 of 4", "output count is 2; expected 9")
def bpe_step_ignores_the_counts(words, counts):
    return _merge_step(words, counts, weighted=False)


@wrong("bpe_merge_step", "case 1 of 4", "e s and s t tie at 9", "output pair is (115, 116); expected (101, 115)",
       "right: count")
def bpe_step_largest_pair_on_ties(words, counts):
    return _merge_step(words, counts, largest_on_ties=True)


@wrong("bpe_merge_step", "case 1 of 4", "output merged", "right: pair, count")
def bpe_step_keeps_the_second_byte(words, counts):
    return _merge_step(words, counts, skip=1)                   # e s t becomes 256 s t


@wrong("bpe_merge_step", "case 2 of 4 (\"aaa\" (overlapping pairs: a a a becomes aa a)",
       "output merged is [[97, 256], [97, 98]]; expected [[256, 97], [97, 98]]", "right: pair, count")
def bpe_step_merges_from_the_right(words, counts):
    return _merge_step(words, counts, from_the_right=True)


# ---------------------------------------------------------------------- BPE encoding
def _parts(piece):
    return [piece[i:i + 1] for i in range(len(piece))]


@wrong("bpe_encode_piece", "case 1 of 9", "the lowest rank merges first (bc), not the leftmost pair (ab)",
       "output ids is [257, 99]; expected [97, 256]")
def bpe_leftmost_first(ranks, piece):
    parts = _parts(piece)
    while True:
        for i in range(len(parts) - 1):
            if parts[i] + parts[i + 1] in ranks:
                parts[i:i + 2] = [parts[i] + parts[i + 1]]
                break
        else:
            return [ranks[p] for p in parts]


@wrong("bpe_encode_piece", "case 2 of 9", "two equal candidates, the leftmost merges",
       "output ids is [97, 256]; expected [256, 97]")
def bpe_rightmost_on_ties(ranks, piece):
    parts = _parts(piece)
    while True:
        found = [(ranks[parts[i] + parts[i + 1]], -i) for i in range(len(parts) - 1) if parts[i] + parts[i + 1] in ranks]
        if not found:
            return [ranks[p] for p in parts]
        i = -min(found)[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


@wrong("bpe_encode_piece", "case 3 of 9", "merged tokens merge again", "output ids is [256, 99, 100]; expected [258]")
def bpe_one_merge_only(ranks, piece):
    parts = _parts(piece)
    found = [(ranks[parts[i] + parts[i + 1]], i) for i in range(len(parts) - 1) if parts[i] + parts[i + 1] in ranks]
    if found:
        i = min(found)[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


# ---------------------------------------------------------------------- top-p
def _nucleus(probs, p, strict=False, normalise=True, sort=True):
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, kind="stable") if sort else np.arange(probs.size)
    cumulative = np.cumsum(probs[order])
    n = int(np.sum(cumulative < p - 1e-12)) + (0 if strict else 1)
    out = np.zeros_like(probs)
    out[order[:max(n, 1)]] = probs[order[:max(n, 1)]]
    return out / out.sum() if normalise else out


@wrong("top_p_filter", "output probs, shape (10,)")
def top_p_drops_the_crossing_token(probs, p):
    return _nucleus(probs, p, strict=True)


@wrong("top_p_filter", "output probs, shape (10,)", "a missing or extra factor?")
def top_p_without_renormalising(probs, p):
    return _nucleus(probs, p, normalise=False)


@wrong("top_p_filter", "output probs, shape (10,)")
def top_p_in_id_order(probs, p):
    return _nucleus(probs, p, sort=False)


# ---------------------------------------------------------------------- KV cache
def _kv(x, w_attn, b_attn, w_proj, b_proj, n_head, past_k, past_v, mask="right", scale=True, cache="all"):
    C = x.shape[-1]
    q, k, v = np.split(x @ w_attn + b_attn, 3, axis=-1)
    q, k_new, v_new = split_heads(q, n_head), split_heads(k, n_head), split_heads(v, n_head)
    k, v = np.concatenate([past_k, k_new], axis=2), np.concatenate([past_v, v_new], axis=2)
    n_q, n_k = q.shape[2], k.shape[2]
    M = causal_mask(n_q, n_k) if mask == "right" else np.where(np.tril(np.ones((n_q, n_k))) > 0, 0.0, -np.inf)
    S = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(C // n_head) if scale else 1.0) + M
    A = np.exp(S - S.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    out = merge_heads(A @ v) @ w_proj + b_proj
    return (out, k, v) if cache == "all" else (out, k_new, v_new)


@wrong("kv_attention_step", "case 1 of 3 (batch 2, width 4, 2 heads, 3 cached positions, 1 new)", "output out",
       "right: k, v")
def kv_mask_from_the_first_position(*args):
    return _kv(*args, mask="left")        # the new token sees only key 0, not the cache


@wrong("kv_attention_step", "output out", "right: k, v")
def kv_without_the_scale(*args):
    return _kv(*args, scale=False)


@wrong("kv_attention_step", "output k has shape (2, 2, 1, 2); expected (2, 2, 4, 2)")
def kv_returns_only_the_new_keys(*args):
    return _kv(*args, cache="new")


# ---------------------------------------------------------------------- attention, forward
def _sdpa(q, k, v, mask, scale="sqrt", axis=-1, use_mask=True, d_of="k"):
    d = (k if d_of == "k" else v).shape[-1]
    S = q @ np.swapaxes(k, -1, -2) * {"sqrt": 1 / math.sqrt(d), "none": 1.0, "d": 1 / d}[scale]
    if mask is not None and use_mask:
        S = S + mask
    A = np.exp(S - S.max(axis, keepdims=True))
    return (A / A.sum(axis, keepdims=True)) @ v


@wrong("scaled_dot_product_attention", "case 1 of 3", "the scale 1/sqrt(d_k) is 1/4", "output y")
def sdpa_without_the_scale(q, k, v, mask):
    return _sdpa(q, k, v, mask, scale="none")


@wrong("scaled_dot_product_attention", "case 1 of 3", "the scale 1/sqrt(d_k) is 1/4", "output y")
def attention_scaled_by_d(q, k, v, mask):
    return _sdpa(q, k, v, mask, scale="d")


@wrong("scaled_dot_product_attention", "case 1 of 3", "causal", "output y")
def attention_softmax_over_the_queries(q, k, v, mask):
    return _sdpa(q, k, v, mask, axis=-2)


@wrong("scaled_dot_product_attention", "case 1 of 3", "causal", "output y")
def attention_ignores_the_mask(q, k, v, mask):
    return _sdpa(q, k, v, mask, use_mask=False)


@wrong("scaled_dot_product_attention", "case 1 of 3", "v (1, 2, 4, 3)", "the scale 1/sqrt(d_k) is 1/4", "output y")
def attention_scaled_by_d_v(q, k, v, mask):
    return _sdpa(q, k, v, mask, d_of="v")


# ---------------------------------------------------------------------- sinusoidal positions
def _table(P, C, swap=False, exponent="2i", first=0):
    pos = np.arange(first, first + P, dtype=float)[:, None]
    pe = np.zeros((P, C))
    for j in range(C):
        i2 = j - j % 2 if exponent == "2i" else j
        angle = pos[:, 0] * 10000.0 ** (-i2 / C)
        sine = (j % 2 == 0) != swap
        pe[:, j] = np.sin(angle) if sine else np.cos(angle)
    return pe


@wrong("sinusoidal_table", "case 1 of 3", "output table, shape (8, 6): 48 of 48 entries wrong")
def sinusoidal_sin_and_cos_swapped(n_positions, n_embd):
    return _table(n_positions, n_embd, swap=True)


@wrong("sinusoidal_table", "case 1 of 3", "output table, shape (8, 6)")
def sinusoidal_exponent_of_the_column(n_positions, n_embd):
    return _table(n_positions, n_embd, exponent="j")             # 10000^(-j/C): cosines one step too slow


@wrong("sinusoidal_table", "case 1 of 3", "output table, shape (8, 6): 48 of 48 entries wrong")
def sinusoidal_positions_from_one(n_positions, n_embd):
    return _table(n_positions, n_embd, first=1)


# ---------------------------------------------------------------------- perplexity
@wrong("perplexity_from_losses", "case 1 of 3", "unequal, so the mean of exponentials differs", "output ppl")
def perplexity_mean_of_exponentials(nlls):
    return float(np.mean(np.exp(nlls)))


@wrong("perplexity_from_losses", "case 1 of 3", "output ppl")
def perplexity_of_the_sum(nlls):
    return math.exp(float(np.sum(nlls)))


@wrong("perplexity_from_losses", "case 1 of 3", "output ppl")
def perplexity_in_base_two(nlls):
    return 2.0 ** float(np.mean(nlls))


# ---------------------------------------------------------------------- BLEU
def _ngrams(tokens, n, off_by_one=False):
    from collections import Counter
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + (0 if off_by_one else 1)))


def _clipped(hyp, refs, n, clip="max", off_by_one=False):
    from collections import Counter
    counts = _ngrams(hyp, n, off_by_one)
    ref_counts = [_ngrams(r, n, off_by_one) for r in refs]
    if clip == "max":
        limit = Counter()
        for c in ref_counts:
            limit |= c
    elif clip == "sum":
        limit = sum(ref_counts, Counter())
    else:
        limit = None
    matches = sum(c if limit is None and any(g in r for r in ref_counts) else min(c, (limit or {}).get(g, 0))
                  for g, c in counts.items())
    return matches, sum(counts.values())


@wrong("clipped_precision", "case 1 of 4", '"the" counts at most as often as in one reference (2)',
       "output matches is 7; expected 2")
def bleu_precision_without_clipping(hyp, refs, n):
    return _clipped(hyp, refs, n, clip=None)


@wrong("clipped_precision", "case 1 of 4", "as often as in one reference (2)", "output matches is 3; expected 2",
       "right: total")
def bleu_clip_by_the_sum_of_references(hyp, refs, n):
    return _clipped(hyp, refs, n, clip="sum")


@wrong("clipped_precision", "case 1 of 4", "output total is 6; expected 7")
def bleu_ngram_range_off_by_one(hyp, refs, n):
    return _clipped(hyp, refs, n, off_by_one=True)


def _bp(hyp_len, ref_lens, pick="closest", inverted=False, cap=True):
    r = {"closest": min(ref_lens, key=lambda L: (abs(L - hyp_len), L)), "shortest": min(ref_lens),
         "longest": max(ref_lens)}[pick]
    if cap and hyp_len >= r:
        return 1.0
    return math.exp(1 - hyp_len / r) if inverted else math.exp(1 - r / hyp_len)


@wrong("brevity_penalty", "case 1 of 5", "the closest (7) is longer", "output bp")
def brevity_against_the_shortest_reference(hyp_len, ref_lens):
    return _bp(hyp_len, ref_lens, pick="shortest")


@wrong("brevity_penalty", "case 1 of 5", "output bp")
def brevity_exponent_inverted(hyp_len, ref_lens):
    return _bp(hyp_len, ref_lens, inverted=True)


@wrong("brevity_penalty", "case 3 of 5", "longer, no penalty", "output bp")
def brevity_without_the_cap(hyp_len, ref_lens):
    return _bp(hyp_len, ref_lens, cap=False)


@wrong("brevity_penalty", "case 4 of 5", "a tie, the shorter wins", "output bp")
def brevity_longer_reference_on_ties(hyp_len, ref_lens):
    r = min(ref_lens, key=lambda L: (abs(L - hyp_len), -L))
    return 1.0 if hyp_len >= r else math.exp(1 - r / hyp_len)


# ---------------------------------------------------------------------- ROUGE-L
def _prf(L, t, p):
    if not t or not p or L == 0:
        return 0.0, 0.0, 0.0
    P, R = L / len(p), L / len(t)
    return P, R, 2 * P * R / (P + R)


def _lcs(t, p):
    T = [[0] * (len(p) + 1) for _ in range(len(t) + 1)]
    for i in range(1, len(t) + 1):
        for j in range(1, len(p) + 1):
            T[i][j] = T[i - 1][j - 1] + 1 if t[i - 1] == p[j - 1] else max(T[i - 1][j], T[i][j - 1])
    return T[-1][-1]


@wrong("rouge_l", "case 1 of 4", "in order, not contiguous", "output precision", "output recall")
def rouge_l_longest_common_substring(target_tokens, prediction_tokens):
    t, p = target_tokens, prediction_tokens
    best = max([0] + [k for i in range(len(t)) for j in range(len(p)) for k in range(1, min(len(t) - i, len(p) - j) + 1)
                      if t[i:i + k] == p[j:j + k]])
    return _prf(best, t, p)


@wrong("rouge_l", "case 2 of 4", "the same words, reversed (LCS 1)", "output precision")
def rouge_l_bag_of_words(target_tokens, prediction_tokens):
    from collections import Counter
    common = sum((Counter(target_tokens) & Counter(prediction_tokens)).values())
    return _prf(common, target_tokens, prediction_tokens)


@wrong("rouge_l", "case 1 of 4", "output precision", "output recall", "right: fmeasure")
def rouge_l_precision_and_recall_swapped(target_tokens, prediction_tokens):
    P, R, F = _prf(_lcs(target_tokens, prediction_tokens), target_tokens, prediction_tokens)
    return R, P, F


# ---------------------------------------------------------------------- int8 quantization
def _quantize(w, axis, per_tensor=False, qmax=127, round_=np.rint, other_axis=False):
    reduce = axis if other_axis else 1 - axis
    absmax = np.abs(w).max() * np.ones((1, 1)) if per_tensor else np.abs(w).max(axis=reduce, keepdims=True)
    scale = np.maximum(absmax / qmax, np.finfo(w.dtype).tiny)
    return round_(w / scale).astype(np.int8), scale


@wrong("quantize_int8", "case 1 of 3", "channels of very different ranges", "output scale has shape (1, 1); expected (1, 4)")
def quantize_one_scale_for_the_matrix(w, axis):
    return _quantize(w, axis, per_tensor=True)


@wrong("quantize_int8", "case 1 of 3", "output scale", "every entry is 0.9922 x the expected one")
def quantize_divides_by_128(w, axis):
    return _quantize(w, axis, qmax=128)


@wrong("quantize_int8", "case 1 of 3", "output q", "right: scale")
def quantize_truncates(w, axis):
    return _quantize(w, axis, round_=np.trunc)


@wrong("quantize_int8", "case 1 of 3", "output scale has shape (6, 1); expected (1, 4)")
def quantize_along_the_other_axis(w, axis):
    return _quantize(w, axis, other_axis=True)


# ---------------------------------------------------------------------- magnitude pruning
def _prune(w, sparsity, key=np.abs, count=round, largest=False):
    scores = key(np.asarray(w)).ravel()
    order = np.argsort(-scores if largest else scores, kind="stable")
    keep = np.ones(scores.size, dtype=bool)
    keep[order[:count(sparsity * scores.size)]] = False
    return keep.reshape(np.shape(w))


@wrong("magnitude_prune", "case 1 of 4", "with large negative entries", "output keep")
def prune_by_value_not_magnitude(w, sparsity):
    return _prune(w, sparsity, key=lambda a: a)


@wrong("magnitude_prune", "case 1 of 4", "output keep")
def prune_the_largest(w, sparsity):
    return _prune(w, sparsity, largest=True)


@wrong("magnitude_prune", "case 2 of 4", "round(3.5) = 4 entries go", "output keep")
def prune_count_truncated(w, sparsity):
    return _prune(w, sparsity, count=int)


@wrong("magnitude_prune", "case 3 of 4", "among equals the earlier entry goes", "output keep")
def prune_ties_later_first(w, sparsity):
    scores = np.abs(np.asarray(w)).ravel()
    order = np.lexsort((-np.arange(scores.size), scores))    # equal magnitudes: the later entry first
    keep = np.ones(scores.size, dtype=bool)
    keep[order[:round(sparsity * scores.size)]] = False
    return keep.reshape(np.shape(w))


# ---------------------------------------------------------------------- FLOPs of a block
@wrong("block_flops", "case 1 of 3", "output flops", "(0.5 x the expected value)")
def flops_counts_multiply_adds(n_embd, rows, keys):
    return 12 * rows * n_embd ** 2 + 2 * rows * keys * n_embd


@wrong("block_flops", "case 1 of 3", "attention's products count", "output flops")
def flops_without_the_attention_products(n_embd, rows, keys):
    return 24 * rows * n_embd ** 2


@wrong("block_flops", "case 1 of 3", "output flops")
def flops_mlp_of_width_c(n_embd, rows, keys):
    return 2 * rows * (3 + 1 + 1 + 1) * n_embd ** 2 + 4 * rows * keys * n_embd


# ---------------------------------------------------------------------- KV-cache memory
@wrong("kv_cache_bytes", "case 1 of 3", "output n_bytes", "(0.5 x the expected value)")
def kv_memory_keys_only(n_layer, n_embd, batch_size, context, itemsize):
    return n_layer * batch_size * context * n_embd * itemsize


@wrong("kv_cache_bytes", "case 1 of 3", "12 layers", "(0.08333 x the expected value)")
def kv_memory_one_layer(n_layer, n_embd, batch_size, context, itemsize):
    return 2 * batch_size * context * n_embd * itemsize


@wrong("kv_cache_bytes", "case 1 of 3", "batch 4", "(0.25 x the expected value)")
def kv_memory_without_the_batch(n_layer, n_embd, batch_size, context, itemsize):
    return 2 * n_layer * context * n_embd * itemsize


# ---------------------------------------------------------------------- ring all-reduce
@wrong("ring_allreduce_seconds", "case 1 of 4", "output seconds", "(0.5 x the expected value)")
def allreduce_reduce_scatter_only(n_bytes, ranks, latency_s, bandwidth):
    return (ranks - 1) * (latency_s + n_bytes / (ranks * bandwidth))


@wrong("ring_allreduce_seconds", "case 1 of 4", "bandwidth-bound", "output seconds")
def allreduce_sends_the_whole_buffer(n_bytes, ranks, latency_s, bandwidth):
    return 2 * (ranks - 1) * (latency_s + n_bytes / bandwidth)


@wrong("ring_allreduce_seconds", "case 1 of 4", "output seconds", "(1.333 x the expected value)")
def allreduce_p_steps(n_bytes, ranks, latency_s, bandwidth):
    return 2 * ranks * (latency_s + n_bytes / (ranks * bandwidth))


# ---------------------------------------------------------------------- IsoFLOP vertex
@wrong("isoflop_vertex", "case 1 of 3", "lies between two sampled sizes", "output log_n_opt")
def isoflop_best_sample(log_n, loss):
    i = int(np.argmin(loss))
    return float(log_n[i]), float(loss[i])


@wrong("isoflop_vertex", "case 1 of 3", "output log_n_opt", "right: loss_min")
def isoflop_vertex_without_the_two(log_n, loss):
    c2, c1, c0 = np.polyfit(log_n, loss, 2)
    x = -c1 / (2 * c2)
    return -c1 / c2, c0 + c1 * x + c2 * x * x


@wrong("isoflop_vertex", "case 1 of 3", "output log_n_opt")
def isoflop_fit_in_n_not_log_n(log_n, loss):
    n = np.exp(log_n)
    c2, c1, c0 = np.polyfit(n, loss, 2)
    x = -c1 / (2 * c2)
    return float(np.log(x)), c0 + c1 * x + c2 * x * x


# ---------------------------------------------------------------------- temperature and top-k
def _top_k(logits, temperature, k, after=False, extra=0, stable=True):
    z = np.asarray(logits, dtype=float)
    z = z if after else z / temperature
    order = np.argsort(-z, kind="stable") if stable else np.argsort(-z[::-1], kind="stable")[::1]
    if not stable:
        order = z.size - 1 - order                           # equal logits: the higher id first
    keep = order[:k + extra]
    e = np.exp(z[keep] - z[keep].max())
    if after:
        e = e ** (1 / temperature)
    probs = np.zeros_like(z)
    probs[keep] = e / e.sum()
    return probs


@wrong("top_k_distribution", "case 1 of 4", "temperature 0.7", "output probs")
def top_k_without_the_temperature(logits, temperature, k):
    return _top_k(logits, 1.0, k)


@wrong("top_k_distribution", "case 1 of 4", "k = 3", "output probs")
def top_k_keeps_one_more(logits, temperature, k):
    return _top_k(logits, temperature, k, extra=1)


@wrong("top_k_distribution", "case 3 of 4", "a tie at the boundary", "keeps the lower id (1)", "output probs")
def top_k_higher_id_on_ties(logits, temperature, k):
    return _top_k(logits, temperature, k, stable=False)


# ====================================================================== the tests
@pytest.fixture(autouse=True)
def fresh_hints():
    reset_hints()
    yield
    reset_hints()


CASES = [(name, label, fn, must) for name, entries in WRONG.items() for label, fn, must in entries]


def test_every_exercise_has_three_wrong_solutions():
    few = {name: len(WRONG.get(name, [])) for name in ALL_EXERCISES if len(WRONG.get(name, [])) < 3}
    assert not few, f"exercises with fewer than three wrong solutions here: {few}"


@pytest.mark.parametrize("name, label, fn, must", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_wrong_solution_fails_and_the_message_points_at_the_mistake(name, label, fn, must):
    result = check(name, fn, verbose=False)
    assert not result.passed, f"{label} passed {name}:\n{result.message}"
    assert result.message.startswith(f"{name}: FAILED on case"), result.message
    missing = [words for words in must if words not in result.message]
    assert not missing, f"{label}: the message lacks {missing}:\n{result.message}"


@pytest.mark.parametrize("name", list(ALL_EXERCISES))
def test_the_reference_passes(name):
    result = check(name, solution(name), verbose=False)
    assert result.passed, result.message
