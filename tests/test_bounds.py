"""Bounded work for every size a user gives (issue 28, item 4): models too big for the memory
available are refused in one line before anything is allocated; beam widths and token counts
have a bound whose reason the message gives."""
import math
from dataclasses import replace

import pytest
from zip_craft import capped

import npgpt.runtime.memory as memory_module
from npgpt.checks import UsageError
from npgpt.cli import main
from npgpt.decoding import beam_search, generate
from npgpt.decoding.generate import MAX_NEW_TOKENS
from npgpt.models import (
    GPT,
    GRU,
    LSTM,
    PRESETS,
    RECURRENT_PRESETS,
    RNN,
    GPTConfig,
    MultiheadAttention,
    RecurrentConfig,
    RecurrentLM,
    Transformer,
)
from npgpt.models.document import DocumentModel
from npgpt.models.seq2seq import transformer_param_count, transformer_param_shapes

GiB = 2**30
# Room the capped blocks leave: a refused model must be refused before it allocates anything
# large, and 256 MiB is far below every model they build yet far above a few tables of shapes.
CAP = 256 << 20


def _shapes_count(shapes):
    return sum(math.prod(shape) for shape in shapes.values())


@pytest.fixture
def one_gib(monkeypatch):
    """A machine with 1 GiB available, whatever this one has."""
    monkeypatch.setattr(memory_module, "available_memory", lambda: GiB)


# ----------------------------------------------------------------------------- counting without listing
BABY = PRESETS["baby"]


@pytest.mark.parametrize("config", [
    *PRESETS.values(),
    replace(BABY, bias=False, tie_weights=False),
    replace(BABY, pos_encoding="sinusoidal"),
    replace(BABY, head_counts=(4, 2, 3, 1), mlp_widths=(512, 100, 7, 512)),
    replace(BABY, factorized={"h.1.mlp.c_fc": 8, "h.3.attn.c_proj": 5, "h.9.mlp.c_fc": 3}),
    replace(BABY, head_counts=(2, 2, 2, 2), factorized={"h.0.attn.c_attn": 4}),
], ids=lambda c: f"L{c.n_layer}-C{c.n_embd}-{c.pos_encoding}-{bool(c.factorized)}-{c.head_counts}")
def test_a_gpt_is_counted_as_its_shapes_say(config):
    assert GPT.count_params(config) == _shapes_count(GPT.param_shapes(config))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_recurrent_model_is_counted_as_its_shapes_say(cell):
    config = replace(RECURRENT_PRESETS["baby"], cell=cell, n_layer=3)
    assert RecurrentLM.count_params(config) == _shapes_count(RecurrentLM.param_shapes(config))
    for layer in (RNN, LSTM, GRU):
        for bias in (True, False):
            assert layer.count_params(3, 5, 3, bias) == _shapes_count(layer.param_shapes(3, 5, 3, bias))


@pytest.mark.parametrize("sizes", [(8, 1, 2, 16), (512, 6, 6, 2048), (4, 0, 3, 5)])
def test_a_transformer_is_counted_as_its_shapes_say(sizes):
    assert transformer_param_count(*sizes) == _shapes_count(transformer_param_shapes(*sizes))


# ----------------------------------------------------------------------------- refused before allocating
def test_a_gpt_that_does_not_fit_is_refused_in_one_line(one_gib):
    # 48 blocks of 12 C^2 + 13 C, the embeddings (65 + 64) C and the final LayerNorm 2 C
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=48, n_head=64, n_embd=8192)
    with pytest.raises(UsageError) as error:
        GPT(config)
    assert str(error.value) == (
        "GPT(n_layer=48, n_embd=8192, vocab_size=65, block_size=64) with 38,660,890,624 parameters in "
        "float32 needs about 144.0 GiB of memory; this machine has 1.0 GiB available")


def test_a_gpt_that_fits_is_built(one_gib):
    assert GPT(BABY).num_params() == GPT.count_params(BABY)


def test_a_million_blocks_are_refused_at_once():
    # Counted, not listed: a checkpoint asking for 10**9 blocks is refused before any loop over them.
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=10**9, n_head=4, n_embd=128)
    with capped(CAP, 10), pytest.raises(UsageError, match=r"^GPT\(n_layer=1000000000, .* needs about"):
        GPT(config)


@pytest.mark.parametrize("build", [
    lambda: GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=24, n_head=16, n_embd=1024)),
    lambda: GPT(GPTConfig(vocab_size=10**9, block_size=64, n_layer=1, n_head=1, n_embd=64)),
    # 2**30 sinusoidal positions: no parameter holds them, the table alone is 2**30 x 64
    lambda: GPT(GPTConfig(vocab_size=65, block_size=2**30, n_layer=1, n_head=1, n_embd=64,
                          pos_encoding="sinusoidal")),
    lambda: RecurrentLM(RecurrentConfig(vocab_size=65, block_size=64, n_embd=64, n_hidden=2**15, n_layer=2)),
    lambda: LSTM(64, 2**15, 2),
    lambda: Transformer(d_model=4096, nhead=8, dim_feedforward=16384),
    lambda: MultiheadAttention(2**15, 8),
    # the document's model: 2**28 sinusoidal positions (its Transformer is small), and 10**8 tokens
    lambda: DocumentModel(num_tokens=10, embed_dim=16, num_heads=2, num_layers=1, max_seq_len=2**28,
                          num_decoder_layers=1, dim_feedforward=32),
    lambda: DocumentModel(num_tokens=10**8, embed_dim=16, num_heads=2, num_layers=1, max_seq_len=8,
                          num_decoder_layers=1, dim_feedforward=32),
], ids=["gpt", "vocab", "sinusoidal", "recurrent-lm", "lstm", "transformer", "attention", "document-positions",
        "document-tokens"])
def test_every_model_too_big_for_the_room_left_is_refused_before_it_allocates(build):
    with capped(CAP, 30), pytest.raises(UsageError, match=r"needs about [\d,.]+ GiB of memory; "
                                                          r"this machine has 0.\d+ GiB available$"):
        build()


def test_a_petabyte_model_is_refused_on_this_machine():
    if memory_module.available_memory() is None:
        pytest.skip("this system does not report its available memory (no /proc/meminfo)")
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=1000, n_head=1, n_embd=2**20)
    with pytest.raises(UsageError, match=r"^GPT\(n_layer=1000, n_embd=1048576, .* needs about"):
        GPT(config)


def test_a_model_built_to_sample_is_not_refused_for_what_training_would_need(monkeypatch):
    # The baby GPT's float32 parameters are 3.1 MiB; training with AdamW would hold four times as
    # much. A machine with 5 MiB builds it: the constructor counts only what it allocates.
    monkeypatch.setattr(memory_module, "available_memory", lambda: 5 << 20)
    GPT(BABY)
    monkeypatch.setattr(memory_module, "available_memory", lambda: 3 << 20)
    with pytest.raises(UsageError, match="809,856 parameters in float32 needs about"):
        GPT(BABY)


# ----------------------------------------------------------------------------- decoding
TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8)


@pytest.fixture(scope="module")
def tiny():
    return GPT(TINY)


def test_a_beam_wider_than_the_vocabulary_is_refused(tiny):
    with capped(CAP, 10), pytest.raises(UsageError, match=r"^beam_width must be at most vocab_size=11 "
                                                          r"\(the first step has only 11 .*got 100000$"):
        beam_search(tiny, [1, 2], 5, beam_width=100000)
    tokens, _ = beam_search(tiny, [1, 2], 3, beam_width=11)
    assert tokens.shape == (5,)


def test_beams_that_do_not_fit_are_refused(tiny, monkeypatch):
    monkeypatch.setattr(memory_module, "available_memory", lambda: 1000)   # 4 beams of 11 scores and 8 cached positions: about 5 kB
    with pytest.raises(UsageError, match="^beam search with beam_width=4 needs about"):
        beam_search(tiny, [1, 2], 3, beam_width=4)


@pytest.mark.parametrize("decode", [
    lambda model, n: generate(model, [1, 2], n),
    lambda model, n: beam_search(model, [1, 2], n),
], ids=["generate", "beam_search"])
def test_a_token_count_past_the_cap_is_refused_at_once(tiny, decode):
    with capped(CAP, 10), pytest.raises(UsageError, match=rf"^max_new_tokens must be at most {MAX_NEW_TOKENS:,} "
                                                          r"\(.*\), got 1,000,000,000,000$"):
        decode(tiny, 10**12)


def test_sample_refuses_more_tokens_than_one_command_writes(tmp_path, capsys):
    # refused before the checkpoint is read: the file need not exist
    code = main(["sample", "--ckpt", str(tmp_path / "none.npz"), "--num-samples", "100000",
                 "--max-new-tokens", "300"])
    assert code == 2
    assert capsys.readouterr().err == (f"npgpt sample: error: --num-samples 100000 x --max-new-tokens 300 is "
                                       f"30,000,000 tokens; sample writes at most {MAX_NEW_TOKENS:,} in one command\n")
