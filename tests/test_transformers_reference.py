"""npgpt against Hugging Face ``transformers`` (issue 17): random GPT-2s of several shapes, built and
saved by ``transformers``, give npgpt the same logits (1e-5 relative in float32, 1e-10 in float64),
and npgpt's ``save_pretrained`` folders load into ``transformers`` without a missing or unexpected
weight and give its logits back; the hub's own layout (no ``transformer.`` prefix, the mask
buffers) loads in both; the GPT-2 tokenizer gives GPT2TokenizerFast's ids. Nothing is downloaded:
every model is random and written by the test. Skipped without transformers (``pip install -r
requirements-ref.txt``). With a real GPT-2 folder in ``NPGPT_GPT2_DIR``, greedy decoding is compared
too."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from references import optional_reference

transformers = optional_reference("transformers", reason="the reference GPT-2")
torch = optional_reference("torch", reason="transformers' GPT-2 runs on PyTorch")
safetensors_numpy = optional_reference("safetensors.numpy", reason="the hub's file layout is written with it")

import npgpt  # noqa: E402
from npgpt import GPT, BPETokenizer, GPTConfig, jitter  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # every folder is local; never reach for the network
transformers.utils.logging.disable_progress_bar()

# Shapes, with what each adds: the defaults; an untied head, a non-default LayerNorm epsilon and an
# MLP that is not 4 n_embd wide (n_inner); one head and one layer; a longer context with 12 heads.
SHAPES = {
    "small": dict(vocab_size=97, n_positions=16, n_embd=16, n_layer=2, n_head=2),
    "untied-eps-ninner": dict(vocab_size=211, n_positions=24, n_embd=24, n_layer=3, n_head=4, n_inner=40,
                              layer_norm_epsilon=1e-3, tie_word_embeddings=False),
    "one-head": dict(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=1),
    "wide": dict(vocab_size=300, n_positions=64, n_embd=48, n_layer=2, n_head=12),
}
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}
LARGEST = {}      # the largest relative logit difference seen, per dtype (printed with -s)


def hf_model(shape, dtype, seed=0):
    """A random transformers GPT-2, its weights spread (N(0, 0.02) gives near-uniform logits)."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**SHAPES[shape], bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(config).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if name.endswith("bias") or ".ln_" in name else 0.05))
    return model.eval()


def hf_logits(model, idx):
    with torch.no_grad():
        return model(torch.from_numpy(idx)).logits.numpy()


def relative(a, b, dtype):
    error = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    LARGEST[np.dtype(dtype).name] = max(LARGEST.get(np.dtype(dtype).name, 0.0), error)
    return error


def ids(vocab_size, T, seed=1):
    return np.random.default_rng(seed).integers(0, vocab_size, (3, T))


@pytest.fixture(scope="module", autouse=True)
def report_largest():
    yield
    print(f"\nlargest relative logit difference against transformers: {LARGEST}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.slow
def test_transformers_checkpoints_give_npgpt_the_same_logits(tmp_path, shape, dtype):
    reference = hf_model(shape, dtype)
    reference.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path, dtype=dtype)
    assert model.config.layer_norm_epsilon == reference.config.layer_norm_epsilon
    idx = ids(model.config.vocab_size, model.config.block_size)
    for backend in ("numpy", "numba"):
        with npgpt.use_backend(backend):
            logits = model.forward(idx)[0]
        assert relative(logits, hf_logits(reference, idx), dtype) <= TOLERANCE[dtype], backend
    # generation with the KV cache (the fused step) agrees with transformers' own greedy decoding
    prompt = idx[0, :3]
    ours = npgpt.generate(model, prompt, model.config.block_size - 3)
    with torch.no_grad():
        theirs = reference.generate(torch.from_numpy(prompt[None]), max_new_tokens=model.config.block_size - 3,
                                    do_sample=False, pad_token_id=0)[0].numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_npgpt_folders_load_in_transformers_without_a_warning(tmp_path, shape, dtype, capfd):
    s = SHAPES[shape]
    config = GPTConfig(vocab_size=s["vocab_size"], block_size=s["n_positions"], n_layer=s["n_layer"],
                       n_head=s["n_head"], n_embd=s["n_embd"], tie_weights=s.get("tie_word_embeddings", True),
                       layer_norm_epsilon=s.get("layer_norm_epsilon", 1e-5),
                       mlp_widths=(s["n_inner"],) * s["n_layer"] if "n_inner" in s else None)
    model = GPT(config, seed=5, dtype=dtype)
    jitter(model.params, scale=0.1, seed=6)
    model.save_pretrained(tmp_path)
    capfd.readouterr()
    reference, info = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path, output_loading_info=True, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    # transformers 5 reports sets, 4.x lists: what matters is that every one is empty
    assert set(info) >= {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}, info
    assert not any(info.values()), info
    out = capfd.readouterr()
    assert "LOAD REPORT" not in out.out + out.err and "MISSING" not in out.out + out.err, out
    idx = ids(config.vocab_size, config.block_size)
    assert relative(model.eval().forward(idx)[0], hf_logits(reference.eval(), idx), dtype) <= TOLERANCE[dtype]


def test_the_hub_layout_loads_in_both(tmp_path):
    """The original hub files: no ``transformer.`` prefix, the mask buffers of every block, no head."""
    reference = hf_model("small", np.float32)
    reference.save_pretrained(tmp_path)
    state = safetensors_numpy.load_file(tmp_path / "model.safetensors")
    hub = {name.removeprefix("transformer."): a for name, a in state.items()}
    T = SHAPES["small"]["n_positions"]
    for i in range(SHAPES["small"]["n_layer"]):
        hub[f"h.{i}.attn.bias"] = np.tril(np.ones((T, T), np.float32))[None, None]
        hub[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    safetensors_numpy.save_file(hub, tmp_path / "model.safetensors", metadata={"format": "pt"})   # the package writes it
    model = GPT.from_pretrained(tmp_path)
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = ids(97, T)
    assert relative(model.forward(idx)[0], hf_logits(reference, idx), np.float32) <= 1e-5
    np.testing.assert_array_equal(hf_logits(again, idx), hf_logits(reference, idx))


def test_bfloat16_and_float16_checkpoints_match_transformers_reading_them(tmp_path, capsys):
    reference = hf_model("small", np.float32)
    for torch_dtype, code in ((torch.bfloat16, "BF16"), (torch.float16, "F16")):
        folder = tmp_path / code
        reference.to(torch_dtype).save_pretrained(folder)
        widened = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
        model = GPT.from_pretrained(folder)
        assert f"{code} weights converted to float32" in capsys.readouterr().err
        for name, p in widened.state_dict().items():
            if name in model.params:
                np.testing.assert_array_equal(model.params[name], p.numpy(), err_msg=name)
        idx = ids(97, 16)
        assert relative(model.forward(idx)[0], hf_logits(widened, idx), np.float32) <= 1e-5
        reference.to(torch.float32)


# ----------------------------------------------------------------------------- the tokenizer
ENGLISH = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
           "age of foolishness. We'll see: they're here, I'd say; she's gone, you've won!  Numbers 1234 "
           "and 3.14159, trailing spaces   \n\n")
CODE = ('def softmax(x):\n    """Row-wise softmax."""\n    z = x - x.max(-1, keepdims=True)\n\treturn '
        'np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # stable\n\n\nif __name__ == "__main__":\r\n    pass\n')
EMOJI = "Good morning 😀👍🏽🇫🇷 — family: 👨‍👩‍👧‍👦, hearts ❤️💙 and symbols ©®™ ∑∫√"
CHINESE = "大型语言模型的全局最优分配：计算、内存和时间。我们用字节级BPE把汉字切成词元，常见的字很快合并。"
TEXTS = {"english": ENGLISH, "code": CODE, "emoji": EMOJI, "chinese": CHINESE}


@pytest.fixture(scope="module")
def npgpt_trained_files(tmp_path_factory):
    """GPT-2 style files from npgpt's trainer: <|endoftext|> last, as in GPT-2's own vocab.json."""
    folder = tmp_path_factory.mktemp("npgpt_tok")
    text = "".join(TEXTS.values()) * 3 + Path(npgpt.__file__).with_name("corpus").joinpath("fallback.txt").read_text()[:20000]
    BPETokenizer("gpt2").train(text, 700, special_tokens=["<|endoftext|>"]).save_hf(folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert max(vocab.values()) == vocab["<|endoftext|>"]
    return folder


@pytest.fixture(scope="module")
def tokenizers_trained_files(tmp_path_factory):
    """Files from the tokenizers library's byte-level BPE trainer: its special tokens come first."""
    tokenizers = optional_reference("tokenizers", reason="the reference byte-level BPE trainer")
    folder = tmp_path_factory.mktemp("hf_tok")
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(["".join(TEXTS.values()) * 3], vocab_size=600,
                                special_tokens=["<|endoftext|>", "<pad>"])
    trainer.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["<|endoftext|>"] == 0
    return folder


@pytest.mark.parametrize("files", ["npgpt_trained_files", "tokenizers_trained_files"])
@pytest.mark.parametrize("text", list(TEXTS))
def test_token_ids_equal_gpt2_tokenizer_fast(request, files, text):
    folder = request.getfixturevalue(files)
    reference = transformers.GPT2TokenizerFast.from_pretrained(folder)
    tokenizer = npgpt.io.pretrained.load_tokenizer(folder)
    expected = reference(TEXTS[text])["input_ids"]
    assert len(expected) > 10
    assert tokenizer.encode(TEXTS[text]) == expected
    assert tokenizer.decode(expected) == reference.decode(expected) == TEXTS[text]
    eot = "<|endoftext|>"
    assert tokenizer.encode(eot + TEXTS[text][:20], allowed_special="all") == reference(eot + TEXTS[text][:20])["input_ids"]


# ----------------------------------------------------------------------------- a real GPT-2
REAL = os.environ.get("NPGPT_GPT2_DIR")


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="set NPGPT_GPT2_DIR to a folder holding the real GPT-2 (config.json, "
                                     "model.safetensors, vocab.json, merges.txt; see the README)")
def test_a_real_gpt2_decodes_greedily_as_transformers_does():
    model, tokenizer = npgpt.load_pretrained(REAL)
    assert tokenizer.encode("The dog") == [464, 3290]
    ours = npgpt.generate(model, [464, 3290], 18)
    reference = transformers.GPT2LMHeadModel.from_pretrained(REAL).eval()
    with torch.no_grad():
        theirs = reference.generate(torch.tensor([[464, 3290]]), max_new_tokens=18, do_sample=False,
                                    pad_token_id=50256)[0].numpy()
    np.testing.assert_array_equal(ours, theirs)
    idx = np.array([tokenizer.encode(ENGLISH)])
    assert relative(model.forward(idx)[0], hf_logits(reference, idx), np.float32) <= 1e-4
