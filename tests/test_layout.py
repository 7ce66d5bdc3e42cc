"""The house rules, checked: each floor imports only from the floors below it, only the backend
switch and the kernels know which backend runs, the library never reaches into benchmarks/ or
tests/, and every model keeps one protocol."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npgpt
from npgpt.models import Model

PACKAGE = Path(npgpt.__file__).parent

# The public names of npgpt before the package was reshaped into floors: all must stay importable.
PUBLIC_BEFORE = [
    "GPT", "GPTConfig", "PRESETS", "GradcheckReport", "check_model", "check_op", "gradcheck", "jitter",
    "get_backend", "set_backend", "use_backend", "BPETokenizer", "CharTokenizer", "CorpusUnavailableError",
    "Dataset", "load_text", "resolve_corpus", "WordVectors", "train_glove", "train_word2vec", "SGD", "AdamW",
    "clip_grad_norm", "lr_schedule", "TrainConfig", "Trainer", "KVCache", "beam_search", "generate",
    "next_token_distribution", "RNN", "LSTM", "GRU", "RecurrentConfig", "RecurrentLM", "RecurrentState",
    "MultiheadAttention", "Transformer", "DocumentModel"]


def imports_of(path):
    """(level, module) of every import statement in a file: level 0 is absolute, 1 is ``from .``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
    return found


def test_every_public_name_is_still_importable():
    missing = [name for name in PUBLIC_BEFORE if not hasattr(npgpt, name)]
    assert not missing and set(PUBLIC_BEFORE) <= set(npgpt.__all__), missing


def test_ops_import_nothing_from_another_floor():
    for path in sorted((PACKAGE / "ops").glob("*.py")):
        for level, module in imports_of(path):
            assert level in (0, 1), f"{path.name} reaches up: from {'.' * level}{module} import ..."
            assert level == 1 or not module.startswith("npgpt"), f"{path.name} imports {module}"


def backend_questions(path):
    """Places in a file's code that ask which backend runs: a call of get_backend(), a comparison
    with the string "numba" or "numpy", an import of the kernels."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "get_backend":
            found.append(f"line {node.lineno}: get_backend()")
        if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in ("numba", "numpy")
                                                 for c in [node.left, *node.comparators]):
            found.append(f"line {node.lineno}: compares with a backend name")
    found += [f"imports {m}" for _, m in imports_of(path) if "kernels" in m]
    return found


@pytest.mark.slow
def test_only_the_switch_and_the_kernels_know_the_backend():
    """Nothing above npgpt/runtime/backend.py and npgpt/kernels/ asks which backend is active."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "backend.py" or "kernels" in path.parts:
            continue
        assert not backend_questions(path), f"{path.relative_to(PACKAGE)}: {backend_questions(path)}"


def test_the_backend_check_can_fail(tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text("from .kernels import decode\nif backend.get_backend() == 'numba':\n    pass\n")
    assert len(backend_questions(path)) == 3


def test_the_library_never_imports_benchmarks_or_tests():
    for path in sorted(PACKAGE.rglob("*.py")):
        for _, module in imports_of(path):
            assert not module.startswith(("benchmarks", "tests")), f"{path.relative_to(PACKAGE)}: {module}"


@pytest.mark.slow
def test_importing_npgpt_loads_neither_torch_nor_matplotlib():
    code = "import sys, npgpt; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def tiny_models():
    """One small instance of every model, float64, with an input to run it on."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, (2, 5))
    gpt = npgpt.GPT(npgpt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), dtype=np.float64)
    lstm = npgpt.RecurrentLM(npgpt.RecurrentConfig(vocab_size=11, block_size=8, n_embd=4, n_hidden=6,
                                                   n_layer=1), dtype=np.float64)
    doc = npgpt.DocumentModel(num_tokens=11, embed_dim=8, num_heads=2, num_layers=1, max_seq_len=8,
                              num_decoder_layers=1, dim_feedforward=12, dtype=np.float64)
    return [(gpt, (ids, ids)), (lstm, (ids, ids)), (doc, (ids.T, ids.T, ids.T))]


@pytest.mark.parametrize("model, inputs", tiny_models(), ids=["gpt", "lstm", "document"])
def test_every_model_keeps_the_protocol(model, inputs):
    assert isinstance(model, Model)
    assert model.num_params() == sum(p.size for p in model.params.values())
    _, loss = model.forward(*inputs)
    grads = model.backward()
    assert grads is model.grads and grads.keys() == model.params.keys()
    assert all(g.shape == model.params[k].shape for k, g in grads.items())
    assert model.eval() is model and not model.training and model.train().training
    state = model.state_dict()
    first = next(iter(state))
    state[first] = state[first] + 1.0
    bad = dict(state, unexpected=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected keys: unexpected"):
        model.load_state_dict(bad)
    assert not np.array_equal(model.params[first], state[first])      # all or nothing
    model.load_state_dict(state)
    np.testing.assert_array_equal(model.params[first], state[first])
    with pytest.raises(ValueError, match="expects a dict of name -> array, got list"):
        model.load_state_dict([])


@pytest.mark.parametrize("model, inputs", tiny_models()[:2], ids=["gpt", "lstm"])
def test_language_models_continue_a_sequence_through_their_cache(model, inputs):
    ids = inputs[0]
    whole, _ = model.forward(ids)
    cache = model.new_cache(batch_size=2)
    first, _ = model.forward(ids[:, :3], cache=cache)
    second, _ = model.forward(ids[:, 3:4], cache=cache)
    third, _ = model.forward(ids[:, 4:], cache=cache)
    assert cache.length == 5
    np.testing.assert_allclose(np.concatenate([first, second, third], axis=1), whole, rtol=1e-10)


def test_a_model_without_steps_says_so():
    model = tiny_models()[2][0]
    with pytest.raises(ValueError, match="DocumentModel does not decode step by step"):
        model.new_cache()


@pytest.mark.slow
def test_every_subpackage_is_reachable_from_a_plain_import():
    code = ("import npgpt; print(npgpt.apps.resolve('translate').APP, npgpt.allocation.__name__, "
            "npgpt.verify.__name__, npgpt.ops.layernorm_forward.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["translation", "npgpt.allocation", "npgpt.verify", "layernorm_forward"]
    with pytest.raises(AttributeError, match="module 'npgpt' has no attribute 'nope'"):
        npgpt.nope  # noqa: B018
