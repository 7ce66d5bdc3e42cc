"""The encoder-decoder Transformer (``torch.nn.Transformer``'s twin) and the document's model made
runnable: gradient checks, PyTorch equivalence (skipped without torch), parameter counts, bad input,
and the copy/reverse task."""
import numpy as np
import pytest
from references import optional_reference

from npgpt import LSTM, gradcheck, jitter
from npgpt.models import MultiheadAttention, Transformer
from npgpt.models.document import DOCUMENT_CONFIG, DocumentModel, document_model_param_shapes
from npgpt.ops import (
    attention_mask,
    decoder_layer_backward,
    decoder_layer_forward,
    encoder_layer_backward,
    encoder_layer_forward,
    generate_square_subsequent_mask,
    multihead_attention_backward,
    multihead_attention_forward,
    multihead_attention_weights,
    sinusoidal_table,
)
from npgpt.training.copy_task import copy_task_batch, train_copy_task
from npgpt.verify.counting import document_code_num_params, torch_transformer_num_params

E, H, F = 8, 2, 12                       # tiny width, heads, feed-forward width
TINY = dict(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=F)
TINY_DOC = dict(num_tokens=11, embed_dim=E, num_heads=H, num_layers=2, max_seq_len=10,
                num_decoder_layers=2, dim_feedforward=F)
TOL = 1e-6
# nn.Transformer warns at construction that sequence-first layers skip its nested-tensor fast path.
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")


def jittered_layer(prefix_shapes, rng):
    """Parameters for one layer (relative names), at a generic point."""
    params = {name: rng.standard_normal(shape) * 0.5 for name, shape in prefix_shapes.items()}
    for name in params:
        if ".norm" in "." + name and name.endswith("weight"):
            params[name] += 1.0
    return params


def layer_shapes(kind):
    model = Transformer(**TINY)
    prefix = f"{kind}.layers.0."
    return {name[len(prefix):]: p.shape for name, p in model.params.items() if name.startswith(prefix)}


def random_masks(rng, N, T, S, kind):
    """(attn_mask, key_padding_mask) of the given kind for T queries over S keys."""
    if kind == "none":
        return None, None
    if kind == "float":                  # additive, with -inf and finite penalties
        m = rng.standard_normal((T, S))
        m[np.arange(T), (np.arange(T) + 1) % S] = -np.inf
        return m, None
    if kind == "bool_and_padding":       # True blocks; the last key of sequence 0 is padding
        m = np.zeros((T, S), dtype=bool)
        m[0, -1] = m[-1, 0] = True
        pad = np.zeros((N, S), dtype=bool)
        pad[0, -1] = True
        return m, pad
    if kind == "per_head":               # (N*H, T, S) float
        m = rng.standard_normal((N * H, T, S))
        m[:, :, 0] = -np.inf
        return m, None
    raise AssertionError(kind)


MASK_KINDS = ["none", "float", "bool_and_padding", "per_head"]


# --------------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_attention_gradcheck(rng, mask_kind, cross):
    N, T = 2, 4
    S = 5 if cross else T
    p = jittered_layer(layer_shapes("encoder"), rng)
    p = {k[len("self_attn."):]: v for k, v in p.items() if k.startswith("self_attn.")}
    attn, pad = random_masks(rng, N, T, S, mask_kind)
    mask = attention_mask(attn, pad, N, H, T, S)
    x = rng.standard_normal((N, T, E))
    inputs = {"x": x, "memory": rng.standard_normal((N, S, E))} if cross else {"x": x}
    kv = (lambda: inputs["memory"]) if cross else (lambda: inputs["x"])
    G = rng.standard_normal((N, T, E))

    out, cache = multihead_attention_forward(x, kv(), kv(), p, H, mask)
    dq, dk, dv, grads = multihead_attention_backward(G, cache)
    if cross:
        grads.update(x=dq, memory=dk + dv)
    else:
        grads.update(x=dq + dk + dv)
    loss = lambda: float(np.sum(multihead_attention_forward(inputs["x"], kv(), kv(), p, H, mask)[0] * G))
    report = gradcheck(loss, {**p, **inputs}, grads)
    assert report.max_rel_error <= TOL, f"\n{report}"
    weights = multihead_attention_weights(cache)
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    if mask is not None:
        assert np.all(weights[np.broadcast_to(np.isneginf(mask), weights.shape)] == 0)


@pytest.mark.parametrize("mask_kind", ["none", "bool_and_padding"])
def test_encoder_layer_gradcheck(rng, mask_kind):
    N, S = 2, 5
    p = jittered_layer(layer_shapes("encoder"), rng)
    mask = attention_mask(*random_masks(rng, N, S, S, mask_kind), N, H, S, S)
    x, G = rng.standard_normal((N, S, E)), rng.standard_normal((N, S, E))
    y, cache = encoder_layer_forward(x, p, H, mask)
    dx, grads = encoder_layer_backward(G, cache)
    assert sorted(grads) == sorted(p)
    loss = lambda: float(np.sum(encoder_layer_forward(x, p, H, mask)[0] * G))
    report = gradcheck(loss, {**p, "x": x}, {**grads, "x": dx})
    assert report.max_rel_error <= TOL, f"\n{report}"


@pytest.mark.parametrize("mask_kind", ["none", "float", "bool_and_padding"])
@pytest.mark.slow
def test_decoder_layer_gradcheck(rng, mask_kind):
    N, T, S = 2, 4, 5
    p = jittered_layer(layer_shapes("decoder"), rng)
    self_mask = attention_mask(*random_masks(rng, N, T, T, mask_kind), N, H, T, T)
    cross_mask = attention_mask(*random_masks(rng, N, T, S, mask_kind), N, H, T, S)
    x, memory, G = (rng.standard_normal(shape) for shape in ((N, T, E), (N, S, E), (N, T, E)))
    y, cache = decoder_layer_forward(x, memory, p, H, self_mask, cross_mask)
    dx, dmemory, grads = decoder_layer_backward(G, cache)
    assert sorted(grads) == sorted(p)
    loss = lambda: float(np.sum(decoder_layer_forward(x, memory, p, H, self_mask, cross_mask)[0] * G))
    report = gradcheck(loss, {**p, "x": x, "memory": memory}, {**grads, "x": dx, "memory": dmemory})
    assert report.max_rel_error <= TOL, f"\n{report}"


def transformer_inputs(rng, batch_first, N=2, S=5, T=4):
    src, tgt = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    if not batch_first:
        src, tgt = src.transpose(1, 0, 2).copy(), tgt.transpose(1, 0, 2).copy()
    pad = np.zeros((N, S), dtype=bool)
    pad[1, -2:] = True
    masks = dict(tgt_mask=generate_square_subsequent_mask(T), src_key_padding_mask=pad,
                 memory_key_padding_mask=pad)
    return src, tgt, masks


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.slow
def test_transformer_gradcheck(rng, batch_first):
    model = Transformer(**TINY, batch_first=batch_first)
    jitter(model.params, seed=3)
    src, tgt, masks = transformer_inputs(rng, batch_first)
    out = model.forward(src, tgt, **masks)
    G = rng.standard_normal(out.shape)
    dsrc, dtgt = model.backward(G)
    assert dsrc.shape == src.shape and dtgt.shape == tgt.shape
    assert list(model.grads) == list(model.params)
    loss = lambda: float(np.sum(model.forward(src, tgt, **masks) * G))
    report = gradcheck(loss, {**model.params, "src": src, "tgt": tgt},
                       {**model.grads, "src": dsrc, "tgt": dtgt}, max_entries=16)
    assert report.max_rel_error <= TOL, f"\n{report}"


@pytest.mark.parametrize("pad_id", [None, 0])
@pytest.mark.slow
def test_document_model_gradcheck(rng, pad_id):
    model = DocumentModel(**TINY_DOC, dtype=np.float64)
    jitter(model.params, seed=5)
    src, tgt = rng.integers(1, 11, (6, 2)), rng.integers(1, 11, (5, 2))
    targets = rng.integers(1, 11, (5, 2))
    if pad_id is not None:
        src[-2:, 1] = tgt[-1:, 0] = targets[-1:, 0] = pad_id
    model.forward(src, tgt, targets, pad_id=pad_id)
    grads = model.backward()
    assert list(grads) == list(model.params)
    report = gradcheck(lambda: model.forward(src, tgt, targets, pad_id=pad_id)[1], model.params, grads,
                       max_entries=12)
    assert report.max_rel_error <= TOL, f"\n{report}"


def test_a_broken_backward_is_caught(rng, monkeypatch):
    """The check can fail: a ReLU backward that lets every gradient through is flagged."""
    import npgpt.ops.transformer_layers as transformer_layers

    monkeypatch.setattr(transformer_layers, "relu_backward", lambda dout, cache: dout)
    p = jittered_layer(layer_shapes("encoder"), rng)
    x, G = rng.standard_normal((2, 5, E)), rng.standard_normal((2, 5, E))
    _, cache = encoder_layer_forward(x, p, H)
    dx, grads = encoder_layer_backward(G, cache)
    report = gradcheck(lambda: float(np.sum(encoder_layer_forward(x, p, H)[0] * G)), {**p, "x": x},
                       {**grads, "x": dx})
    failed = {row.name for row in report.failures()}
    assert "linear1.weight" in failed and "x" in failed
    assert not failed & {"linear2.weight", "norm2.weight"}      # downstream of the ReLU: still right


# --------------------------------------------------------------------------- behaviour
def test_causal_mask_hides_the_future(rng):
    model = DocumentModel(**TINY_DOC, dtype=np.float64)
    src, tgt = rng.integers(0, 11, (6, 2)), rng.integers(0, 11, (5, 2))
    changed = tgt.copy()
    changed[3:] = (changed[3:] + 1) % 11
    for causal, same in [(True, True), (False, False)]:
        a = model.forward(src, tgt, causal=causal)[0][:3]
        b = model.forward(src, changed, causal=causal)[0][:3]
        assert np.allclose(a, b, rtol=0, atol=1e-12) == same


def test_generate_square_subsequent_mask():
    m = generate_square_subsequent_mask(3)
    assert m.tolist() == [[0.0, -np.inf, -np.inf], [0.0, 0.0, -np.inf], [0.0, 0.0, 0.0]]
    assert Transformer.generate_square_subsequent_mask(2, np.float32).dtype == np.float32


def test_layouts_agree(rng):
    seq, bat = Transformer(**TINY), Transformer(**TINY, batch_first=True)
    src, tgt, masks = transformer_inputs(rng, batch_first=False)
    out = seq.forward(src, tgt, **masks)
    out_b = bat.forward(src.transpose(1, 0, 2), tgt.transpose(1, 0, 2), **masks)
    np.testing.assert_allclose(out_b.transpose(1, 0, 2), out, rtol=1e-12)
    memory = seq.encode(src, src_key_padding_mask=masks["src_key_padding_mask"])
    np.testing.assert_allclose(seq.decode(tgt, memory, masks["tgt_mask"],
                                          memory_key_padding_mask=masks["memory_key_padding_mask"]), out,
                               rtol=1e-12)

    doc_seq, doc_bat = DocumentModel(**TINY_DOC), DocumentModel(**TINY_DOC, batch_first=True)
    ids_s, ids_t = rng.integers(0, 11, (6, 3)), rng.integers(0, 11, (4, 3))
    np.testing.assert_allclose(doc_bat.forward(ids_s.T, ids_t.T)[0].transpose(1, 0, 2),
                               doc_seq.forward(ids_s, ids_t)[0], rtol=1e-5, atol=1e-6)
    assert doc_seq.greedy_decode(ids_s, 10, 4).shape == (4, 3)
    np.testing.assert_array_equal(doc_bat.greedy_decode(ids_s.T, 10, 4), doc_seq.greedy_decode(ids_s, 10, 4).T)


def test_float32_stays_float32_and_agrees_with_float64(rng):
    m32 = DocumentModel(**TINY_DOC, dtype=np.float32)
    m64 = DocumentModel(**TINY_DOC, dtype=np.float64)
    src, tgt = rng.integers(0, 11, (6, 2)), rng.integers(0, 11, (5, 2))
    l32, loss32 = m32.forward(src, tgt, tgt)
    l64, loss64 = m64.forward(src, tgt, tgt)
    assert l32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in m32.backward().values())
    np.testing.assert_allclose(l32, l64, rtol=1e-4, atol=1e-5)
    assert loss32 == pytest.approx(loss64, rel=1e-5)


def test_state_dict_round_trip_and_strict_loading():
    a, b = Transformer(**TINY, seed=1), Transformer(**TINY, seed=2)
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    state = a.state_dict()
    state.pop("encoder.norm.bias")
    state["encoder.layers.0.linear1.weight"] = np.zeros((3, 3))
    state["encoder.layers.0.bogus"] = np.zeros(1)
    with pytest.raises(ValueError) as err:
        b.load_state_dict(state)
    msg = str(err.value)
    assert "encoder.norm.bias" in msg and "encoder.layers.0.bogus" in msg
    assert "encoder.layers.0.linear1.weight: expected (12, 8), got (3, 3)" in msg

    doc, other = DocumentModel(**TINY_DOC, seed=3), DocumentModel(**TINY_DOC, seed=4)
    other.load_state_dict(doc.state_dict())
    assert other.params["transformer.decoder.norm.weight"] is other.transformer.params["decoder.norm.weight"]
    assert np.array_equal(other.transformer.params["encoder.layers.1.linear2.bias"],
                          doc.params["transformer.encoder.layers.1.linear2.bias"])


def test_initialisation_follows_pytorch():
    p = Transformer(**TINY).params
    bound = np.sqrt(6 / (E + 3 * E))
    w = p["encoder.layers.0.self_attn.in_proj_weight"]
    assert np.abs(w).max() <= bound and w.std() > bound / 3
    assert not p["decoder.layers.1.multihead_attn.in_proj_bias"].any()
    assert np.all(p["decoder.layers.0.norm3.weight"] == 1) and not p["decoder.norm.bias"].any()
    assert 0 < np.abs(p["encoder.layers.0.linear1.bias"]).max() <= 1 / np.sqrt(E)


# --------------------------------------------------------------------------- parameter counts
def test_the_documents_parameter_count_without_building_it():
    assert DocumentModel.count_params() == DocumentModel.count_params(**DOCUMENT_CONFIG) == 111_133_456
    assert DocumentModel.count_params() == document_code_num_params()
    shapes = document_model_param_shapes()
    assert sum(k.startswith("transformer.encoder.layers.") and k.endswith("norm1.weight") for k in shapes) == 24
    assert sum(k.startswith("transformer.decoder.layers.") and k.endswith("norm3.weight") for k in shapes) == 6


@pytest.mark.parametrize("config", [TINY_DOC, dict(TINY_DOC, num_layers=3, num_decoder_layers=1,
                                                    num_tokens=7, dim_feedforward=5)])
def test_counts_agree_on_small_configs(config):
    model = DocumentModel(**config)
    assert model.num_params() == DocumentModel.count_params(**config)
    t = model.transformer
    assert t.num_params() == torch_transformer_num_params(t.d_model, t.nhead, t.num_encoder_layers,
                                                          t.num_decoder_layers, t.dim_feedforward)
    if config["num_decoder_layers"] == 6 and config["dim_feedforward"] == 2048:
        assert model.num_params() == document_code_num_params(config["num_tokens"], config["embed_dim"],
                                                              config["num_heads"], config["num_layers"])


def test_counts_agree_with_the_documents_formula_at_its_fixed_depths():
    """document_code_num_params fixes 6 decoder layers and ff 2048; vary the rest, count by shapes."""
    for args in [(50, 16, 2, 1), (100, 32, 4, 3), (10000, 512, 8, 24)]:
        V, d, h, n = args
        assert DocumentModel.count_params(V, d, h, n) == document_code_num_params(V, d, h, n)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors_naming_shapes(rng):
    model = Transformer(**TINY)
    src, tgt = rng.standard_normal((5, 2, E)), rng.standard_normal((4, 2, E))
    cases = [
        (lambda: model.forward(rng.standard_normal((5, 2, E + 1)), tgt), r"\(5, 2, 9\).*d_model=8"),
        (lambda: model.forward(src[:, :1], tgt), r"batch sizes \(1 vs 2\)"),
        (lambda: model.forward(src[0], tgt), r"shape \(2, 8\), expected 3 axes"),
        (lambda: model.forward(src, tgt, tgt_mask=np.zeros((5, 5))),
         r"tgt_mask has shape \(5, 5\), expected \(T, S\) = \(4, 4\)"),
        (lambda: model.forward(src, tgt, memory_mask=np.zeros((4, 4))),
         r"memory_mask has shape \(4, 4\), expected \(T, S\) = \(4, 5\)"),
        (lambda: model.forward(src, tgt, src_key_padding_mask=np.zeros((5, 2), bool)),
         r"src_key_padding_mask has shape \(5, 2\), expected \(N, S\) = \(2, 5\)"),
        (lambda: model.forward(src, tgt, tgt_mask=np.zeros((4, 4), int)), "bool .* or float"),
        (lambda: model.forward(src, tgt, tgt_mask=np.ones((4, 4), bool)), "mask every key of query 0"),
        (lambda: model.backward(np.zeros((4, 2, E))), "preceding forward"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    model.forward(src, tgt)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 4, 8\), the output has \(4, 2, 8\)"):
        model.backward(np.zeros((2, 4, E)))


# One check (npgpt.models.base.check_sequences) for every layer that takes sequences of vectors:
# the same refusals in the same words, each naming the layer's own width and layout.
SEQUENCE_LAYERS = {
    "lstm": (lambda: LSTM(E, 4), lambda layer, x: layer.forward(x), r"input_size=8 \(time, batch, input_size\)"),
    "transformer": (lambda: Transformer(**TINY), lambda layer, x: layer.forward(x, np.zeros((4, 2, E))),
                    r"d_model=8 \(S, N, E\) \(batch_first=False\)"),
    "attention": (lambda: MultiheadAttention(E, H), lambda layer, x: layer.forward(x, x, x),
                  r"embed_dim=8 \(L, N, E\)"),
}


@pytest.mark.parametrize("layer", SEQUENCE_LAYERS)
def test_sequence_layers_refuse_bad_input_in_one_voice(layer):
    build, call, width = SEQUENCE_LAYERS[layer]
    name = "x" if layer == "lstm" else "src" if layer == "transformer" else "query"
    cases = [(np.zeros((5, 2, E), dtype=np.int64), f"{name} must be a floating-point array, got dtype int64"),
             (np.zeros((5, E)), rf"{name} has shape \(5, 8\), expected 3 axes"),
             (np.zeros((5, 2, E + 1)), rf"{name} has shape \(5, 2, 9\): its last axis must be {width}, got 9"),
             (np.zeros((0, 2, E)), rf"{name} has shape \(0, 2, 8\): it needs at least one time step and one batch row")]
    for x, message in cases:
        with pytest.raises(ValueError, match=message):
            call(build(), x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=10, nhead=3), "d_model=10 is not divisible by nhead=3"),
    (dict(d_model=0), "d_model must be a positive integer"),
    (dict(dtype=np.int32), "float32 or float64"),
])
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Transformer(**{**TINY, **kwargs})


def test_document_model_bad_ids(rng):
    model = DocumentModel(**TINY_DOC)
    ok_src, ok_tgt = rng.integers(0, 11, (6, 2)), rng.integers(0, 11, (5, 2))
    for args, message in [((np.full((6, 2), 11), ok_tgt), "token id 11, outside"),
                          ((ok_src, np.zeros((11, 2), int)), r"length 11 exceeds max_seq_len=10"),
                          ((ok_src.astype(float), ok_tgt), "integer token ids"),
                          ((ok_src, ok_tgt, ok_tgt[:4]), r"shaped like tgt_ids \(5, 2\)")]:
        with pytest.raises(ValueError, match=message):
            model.forward(*args)
    with pytest.raises(ValueError, match="preceding forward"):
        DocumentModel(**TINY_DOC).backward()


# --------------------------------------------------------------------------- the copy task
def test_copy_task_batch():
    src, tgt_in, targets = copy_task_batch(np.random.default_rng(0), 3, 6)
    np.testing.assert_array_equal(targets, src[:, ::-1])
    np.testing.assert_array_equal(tgt_in[:, 1:], targets[:, :-1])
    assert np.all(tgt_in[:, 0] == 10)


def tiny_copy_model():
    return DocumentModel(num_tokens=11, embed_dim=32, num_heads=2, num_layers=2, num_decoder_layers=2,
                         dim_feedforward=64, max_seq_len=16, dtype=np.float32)


@pytest.mark.slow
def test_reverse_task_is_learned():
    result = train_copy_task(tiny_copy_model(), steps=120, batch_size=32, seq_len=6, task="reverse", lr=3e-3)
    assert result["accuracy_before"] < 0.25
    assert result["accuracy"] > 0.8 and result["sequence_accuracy"] > 0.6, result
    assert np.mean(result["losses"][-10:]) < 0.1 * np.mean(result["losses"][:10])

    # Without the causal mask (the document's code has none) the decoder reads each answer from the
    # next input position: the training loss falls as far, but greedy decoding cannot do that.
    leaky = train_copy_task(tiny_copy_model(), steps=120, causal=False)
    assert np.mean(leaky["losses"][-10:]) < 0.1 * np.mean(leaky["losses"][:10])
    assert leaky["sequence_accuracy"] < 0.5 * result["sequence_accuracy"], (leaky, result)


# --------------------------------------------------------------------------- PyTorch equivalence
@pytest.fixture
def torch():
    """PyTorch on one thread (tiny models on a busy machine run ~100x faster), restored afterwards."""
    torch = optional_reference("torch", reason="the reference nn.Transformer")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def _to_numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _t(a):
    import torch
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "per_head", "float_padding"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_matches_pytorch(torch, rng, mask_kind, batch_first):
    torch.manual_seed(0)
    N, S, T = 3, 5, 4
    twin = torch.nn.Transformer(**TINY, dropout=0.0, batch_first=batch_first, dtype=torch.float64)
    for p in twin.parameters():                       # a generic point, biases and norms included
        p.data += 0.2 * torch.randn_like(p)
    model = Transformer(**TINY, batch_first=batch_first)
    model.load_state_dict(_to_numpy_state(twin))

    src, tgt = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    if not batch_first:
        src, tgt = src.transpose(1, 0, 2).copy(), tgt.transpose(1, 0, 2).copy()
    pad_src = np.zeros((N, S), bool)
    pad_src[0, -2:] = True
    pad_tgt = np.zeros((N, T), bool)
    pad_tgt[2, -1] = True
    masks = {}
    if mask_kind == "bool":
        src_mask = np.zeros((S, S), bool)
        src_mask[1, 3] = True
        masks = dict(src_mask=src_mask, tgt_mask=np.triu(np.ones((T, T), bool), 1),
                     memory_mask=np.eye(T, S, k=1, dtype=bool), src_key_padding_mask=pad_src,
                     tgt_key_padding_mask=pad_tgt, memory_key_padding_mask=pad_src)
    elif mask_kind == "float":
        memory_mask = rng.standard_normal((T, S))
        memory_mask[:, 1] = -np.inf
        masks = dict(src_mask=rng.standard_normal((S, S)), tgt_mask=generate_square_subsequent_mask(T),
                     memory_mask=memory_mask)
    elif mask_kind == "per_head":
        masks = dict(src_mask=rng.standard_normal((N * H, S, S)),
                     tgt_mask=np.broadcast_to(generate_square_subsequent_mask(T), (N * H, T, T)),
                     memory_mask=rng.standard_normal((N * H, T, S)))
    elif mask_kind == "float_padding":
        masks = dict(tgt_mask=generate_square_subsequent_mask(T),
                     src_key_padding_mask=np.where(pad_src, -np.inf, 0.0),
                     tgt_key_padding_mask=np.where(pad_tgt, -np.inf, 0.0),
                     memory_key_padding_mask=np.where(pad_src, -np.inf, 0.0))

    out = model.forward(src, tgt, **masks)
    G = rng.standard_normal(out.shape)
    dsrc, dtgt = model.backward(G)

    t_src, t_tgt = _t(src).requires_grad_(True), _t(tgt).requires_grad_(True)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # PyTorch notes mixed mask types; we match it anyway
        t_out = twin(t_src, t_tgt, **{k: _t(v) for k, v in masks.items()})
    (t_out * _t(G)).sum().backward()

    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dsrc, t_src.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dtgt, t_tgt.grad.numpy(), rtol=1e-9, atol=1e-11)
    t_grads = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    assert list(t_grads) == list(model.grads)
    for name, g in model.grads.items():
        np.testing.assert_allclose(g, t_grads[name], rtol=1e-9, atol=1e-11, err_msg=name)


def test_parameter_names_and_shapes_match_pytorch(torch):
    twin = torch.nn.Transformer(**TINY)
    assert {k: tuple(v.shape) for k, v in twin.state_dict().items()} == Transformer(**TINY).param_shapes()


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_multihead_attention_matches_pytorch(torch, rng, cross):
    torch.manual_seed(1)
    twin = torch.nn.MultiheadAttention(E, H, dtype=torch.float64)
    for p in twin.parameters():
        p.data += 0.2 * torch.randn_like(p)
    mha = MultiheadAttention(E, H)
    mha.load_state_dict(_to_numpy_state(twin))
    T, S, N = 4, (6 if cross else 4), 2
    q = rng.standard_normal((T, N, E))
    kv = rng.standard_normal((S, N, E)) if cross else q
    pad = np.zeros((N, S), bool)
    pad[1, 0] = True
    attn = np.triu(np.ones((T, S), bool), 2)
    out = mha.forward(q, kv, kv, key_padding_mask=pad, attn_mask=attn)
    G = rng.standard_normal(out.shape)
    dq, dk, dv = mha.backward(G)
    tq = _t(q).requires_grad_(True)
    tkv = _t(kv).requires_grad_(True) if cross else tq
    t_out, t_w = twin(tq, tkv, tkv, key_padding_mask=_t(pad), attn_mask=_t(attn))
    (t_out * _t(G)).sum().backward()
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mha.weights.mean(1), t_w.detach().numpy(), rtol=1e-9, atol=1e-12)
    if cross:
        np.testing.assert_allclose(dq, tq.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(dk + dv, tkv.grad.numpy(), rtol=1e-9, atol=1e-11)
    else:
        np.testing.assert_allclose(dq + dk + dv, tq.grad.numpy(), rtol=1e-9, atol=1e-11)
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(mha.grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


def test_document_model_matches_a_pytorch_twin(torch, rng):
    """The document's architecture in PyTorch (restated, with the target and causal mask its forward
    lacked) gives the same logits, loss and gradients once its state dict is loaded."""
    nn = torch.nn

    class Twin(nn.Module):
        def __init__(self, V, d, heads, layers, max_len, dec_layers, ff):
            super().__init__()
            self.embedding = nn.Embedding(V, d)
            self.pos_encoder = nn.Module()
            table = torch.from_numpy(sinusoidal_table(max_len, d))
            self.pos_encoder.register_buffer("pe", table[:, None, :])   # (max_len, 1, d): sequence-first
            self.transformer = nn.Transformer(d, heads, layers, dec_layers, ff, dropout=0.0)
            self.fc_out = nn.Linear(d, V)

        def forward(self, src, tgt):
            pe = self.pos_encoder.pe
            es = self.embedding(src) + pe[:src.size(0)]
            et = self.embedding(tgt) + pe[:tgt.size(0)]
            mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(0), dtype=torch.float64)
            return self.fc_out(self.transformer(es, et, tgt_mask=mask))

    torch.manual_seed(2)
    c = TINY_DOC
    twin = Twin(c["num_tokens"], c["embed_dim"], c["num_heads"], c["num_layers"], c["max_seq_len"],
                c["num_decoder_layers"], c["dim_feedforward"]).double()
    model = DocumentModel(**c, dtype=np.float64)
    model.load_state_dict(_to_numpy_state(twin))     # pos_encoder.pe included
    assert sum(p.numel() for p in twin.parameters()) == model.num_params()

    src, tgt, targets = rng.integers(0, 11, (6, 2)), rng.integers(0, 11, (5, 2)), rng.integers(0, 11, (5, 2))
    logits, loss = model.forward(src, tgt, targets)
    grads = model.backward()
    t_logits = twin(_t(src), _t(tgt))
    t_loss = nn.functional.cross_entropy(t_logits.reshape(-1, 11), _t(targets).reshape(-1))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
