"""GPT-2 in and out without any reference installed: the safetensors reader and writer, Hugging Face
GPT-2 folders (both key spellings, the hub's mask buffers, a tied head's copy, float16 and
bfloat16), the tokenizer files, ``npgpt.load_pretrained``, and every bad input of issue 17 named
as a ValueError. The comparisons with ``transformers`` are in test_transformers_reference.py."""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mounts import tmpfs
from zip_craft import capped

import npgpt
import npgpt.io.gpt2_files
from npgpt import GPT, BPETokenizer, GPTConfig, jitter
from npgpt.checks import UsageError
from npgpt.io.gpt2_files import config_from_hf
from npgpt.io.safetensors import (
    SafetensorsFile,
    bfloat16_to_float32,
    float32_to_bfloat16,
    read_header,
    write_safetensors,
)

SMALL = dict(vocab_size=37, block_size=12, n_layer=2, n_head=2, n_embd=8)


@pytest.fixture
def model():
    m = GPT(GPTConfig(**SMALL), seed=1)
    jitter(m.params, scale=0.3, seed=2)
    return m.eval()


def logits(model, idx=None):
    idx = np.arange(10).reshape(2, 5) % model.config.vocab_size if idx is None else idx
    return model.forward(idx)[0]


def raw_safetensors(path, header, data=b"", header_bytes=None):
    """A safetensors file written byte by byte: a header (dict, or raw bytes) and the data."""
    raw = json.dumps(header).encode() if header_bytes is None else header_bytes
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def hub_layout(model, folder, dtype=None, head_copy=True):
    """``model`` written as the original hub files are: no ``transformer.`` prefix, each block's mask
    buffers (``attn.bias``, ``attn.masked_bias``) and, optionally, a copy of the tied head."""
    model.save_pretrained(folder)
    tensors = {}
    for name, p in model.params.items():
        tensors[name.removeprefix("transformer.")] = p if dtype is None else p.astype(dtype)
        if name.endswith("ln_1.weight"):
            block = name.removeprefix("transformer.").removesuffix(".ln_1.weight")
            T = model.config.block_size
            tensors[f"{block}.attn.bias"] = np.tril(np.ones((T, T), np.float32))[None, None]
            tensors[f"{block}.attn.masked_bias"] = np.array(-1e4, np.float32)
    if head_copy:
        tensors["lm_head.weight"] = tensors["wte.weight"]
    write_safetensors(folder / "model.safetensors", tensors, {"format": "pt"})
    return folder


# ============================================================================ the file format
def test_safetensors_round_trip_keeps_every_dtype_and_shape(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"f32": rng.standard_normal((3, 4)).astype(np.float32), "f64": rng.standard_normal(5),
               "f16": rng.standard_normal((2, 2)).astype(np.float16), "i8": np.arange(-3, 4, dtype=np.int8),
               "i64": np.arange(6).reshape(2, 3), "empty": np.zeros((0, 3), np.float32),
               "scalar": np.array(2.5, np.float32), "big_endian": np.arange(4, dtype=">f4")}
    write_safetensors(tmp_path / "t.safetensors", tensors, {"format": "pt"})
    with SafetensorsFile(tmp_path / "t.safetensors") as st:
        assert st.header.metadata == {"format": "pt"} and st.names == list(tensors)
        assert st.header.data_start % 8 == 0                    # the header is padded, as the package pads it
        for name, a in tensors.items():
            back = st.read(name)
            np.testing.assert_array_equal(back, a)
            assert back.dtype == a.dtype.newbyteorder("=") and back.shape == a.shape


def test_bfloat16_is_the_top_half_of_a_float32():
    x = np.array([1.0, -2.5, 3.140625, 2.0 ** -126, 65536.0, 2.0 ** 127, np.inf, -np.inf], np.float32)  # exact in bfloat16
    np.testing.assert_array_equal(bfloat16_to_float32(float32_to_bfloat16(x)), x)
    assert float32_to_bfloat16(np.float32(1.0)) == 0x3F80
    # rounding: to nearest, ties to even (1 + 2^-8 lies halfway between 1 and 1 + 2^-7)
    halfway = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8], np.float32)
    np.testing.assert_array_equal(bfloat16_to_float32(float32_to_bfloat16(halfway)), [1.0, 1 + 2 ** -6])
    assert np.isnan(bfloat16_to_float32(float32_to_bfloat16(np.float32(np.nan))))


def test_a_bfloat16_file_reads_as_float32(tmp_path):
    values = np.array([[0.5, -1.25], [3.0, 1e10]], np.float32)
    bits = float32_to_bfloat16(values)
    header = {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    with SafetensorsFile(raw_safetensors(tmp_path / "bf.safetensors", header, bits.tobytes())) as st:
        w = st.read("w")
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, bfloat16_to_float32(bits))


F32_2x2 = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


@pytest.mark.parametrize("header, data, message", [
    (F32_2x2, bytes(8), r"tensor 'w' claims bytes up to 16 of the data, past the end of the file \(8 bytes"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, bytes(12), "needs 16 bytes, but its data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "overlaps the tensor before it"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "leaves a gap of 4 bytes"),
    (F32_2x2, bytes(20), "4 bytes after the last tensor belong to none"),
    ({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}}, bytes(1), "dtype 'Q4'"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 0]}}, b"", "expected a list of counts"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "expected \\[begin, end\\]"),
    ({"w": {"dtype": "F32", "shape": [1]}}, bytes(4), "expected {dtype, shape, data_offsets}"),
    ({"__metadata__": {"format": 1}}, b"", "__metadata__ must map names to strings"),
])
def test_bad_safetensors_headers_are_named(tmp_path, header, data, message):
    path = raw_safetensors(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError, match=r"bad\.safetensors: .*" + message):
        read_header(path)


def test_truncated_and_foreign_files_are_named(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x05\x00")
    with pytest.raises(ValueError, match=r"short\.safetensors: truncated: 2 bytes, not even"):
        read_header(path)
    raw_safetensors(path, F32_2x2, bytes(16))
    path.write_bytes(path.read_bytes()[:20])                  # cut inside the header
    with pytest.raises(ValueError, match=r"short\.safetensors: truncated: the header claims \d+ bytes, the file has 12"):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 2 ** 40) + b"{}")
    with pytest.raises(ValueError, match="more than the 16,777,216 a safetensors header may have"):
        read_header(path)
    raw_safetensors(path, None, header_bytes=b"\x80not json")
    with pytest.raises(ValueError, match="the header is not UTF-8 JSON"):
        read_header(path)
    raw_safetensors(path, [1, 2])
    with pytest.raises(ValueError, match="the header is a JSON list, expected an object"):
        read_header(path)
    with pytest.raises(ValueError, match=r"nothing\.safetensors: no such file"):
        read_header(tmp_path / "nothing.safetensors")


def test_writing_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="tensor 'c' has dtype complex128"):
        write_safetensors(tmp_path / "c.safetensors", {"c": np.zeros(2, complex)})
    assert not (tmp_path / "c.safetensors").exists()


# ============================================================================ GPT-2 folders
def test_save_then_load_is_bit_exact_with_both_dtypes(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "gpt")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["n_positions"] == 12
    assert config["activation_function"] == "gelu_new" and config["tie_word_embeddings"] is True
    with SafetensorsFile(folder / "model.safetensors") as st:      # transformers' spelling, no tied head
        assert st.names == list(model.params) and "lm_head.weight" not in st.names
    back = GPT.from_pretrained(folder)
    assert back.config == model.config and not back.training
    for name, p in model.params.items():
        np.testing.assert_array_equal(back.params[name], p)
    back64 = GPT.from_pretrained(folder, dtype=np.float64)
    assert back64.dtype == np.float64
    np.testing.assert_allclose(logits(back64), logits(model), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", [dict(tie_weights=False), dict(layer_norm_epsilon=1e-3),
                                     dict(mlp_widths=(20, 20)), dict(dropout=0.1)])
def test_every_gpt2_field_survives_the_round_trip(tmp_path, variant):
    model = GPT(GPTConfig(**SMALL, **variant), seed=3)
    back = GPT.from_pretrained(model.save_pretrained(tmp_path / "gpt"))
    assert back.config == model.config
    np.testing.assert_array_equal(logits(back), logits(model.eval()))


def test_the_hub_layout_loads_buffers_dropped_and_the_head_copy_checked(tmp_path, model):
    folder = hub_layout(model, tmp_path / "hub")
    with SafetensorsFile(folder / "model.safetensors") as st:
        assert "wte.weight" in st.names and "h.0.attn.bias" in st.names and "h.1.attn.masked_bias" in st.names
    back = GPT.from_pretrained(folder)
    np.testing.assert_array_equal(logits(back), logits(model))
    np.testing.assert_array_equal(back.params["transformer.h.0.attn.c_attn.bias"],   # a parameter, not a buffer
                                  model.params["transformer.h.0.attn.c_attn.bias"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_files_load_converted_and_say_so(tmp_path, model, dtype, capsys):
    folder = hub_layout(model, tmp_path / dtype, head_copy=False)
    tensors = {}
    with SafetensorsFile(folder / "model.safetensors") as st:
        for name in st.names:
            tensors[name] = st.read(name)
    narrow = {name: (a.astype(np.float16) if dtype == "float16" else float32_to_bfloat16(a))
              for name, a in tensors.items() if not re.search(r"\.attn\.(bias|masked_bias)$", name)}
    header, data, at = {}, b"", 0
    for name, a in narrow.items():
        header[name] = {"dtype": "F16" if dtype == "float16" else "BF16", "shape": list(a.shape),
                        "data_offsets": [at, at + a.nbytes]}
        data += a.tobytes()
        at += a.nbytes
    raw_safetensors(folder / "model.safetensors", header, data)
    back = GPT.from_pretrained(folder)
    assert back.dtype == np.float32
    assert f"model.safetensors: {'F16' if dtype == 'float16' else 'BF16'} weights converted to float32" in capsys.readouterr().err
    widened = {name: (a.astype(np.float32) if dtype == "float16" else bfloat16_to_float32(a)) for name, a in narrow.items()}
    np.testing.assert_array_equal(back.params["transformer.h.1.mlp.c_fc.weight"], widened["h.1.mlp.c_fc.weight"])
    assert np.max(np.abs(logits(back) - logits(model))) < 0.1 * np.max(np.abs(logits(model)))
    GPT.from_pretrained(folder, verbose=False)
    assert capsys.readouterr().err == ""


def test_load_pretrained_gives_the_model_and_its_tokenizer(tmp_path):
    tokenizer = BPETokenizer("gpt2").train("the cat sat on the mat. " * 20 + "<|endoftext|>", 265,
                                           special_tokens=["<|endoftext|>"])
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8))
    folder = model.save_pretrained(tmp_path / "gpt", tokenizer=tokenizer)
    config = json.loads((folder / "config.json").read_text())
    assert config["eos_token_id"] == tokenizer.special_tokens["<|endoftext|>"]
    back, tok = npgpt.load_pretrained(folder)
    assert tok.encode("the cat sat") == tokenizer.encode("the cat sat")
    assert tok.special_tokens == tokenizer.special_tokens
    np.testing.assert_array_equal(logits(back), logits(model.eval()))
    (folder / "vocab.json").unlink()
    with pytest.raises(ValueError, match=r"vocab\.json: missing; GPT-2's tokenizer needs vocab\.json beside merges\.txt"):
        npgpt.load_pretrained(folder)
    (folder / "merges.txt").unlink()
    assert npgpt.load_pretrained(folder)[1] is None          # no tokenizer files: no tokenizer
    small = GPT(GPTConfig(vocab_size=100, block_size=16, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match=f"the tokenizer has {tokenizer.vocab_size} ids but the model only vocab_size=100"):
        small.save_pretrained(tmp_path / "small", tokenizer=tokenizer)
    tokenizer.save_hf(small.save_pretrained(tmp_path / "small"))
    with pytest.raises(ValueError, match=f"vocab.json: the tokenizer has {tokenizer.vocab_size} ids but the model has vocab_size=100"):
        npgpt.load_pretrained(tmp_path / "small")


# ============================================================================ bad input (issue 17, item 6)
def test_a_folder_without_its_files_is_named(tmp_path, model):
    with pytest.raises(ValueError, match=r"nowhere: not a folder; a Hugging Face GPT-2 checkpoint is a folder"):
        GPT.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty/config\.json: missing; .*npgpt never downloads them"):
        GPT.from_pretrained(tmp_path / "empty")
    folder = model.save_pretrained(tmp_path / "gpt")
    (folder / "model.safetensors").rename(folder / "elsewhere.safetensors")
    with pytest.raises(ValueError, match=r"gpt/model\.safetensors: missing$"):
        GPT.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"a pickle")
    with pytest.raises(ValueError, match=r"model\.safetensors: missing; the folder has pytorch_model\.bin, which npgpt "
                                         r"does not read \(a \.bin is a pickle, which can run code\)"):
        GPT.from_pretrained(folder)


def spoil_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, message", [
    (dict(architectures=["LlamaForCausalLM"], model_type="llama"), r"the architecture is \['LlamaForCausalLM'\] "
                                                                    r"\(model_type 'llama'\); npgpt reads GPT-2"),
    (dict(architectures=["GPT2DoubleHeadsModel"]), r"the architecture is \['GPT2DoubleHeadsModel'\]"),
    (dict(activation_function="relu"), "activation_function is 'relu'; npgpt's GELU is the tanh approximation"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx is True"),
    (dict(add_cross_attention=True), "add_cross_attention is True"),
    (dict(n_head=3), "n_embd=8 is not divisible by n_head=3"),
    (dict(n_layer=None), "it has no 'n_layer'"),
    (dict(n_embd="8"), "'n_embd' is '8', expected a positive integer"),
    (dict(layer_norm_epsilon=-1.0), "GPTConfig.layer_norm_epsilon must be a finite number > 0"),
    (dict(n_inner=0), "'n_inner' is 0, expected null or a positive integer"),
])
def test_a_config_npgpt_cannot_run_is_refused(tmp_path, model, changes, message):
    folder = model.save_pretrained(tmp_path / "gpt")
    spoil_config(folder, **changes)
    with pytest.raises(ValueError, match=r"gpt/config\.json: " + message):
        GPT.from_pretrained(folder)


def test_a_config_that_is_not_json_is_named(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "gpt")
    (folder / "config.json").write_text("{'n_embd': 8")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        GPT.from_pretrained(folder)
    with pytest.raises(ValueError, match="x.json: expected a JSON object, got a JSON list"):
        config_from_hf([], "x.json")


def rewrite_weights(folder, change):
    """Read the folder's tensors, let ``change(dict)`` edit them, write them back."""
    with SafetensorsFile(folder / "model.safetensors") as st:
        tensors = {name: st.read(name) for name in st.names}
    change(tensors)
    write_safetensors(folder / "model.safetensors", tensors, {"format": "pt"})


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("transformer.h.1.ln_2.bias"), "missing weights: transformer.h.1.ln_2.bias"),
    (lambda t: t.update({"transformer.h.2.ln_1.weight": np.ones(8, np.float32)}), "unexpected weights: transformer.h.2.ln_1.weight"),
    (lambda t: t.update({"h.0.ln_1.weight": t["transformer.h.0.ln_1.weight"]}),
     r"appear twice \(with and without 'transformer\.'\): transformer\.h\.0\.ln_1\.weight and h\.0\.ln_1\.weight"),
    (lambda t: t.update({"transformer.wpe.weight": np.zeros((20, 8), np.float32)}),
     r"mis-shaped weights: transformer\.wpe\.weight: \(20, 8\) in the file, \(12, 8\) for the config"),
    (lambda t: t.update({"transformer.wte.weight": np.zeros((37, 8), np.int32)}), r"not floats: transformer\.wte\.weight \(I32\)"),
    (lambda t: t.update({"lm_head.weight": np.zeros((37, 4), np.float32)}), r"lm_head\.weight: \(37, 4\) in the file"),
])
def test_weights_that_do_not_fit_the_config_are_named(tmp_path, model, change, message):
    folder = model.save_pretrained(tmp_path / "gpt")
    rewrite_weights(folder, change)
    with pytest.raises(ValueError, match=r"gpt/model\.safetensors does not fit its config\.json: .*" + message):
        GPT.from_pretrained(folder)


def test_a_head_copy_that_differs_and_nan_weights_are_refused(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "gpt")
    rewrite_weights(folder, lambda t: t.update({"lm_head.weight": t["transformer.wte.weight"] + 1}))
    with pytest.raises(ValueError, match=r"model\.safetensors: lm_head\.weight differs from the token embedding wte, "
                                         r"but config\.json ties them"):
        GPT.from_pretrained(folder)

    def poison(t):
        t.pop("lm_head.weight")
        t["transformer.h.0.mlp.c_fc.weight"][1, 2] = np.nan
    rewrite_weights(folder, poison)
    with pytest.raises(ValueError, match=r"model\.safetensors: transformer\.h\.0\.mlp\.c_fc\.weight holds NaN or infinite"):
        GPT.from_pretrained(folder)


def test_truncated_weights_and_offsets_past_the_end_are_named(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "gpt")
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'transformer\.ln_f\.bias' claims bytes up to "
                                         r"[\d,]+ of the data, past the end of the file"):
        GPT.from_pretrained(folder)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["transformer.ln_f.bias"]["data_offsets"] = [10 ** 9, 10 ** 9 + 32]
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'transformer\.ln_f\.bias' claims bytes up to "
                                         r"1,000,000,032 of the data, past the end of the file"):
        GPT.from_pretrained(folder)


@pytest.mark.parametrize("variant, message", [
    (dict(pos_encoding="sinusoidal"), "sinusoidal positions"),
    (dict(bias=False), "no biases"),
    (dict(head_counts=(1, 2)), "pruned heads"),
    (dict(mlp_widths=(20, 24)), "MLPs of different widths"),
    (dict(factorized={"h.0.mlp.c_fc": 2}), "factorised weights"),
])
def test_models_gpt2_cannot_express_are_not_saved(tmp_path, variant, message):
    model = GPT(GPTConfig(**SMALL, **variant))
    with pytest.raises(ValueError, match="a GPT-2 checkpoint cannot hold this model: it has .*" + message):
        model.save_pretrained(tmp_path / "gpt")
    assert not (tmp_path / "gpt").exists()


def test_a_quantized_model_and_a_file_as_folder_are_refused(tmp_path, model):
    from npgpt.allocation.quantize import quantize_model
    with pytest.raises(ValueError, match="QuantizedGPT does not hold every float weight of a GPT"):
        GPT.save_pretrained(quantize_model(model, 8), tmp_path / "q")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="file: exists and is not a folder"):
        model.save_pretrained(tmp_path / "file")


# ----------------------------------------------------------------------------- sizes before memory (issue 28)
CAP, SECONDS = 512 << 20, 10      # bytes beyond the process's own; every size below claims far more


@pytest.mark.parametrize("changes, message", [
    (dict(n_layer=10**9), r"config\.json: n_layer=1000000000 needs 12 tensors of its own for every block, but "
                          r"model\.safetensors holds 28 tensors"),
    (dict(n_layer=3), r"config\.json: n_layer=3 needs 12 tensors of its own for every block, but model\.safetensors "
                      r"holds 28 tensors"),
    (dict(n_inner=10**9), r"n_layer=2 imply 34,000,001,064 weights, 68,000,002,128 bytes even as float16"),
    (dict(n_embd=8192, n_head=64, n_layer=2), r"config\.json: vocab_size=37, n_positions=12, n_embd=8192, "
                                              r"n_layer=2 imply 1,611,243,520 weights, 3,222,487,040 bytes even as "
                                              r"float16, but model\.safetensors holds [\d,]+ bytes of tensors"),
    (dict(vocab_size=10**10), r"vocab_size=10000000000, .* imply [\d,]+ weights"),
    (dict(n_positions=2**40), r"n_positions=1099511627776, .* imply [\d,]+ weights"),
])
def test_config_sizes_are_checked_against_the_weights_file_before_allocating(tmp_path, model, changes, message):
    """Issue 28: config.json sizes were allocated before the weights were checked (MemoryError
    tracebacks, 2.5 GB in 20 s)."""
    folder = model.save_pretrained(tmp_path / "gpt")
    spoil_config(folder, **changes)
    with capped(CAP, SECONDS), pytest.raises(UsageError, match=message):
        GPT.from_pretrained(folder)


def test_n_layer_beside_a_header_of_many_tiny_tensors_is_refused_before_listing_its_blocks(tmp_path, model):
    """250,000 empty tensors (a 14 MB header) and n_layer=250,000: the old check (a tensor a block)
    let the config's 3 million parameter names be listed (MemoryError or the time cap); the config
    is refused at once now, 12 tensors a block."""
    folder = model.save_pretrained(tmp_path / "gpt")
    n = 250_000
    raw_safetensors(folder / "model.safetensors", {f"x{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                                                   for i in range(n)})
    spoil_config(folder, n_layer=n)
    with capped(CAP, SECONDS), pytest.raises(UsageError, match=rf"n_layer={n} needs 12 tensors of its own for every "
                                                               rf"block, but model\.safetensors holds {n:,} tensors"):
        GPT.from_pretrained(folder)


@pytest.mark.parametrize("kind, says", [("fifo", "a FIFO"), ("folder", "a directory")])
def test_tokenizer_files_that_are_no_files_are_named_not_called_missing(tmp_path, kind, says):
    """load_pretrained called a FIFO vocab.json "missing" (and BPETokenizer.load_hf blocked on it)."""
    tokenizer = BPETokenizer("gpt2").train("the cat sat on the mat. " * 20, 270)
    folder = GPT(GPTConfig(**{**SMALL, "vocab_size": 270})).save_pretrained(tmp_path / "gpt", tokenizer)
    (folder / "vocab.json").unlink()
    os.mkfifo(folder / "vocab.json") if kind == "fifo" else (folder / "vocab.json").mkdir()
    with capped(CAP, SECONDS), pytest.raises(UsageError, match=rf"gpt/vocab\.json: {says}, not a vocab\.json$"):
        npgpt.load_pretrained(folder)


def test_a_config_json_too_big_or_too_deep_is_named(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "gpt")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match=r"config\.json: not valid JSON \(it nests too deeply to read\)"):
        GPT.from_pretrained(folder)
    (folder / "config.json").write_text('{"n_layer": ' + "1" * 5000 + "}")
    with pytest.raises(UsageError, match=r"config\.json: not valid JSON \(Exceeds the limit \(4300 digits\)"):
        GPT.from_pretrained(folder)
    (folder / "config.json").write_text(" " * (2 << 20))
    with pytest.raises(UsageError, match=r"config\.json: 2,097,152 bytes, more than the 1,048,576 a config\.json "
                                         r"may have"):
        GPT.from_pretrained(folder)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_weights_path_that_is_no_file_is_named_not_read(tmp_path, model, kind):
    """A FIFO was "missing" and /dev/zero "no such file"; opening a FIFO would block."""
    folder = model.save_pretrained(tmp_path / "gpt")
    weights = folder / "model.safetensors"
    weights.unlink()
    if kind == "fifo":
        os.mkfifo(weights)
    elif kind == "device":
        weights.symlink_to(Path("/dev/zero"))
    else:
        weights.mkdir()
    says = {"fifo": "a FIFO", "device": "a character device", "folder": "a directory"}[kind]
    with pytest.raises(UsageError, match=rf"model\.safetensors: {says}, not a file"):
        GPT.from_pretrained(folder)
    with pytest.raises(UsageError, match=rf"model\.safetensors: {says}, not a safetensors file"):
        read_header(weights)


@pytest.mark.parametrize("raw, message", [
    (b"[" * 100_000 + b"]" * 100_000, "the header nests its JSON too deeply to read"),
    (b'{"a": ' + b"1" * 5000 + b"}", r"the header is not UTF-8 JSON \(Exceeds the limit \(4300 digits\)"),
])
def test_a_safetensors_header_python_cannot_parse_is_a_usage_error(tmp_path, raw, message):
    path = raw_safetensors(tmp_path / "deep.safetensors", None, header_bytes=raw)
    with pytest.raises(UsageError, match=r"deep\.safetensors: " + message):
        read_header(path)


# ----------------------------------------------------------------------------- save_pretrained lands whole (issue 28)
def folder_bytes(folder):
    """Every file of ``folder`` (name -> bytes), to see it unchanged."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder):
    """What else a save left beside ``folder`` in its parent (killed saves' folders, lock files)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def another(model, seed=7):
    other = GPT(model.config, seed=seed)
    jitter(other.params, scale=0.3, seed=seed + 1)
    return other.eval()


def write_half_then_fail(path, tensors, metadata=None):
    Path(path).write_bytes(b"half a file")
    raise OSError(28, "No space left on device")


def fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["write_safetensors", "atomic_write_text", "_swap_into_place"])
def test_a_save_that_fails_midway_leaves_the_earlier_folder_as_it_was(tmp_path, model, monkeypatch, where):
    """The old save wrote file after file into the folder: a full disk after the weights left the new
    weights beside the old config.json, and neither model loaded."""
    tokenizer = BPETokenizer("gpt2").train("the cat sat on the mat. " * 20, 30 + 256)
    folder = GPT(GPTConfig(**{**SMALL, "vocab_size": 300}), seed=1).save_pretrained(tmp_path / "gpt", tokenizer)
    (folder / "README.md").write_text("notes")
    before = folder_bytes(folder)
    monkeypatch.setattr(npgpt.io.gpt2_files, where, write_half_then_fail if where == "write_safetensors" else fail)
    with pytest.raises(UsageError, match=r"gpt: saving failed \(No space left on device\); the folder is as it was$"):
        another(GPT(GPTConfig(**{**SMALL, "vocab_size": 300}), seed=1)).save_pretrained(folder, tokenizer)
    assert folder_bytes(folder) == before and siblings(folder) == []
    npgpt.load_pretrained(folder)


@pytest.mark.parametrize("exchange", [True, False])
def test_saving_over_a_folder_replaces_it_whole_and_keeps_its_other_files(tmp_path, model, monkeypatch, exchange):
    """Linux swaps the two folders in one step; elsewhere (exchange False) two renames do it."""
    if not exchange:
        monkeypatch.setattr(npgpt.io.gpt2_files, "_exchange", lambda a, b: False)
    folder = model.save_pretrained(tmp_path / "gpt")
    (folder / "README.md").write_text("notes")
    (folder / "extra").mkdir()
    (folder / "extra" / "generation_config.json").write_text("{}")
    other = another(model)
    assert other.save_pretrained(folder) == folder
    assert sorted(folder_bytes(folder)) == ["README.md", "config.json", "extra/generation_config.json",
                                            "model.safetensors"]
    assert (folder / "README.md").read_text() == "notes" and siblings(folder) == []
    np.testing.assert_array_equal(logits(GPT.from_pretrained(folder)), logits(other))


def test_a_model_holding_nan_or_inf_is_not_saved(tmp_path, model):
    """The old save wrote NaN weights, which load_pretrained then refused."""
    folder = model.save_pretrained(tmp_path / "gpt")
    before = folder_bytes(folder)
    other = another(model)
    other.params["transformer.h.1.attn.c_proj.weight"][2, 3] = np.nan
    other.params["transformer.ln_f.bias"][0] = np.inf
    with pytest.raises(UsageError, match=r"^parameter transformer\.h\.1\.attn\.c_proj\.weight holds NaN or infinite "
                                         r"values \(and 1 more parameters\): a model that diverged is not saved"):
        other.save_pretrained(folder)
    with pytest.raises(UsageError, match=r"^parameter transformer\.h\.1\.attn\.c_proj\.weight holds NaN"):
        other.save_pretrained(tmp_path / "new")
    assert folder_bytes(folder) == before and not (tmp_path / "new").exists()


def test_what_killed_saves_left_beside_the_folder_is_cleaned_and_a_replaced_folder_put_back(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "gpt")
    (folder / "README.md").write_text("notes")
    stale = tmp_path / ".gpt.saving-abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    folder.rename(tmp_path / ".gpt.replaced-abc124")        # killed between the two renames
    other = another(model)
    other.save_pretrained(folder)
    assert siblings(folder) == [] and (folder / "README.md").read_text() == "notes"
    np.testing.assert_array_equal(logits(GPT.from_pretrained(folder)), logits(other))


def test_an_unwritable_parent_and_no_room_are_found_before_writing(tmp_path, model, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"gpt: its parent .*/file is a file, not a folder$"):
        model.save_pretrained(tmp_path / "file" / "gpt")
    monkeypatch.setattr(npgpt.io.gpt2_files.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(UsageError, match=r"gpt: saving needs about 1\.\d MB, but .* has 0\.0 MB free$"):
        model.save_pretrained(tmp_path / "gpt")
    monkeypatch.setattr(npgpt.io.gpt2_files.os, "access", lambda path, mode: False)
    with pytest.raises(UsageError, match=r"gpt: its parent folder .* is not writable$"):
        model.save_pretrained(tmp_path / "gpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_read_only_file_system_and_a_full_one_are_refused_up_front(tmp_path, model):
    """Real ones: a read-only tmpfs, and a tmpfs of 64 kB (the model needs 1 MB and more)."""
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro, \
            pytest.raises(UsageError, match=r"gpt: its parent folder .*/ro is not writable$"):
        model.save_pretrained(ro / "gpt")
    with tmpfs(tmp_path / "small", "size=64k") as small:
        with pytest.raises(UsageError, match=r"gpt: saving needs about 1\.\d MB, but .*/small has 0\.1 MB free$"):
            model.save_pretrained(small / "gpt")
        assert list(small.iterdir()) == []


KILLED_SAVER = """
import sys
from npgpt import GPT, BPETokenizer, GPTConfig
tokenizer = BPETokenizer("gpt2").train("the cat sat on the mat. " * 20, 280)
models = [GPT(GPTConfig(vocab_size=4000, block_size=64, n_layer=n_layer, n_head=4, n_embd=128), seed=n_layer)
          for n_layer in (4, 3)]
for i in range(10**6):
    models[i % 2].save_pretrained(sys.argv[1], tokenizer)
    print("saved", i, flush=True)
"""


@pytest.mark.slow          # five processes of 2 s each: out of the quick loop, in CI
def test_a_save_killed_at_a_random_moment_leaves_a_whole_folder(tmp_path):
    """kill -9 while a process saves two models of 5 MB (4 and 3 blocks, and a tokenizer) over one
    folder in turn: the folder always loads as one of the two, whole; the next save removes what
    the killed one left. (The old save, file after file, could leave one model's weights beside the
    other's config.json.)"""
    models = {n_layer: GPT(GPTConfig(vocab_size=4000, block_size=64, n_layer=n_layer, n_head=4, n_embd=128),
                           seed=n_layer) for n_layer in (4, 3)}
    folder = models[4].save_pretrained(tmp_path / "gpt")
    rng = np.random.default_rng(0)
    for _ in range(5):
        saver = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(folder)], stdout=subprocess.PIPE, text=True)
        assert saver.stdout.readline().startswith("saved")
        time.sleep(rng.uniform(0, 0.2))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        loaded = GPT.from_pretrained(folder, verbose=False)
        model = models[loaded.config.n_layer]
        assert all(np.array_equal(loaded.params[k], model.params[k]) for k in model.params)
    models[3].save_pretrained(folder)
    assert siblings(folder) == []
