"""Machine translation (document section 5): English numbers and dates -> Chinese, with the
encoder-decoder the document builds (:class:`npgpt.DocumentModel`: an embedding, sinusoidal
positions, ``nn.Transformer``'s encoder and decoder, a linear output layer).

The encoder reads the whole English phrase; the decoder writes the Chinese one token at a time,
attending to it, so reordering (a date's year moves to the front) costs it nothing special. Trained by
the :class:`~npgpt.training.Trainer` (:class:`Seq2SeqForTrainer` packs the source and the decoder's
input in one array), decoded greedily and by beam search (:func:`npgpt.beam_search`, through
:class:`SourceConditioned`), scored with BLEU (``zh`` tokenizer) and exact match against the
word-for-word dictionary baseline and the copy baseline. Data: :mod:`npgpt.apps.numbers_zh`.
"""
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError, check_int
from ..decoding import beam_search
from ..evaluation import bleu
from ..models import DocumentModel
from ..models.base import Model
from ..models.document import document_model_param_shapes
from ..ops import generate_square_subsequent_mask, torch_linear_forward
from ..training import TrainConfig, Trainer
from .common import AppModel, WordTokenizer, app_training, default_checkpoint, load_app, save_app, steps
from .numbers_zh import make_pairs, word_for_word

APP = "translation"
SRC_LEN, TGT_LEN = 16, 14          # longest source: 12 tokens; longest target: 10 + <eos>
ARCH = dict(embed_dim=64, num_heads=4, num_layers=2, num_decoder_layers=2, dim_feedforward=256)
# The widest beam decoded. Each step reruns the decoder on every hypothesis (no cache), so the cost
# grows with the width, while a wider beam stops helping long before: translation quality peaks at a
# few hypotheses and then falls (the beam search curse: Koehn & Knowles 2017, "Six Challenges for
# Neural Machine Translation", section 3.6). 64 is far past that peak and still takes seconds.
MAX_BEAM = 64


def data(seed=0):
    return make_pairs(seed)


def normalize(text):
    """What the encoder reads: lower case (the vocabulary is lower case) and stripped."""
    return text.strip().lower()


class Seq2SeqForTrainer(Model):
    """``DocumentModel`` behind the Trainer's ``forward(x, y)``: ``x`` = [source | decoder input]
    (B, SRC_LEN + TGT_LEN), ``y`` the decoder's targets (B, TGT_LEN); padding is masked and not scored."""

    def __init__(self, net, pad_id):
        super().__init__(net.dtype)
        self.net, self.pad_id = net, pad_id
        self.params = net.params

    def forward(self, x, y=None):
        return self.net.forward(x[:, :SRC_LEN], x[:, SRC_LEN:], y, pad_id=self.pad_id)

    def backward(self):
        self.grads = self.net.backward()
        return self.grads


class PairBatches:
    """Batches (x = [source | decoder input], the decoder's targets) for :class:`Seq2SeqForTrainer`."""

    block_size = SRC_LEN + TGT_LEN     # the width of x, what the Trainer calls a sequence's length

    def __init__(self, arrays):
        self.arrays = arrays          # split -> (src (N, S), tgt_in (N, T), tgt_out (N, T))

    def get_batch(self, split, batch_size, block_size, rng):
        src, tgt_in, tgt_out = self.arrays[split]
        i = rng.integers(0, len(src), batch_size)
        return np.concatenate([src[i], tgt_in[i]], axis=1), tgt_out[i]


def encode_pairs(pairs, tok):
    n = len(pairs)
    src = np.full((n, SRC_LEN), tok.pad_id, dtype=np.int64)
    tgt_in = np.full((n, TGT_LEN), tok.pad_id, dtype=np.int64)
    tgt_out = np.full((n, TGT_LEN), tok.pad_id, dtype=np.int64)
    for row, (en, zh) in enumerate(pairs):
        s, t = tok.encode(normalize(en)), tok.encode(zh)
        src[row, :len(s)] = s
        tgt_in[row, :len(t) + 1] = np.concatenate([[tok.bos_id], t])
        tgt_out[row, :len(t) + 1] = np.concatenate([t, [tok.eos_id]])
    return src, tgt_in, tgt_out


@dataclass(frozen=True)
class TargetContext:
    """What decoding reads of a model's config (:class:`npgpt.decoding.generate.ContextConfig`): the
    decoder's context, in target positions, and the shared vocabulary."""
    block_size: int
    vocab_size: int


class SourceConditioned:
    """The decoder as a language model over the target, given one encoded source: what
    :func:`npgpt.beam_search` needs (``forward(idx)`` -> logits, ``config``, ``evaluating()``;
    no cache: the decoder reruns the target at each step, so beam search runs with ``use_cache=False``)."""

    def __init__(self, net, src_ids, pad_id):
        self.net = net
        es, _ = net._embed(src_ids[None])
        self.pad = net._padding(src_ids[None], pad_id)
        self.memory = net.transformer.encode(es, src_key_padding_mask=self.pad)
        self.config = TargetContext(block_size=TGT_LEN + 1, vocab_size=net.num_tokens)

    def forward(self, idx, targets=None, cache=None):
        B, T = idx.shape
        et, _ = self.net._embed(idx)
        h = self.net.transformer.decode(et, np.repeat(self.memory, B, 0),
                                        tgt_mask=generate_square_subsequent_mask(T, self.net.dtype),
                                        memory_key_padding_mask=np.repeat(self.pad, B, 0))
        logits, _ = torch_linear_forward(h, self.net.params["fc_out.weight"], self.net.params["fc_out.bias"])
        return logits, None

    def evaluating(self):
        """The encoder-decoder's evaluation mode for a block: this is its decoder."""
        return self.net.evaluating()

    def new_cache(self, batch_size=1):
        raise UsageError("the translation decoder reruns the whole target at each step: decode it with "
                         "use_cache=False")


def build(vocab_size, seed=0):
    return DocumentModel(num_tokens=vocab_size, max_seq_len=max(SRC_LEN, TGT_LEN) + 1, batch_first=True,
                         seed=seed, **ARCH)


def train(ckpt=None, max_iters=None, batch_size=64, lr=2e-3, seed=0, progress=True, log=print):
    """Train on the train split; save to ``ckpt`` if the run finishes (:class:`~npgpt.apps.common.AppTraining`)."""
    with app_training(APP, ckpt) as run:
        splits = data(seed)
        tok = WordTokenizer.from_texts([normalize(en) for en, _ in splits["train"]] +
                                       [zh for _, zh in splits["train"]])
        n = steps(1000, 60, max_iters)
        net = build(tok.vocab_size, seed)
        model = Seq2SeqForTrainer(net, tok.pad_id)
        config = TrainConfig(max_iters=n, batch_size=batch_size, lr=lr, min_lr=lr / 20, warmup_iters=min(100, n // 5),
                             weight_decay=0.01, eval_interval=n, eval_iters=4, seed=seed)
        batches = PairBatches({s: encode_pairs(splits[s], tok) for s in ("train", "val")})
        result = run.fit(Trainer(model, batches, config),
                         lambda path: save_app(path, APP, "document_model", {"num_tokens": tok.vocab_size, **ARCH},
                                               net.params, tok, {"seed": seed}), progress, log)
    return {**result, "model": net, "tokenizer": tok}


def model_config(d: dict) -> dict:
    """The checkpoint's ``model_config``, checked: ``num_tokens`` and the architecture ``ARCH``, which
    is this app's (its model is built with it; the tokenizer is checked against num_tokens)."""
    unknown = sorted(set(d) - {"num_tokens", *ARCH})
    if unknown:
        raise UsageError(f"model_config has unknown keys {unknown} for the translation model")
    missing = sorted({"num_tokens", *ARCH} - set(d))
    if missing:
        raise UsageError(f"model_config lacks {missing}")
    for key, value in ARCH.items():
        if type(d[key]) is not int or d[key] != value:
            raise UsageError(f"model_config {key} is {d[key]!r}, but the translation model's is {value}")
    return {**d, "num_tokens": check_int("num_tokens", d["num_tokens"])}


def param_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of the model ``config`` describes, allocating nothing."""
    return document_model_param_shapes(config["num_tokens"], ARCH["embed_dim"], ARCH["num_layers"],
                                       ARCH["num_decoder_layers"], ARCH["dim_feedforward"])


# The fixed architecture has a fixed number of arrays, so the entries need no bound of their own.
MODEL = AppModel(kind="document_model", config=model_config, sizes=lambda c: f"num_tokens={c['num_tokens']}",
                 entries=lambda c: len(param_shapes(c)), shapes=param_shapes, vocab_size=lambda c: c["num_tokens"])


def load(ckpt=None):
    """(model, tokenizer) of the checkpoint, checked before the model is built (common.load_app)."""
    saved = load_app(ckpt or default_checkpoint(APP), APP, MODEL, WordTokenizer.from_json)
    net = build(saved.config["num_tokens"])
    net.load_state_dict(saved.params)
    return net.eval(), saved.tokenizer


def check_beam_width(beam_width: int, vocab_size: int) -> int:
    """``beam_width``, checked: at least 1, at most :data:`MAX_BEAM` and at most the vocabulary. The
    first step extends a single hypothesis, so it can keep at most one per token; past that a wider
    beam only keeps more near-duplicates of unlikely continuations, at a cost that grows with it."""
    beam_width = check_int("beam_width", beam_width)
    if beam_width > MAX_BEAM:
        raise UsageError(f"beam_width must be at most {MAX_BEAM} (wider beams cost more and translate no "
                         f"better), got {beam_width}")
    if beam_width > vocab_size:
        raise UsageError(f"beam_width {beam_width} is more than the model's vocabulary of {vocab_size} tokens: "
                         f"a beam keeps at most one hypothesis per token at its first step")
    return beam_width


def translate_ids(net, tok, src, beam_width=1):
    """Greedy (batched) or beam decoding of encoded sources (N, SRC_LEN) -> list of Chinese strings."""
    beam_width = check_beam_width(beam_width, tok.vocab_size)
    if beam_width == 1:
        out = net.greedy_decode(src, tok.bos_id, TGT_LEN, pad_id=tok.pad_id)
        return [tok.decode(row) for row in out]
    texts = []
    for row in src:
        row = row[:int((row != tok.pad_id).sum())]
        lm = SourceConditioned(net, row, tok.pad_id)
        ids, _ = beam_search(lm, [tok.bos_id], TGT_LEN, beam_width=beam_width, eos_id=tok.eos_id, use_cache=False)
        texts.append(tok.decode(ids[1:]))
    return texts


def evaluate(ckpt=None, split="test", model=None, tokenizer=None, seed=0, beam_width=4, beam_examples=None):
    """BLEU (zh) and exact match of greedy decoding on ``split``, beam search's too (on the first
    ``beam_examples`` examples, all by default), and the two baselines'."""
    if model is None:
        model, tokenizer = load(ckpt)
    pairs = data(seed)[split]
    src, _, _ = encode_pairs(pairs, tokenizer)
    refs = [zh for _, zh in pairs]
    greedy = translate_ids(model, tokenizer, src)

    def scores(hyps, refs):
        return {"bleu": bleu(hyps, [refs], tokenize="zh").score,
                "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)]))}

    result = {"metric": "BLEU (zh tokenizer), greedy", "params": model.num_params()}
    g = scores(greedy, refs)
    result["model"], result["exact_match"] = g["bleu"], g["exact_match"]
    nb = len(pairs) if beam_examples is None else beam_examples
    beam = translate_ids(model, tokenizer, src[:nb], beam_width)
    result["beam"] = {"beam_width": beam_width, "examples": nb, **scores(beam, refs[:nb]),
                      "greedy_on_same": scores(greedy[:nb], refs[:nb])}
    w4w = [word_for_word(en) for en, _ in pairs]
    copy = [en for en, _ in pairs]
    result["baselines"] = {"word-for-word dictionary": scores(w4w, refs)["bleu"], "copy the source": scores(copy, refs)["bleu"]}
    result["baseline_exact_match"] = {"word-for-word dictionary": scores(w4w, refs)["exact_match"],
                                      "copy the source": 0.0}
    result["examples"] = [{"input": en, "target": zh, "output": h} for (en, zh), h in zip(pairs, greedy)]
    return result


def run(text, ckpt=None, model=None, tokenizer=None, beam_width=1):
    """The Chinese for one English number or date."""
    if model is None:
        model, tokenizer = load(ckpt)
    ids = tokenizer.encode(normalize(text), "the English input")
    if len(ids) > SRC_LEN:
        raise UsageError(f"the input is {len(ids)} tokens long; the encoder reads at most {SRC_LEN}: it is "
                         f"refused, not truncated (a cut number is a different number)")
    src = np.full((1, SRC_LEN), tokenizer.pad_id, dtype=np.int64)
    src[0, :len(ids)] = ids
    return translate_ids(model, tokenizer, src, beam_width)[0]
