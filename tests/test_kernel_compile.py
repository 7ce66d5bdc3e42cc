"""What numba compiles for a training step and for decoding: no kernel builds numba's shape-mismatch
error message. A whole-row assignment between arrays (``a[i] = b``, ``a[i] += b``) makes numba compile,
for the error it would raise, int-to-string and string concatenation: 2.4-2.8 s per kernel, more
than half of a fresh clone's first step (``benchmarks/first_step.py``). Loops over elements do not.
"""
import re

import numpy as np
import pytest
from numba import njit
from numba.core.registry import CPUDispatcher

import npgpt
from npgpt import GPT, GPTConfig, generate
from npgpt.kernels import _compile, adamw, attention, cross_entropy, decode, embedding, gelu, layernorm, mlp
from npgpt.kernels.backend import use_backend

TRAINING_MODULES = [adamw, attention, cross_entropy, embedding, gelu, layernorm, mlp]
SHAPE_MESSAGE = "raise_with_shape_context"      # in the name of the function numba builds the message with


def serial_dispatchers(module):
    """The module's numba functions as a step on few elements runs them: each kernel's serial build,
    and its plain @njit functions."""
    for name, value in vars(module).items():
        if isinstance(value, _compile.Kernel):
            yield f"{module.__name__}.{name}", value.serial
        elif isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
            yield f"{module.__name__}.{name}", value


def float32_signatures_of_a_training_step():
    """{kernel name: (dispatcher, its float32 signatures)} after a small GPT's training step on numba."""
    data = npgpt.Dataset("a cat sat on the mat; the dog ate the log. " * 10, cache=False)
    config = GPTConfig(vocab_size=data.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16)
    trainer = npgpt.Trainer(GPT(config), data, npgpt.TrainConfig(max_iters=1, batch_size=2, eval_interval=1,
                                                                 eval_iters=1, warmup_iters=1))
    with use_backend("numba"):
        trainer.train(progress=False, log=lambda *_: None)
    found = {}
    for module in TRAINING_MODULES:
        for name, dispatcher in serial_dispatchers(module):
            signatures = [s for s in dispatcher.signatures if "float32" in str(s)]
            if signatures:
                found[name] = (dispatcher, signatures)
    return found


@pytest.fixture(scope="module")
def step_kernels():
    return float32_signatures_of_a_training_step()


def test_a_training_step_runs_the_kernels_checked(step_kernels):
    names = {name.rsplit(".", 1)[1] for name in step_kernels}
    assert {"_forward_rows", "_backward_rows", "_bias_gelu", "_gelu_bias_backward", "causal_softmax_inplace",
            "causal_softmax_backward_inplace", "_softmax_nll_rows", "_probs_minus_onehot", "_scatter_add",
            "_adamw"} <= names


@pytest.mark.parametrize("kernel", ["npgpt.kernels.mlp._gelu_bias_backward", "npgpt.kernels.embedding._scatter_add",
                                    "others"])
def test_no_step_kernel_compiles_a_shape_mismatch_message(step_kernels, kernel):
    named = [kernel] if kernel != "others" else sorted(set(step_kernels) - {
        "npgpt.kernels.mlp._gelu_bias_backward", "npgpt.kernels.embedding._scatter_add"})
    for name in named:
        assert_no_shape_message(name, *step_kernels[name])


def assert_no_shape_message(name, dispatcher, signatures):
    # Compiled afresh, without the cache: a build loaded from the cache holds no LLVM IR to read.
    # Each function's own IR: a function it calls is checked on its own.
    fresh = fresh_copy(dispatcher)
    for signature in signatures:
        fresh.compile(signature)
        assert SHAPE_MESSAGE not in fresh.inspect_llvm(signature), f"{name}{signature}"


def fresh_copy(dispatcher):
    """The same function under the same options, but never read from or written to the cache."""
    options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("cache", "nopython")}
    return njit(**options)(dispatcher.py_func)


def test_the_decoding_step_compiles_no_shape_mismatch_message():
    with use_backend("numba"):
        generate(GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)), np.array([1, 2]), 2)
    # A block loop loaded from numba's cache never types the functions it calls, so they list no
    # signatures: compiling it afresh types them, whatever the cache holds.
    loop = decode.decode_blocks_serial
    fresh_copy(loop).compile(next(s for s in loop.signatures if "float32" in str(s)))
    checked = 0
    for name, dispatcher in serial_dispatchers(decode):
        signatures = [s for s in dispatcher.signatures if "float32" in str(s)]
        if signatures and name != "npgpt.kernels.decode.decode_blocks":      # its parallel build: same code
            assert_no_shape_message(name, dispatcher, signatures)
            checked += 1
    assert checked >= 5          # decode_blocks_serial, _attend, _rows_of_affine, _gelu_inplace, add_parts...


def test_the_element_loops_give_the_row_assignments_results(rng):
    # embedding_backward accumulates repeated ids; the MLP's bias gradient gathers one row per part.
    idx = np.array([[2, 2, 0, 5]])
    dout = rng.standard_normal((1, 4, 3)).astype(np.float32)
    dW = npgpt.kernels.embedding_backward(dout, (idx, (6, 3)))
    expected = np.zeros((6, 3), np.float32)
    np.add.at(expected, idx.reshape(-1), dout.reshape(-1, 3))
    np.testing.assert_array_equal(dW, expected)
    h, t, da = (rng.standard_normal((5, 7)).astype(np.float32) for _ in range(3))
    dh, parts = np.empty_like(h), np.empty((2, 7), np.float32)
    mlp._gelu_bias_backward.serial(da, h, t, dh, parts)
    # rows [0, 2) and [2, 5): two or three float32 additions, in whatever order fastmath chose
    np.testing.assert_allclose(parts, [dh[:2].sum(axis=0), dh[2:].sum(axis=0)], rtol=1e-6, atol=1e-6)


def float32_ir(dispatcher, *args):
    """The LLVM IR of ``dispatcher`` compiled afresh for ``args`` (its helpers linked in)."""
    fresh = fresh_copy(dispatcher)
    fresh(*args)
    return fresh.overloads[fresh.signatures[0]].library.get_llvm_str()


@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_float32_exp_and_tanh_run_vectorised_inside_their_kernels(build):
    """The point of writing e^x and tanh out in float32 (kernels/attention.py, kernels/mlp.py) is that
    LLVM inlines them into the kernels' loops and vectorises them: the softmax's exp rounds a whole
    vector with llvm.floor, the GELU's tanh divides whole vectors. A scalar call (math.exp, math.tanh,
    or a helper left out of line) leaves neither."""
    scores = np.zeros((1, 1, 4, 4), np.float32)
    softmax = float32_ir(getattr(attention.causal_softmax_inplace, build), scores, np.float32(1))
    assert re.search(r"@llvm\.floor\.v\d+f32", softmax)
    h, b = np.zeros((2, 3), np.float32), np.zeros(3, np.float32)
    gelu = float32_ir(getattr(mlp._bias_gelu, build), h, b, h.copy(), h.copy())
    assert re.search(r"fdiv[^\n]*<\d+ x float>", gelu)
