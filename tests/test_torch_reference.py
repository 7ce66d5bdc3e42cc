"""npgpt against PyTorch: the same weights give the same logits, loss and gradients (float64),
and the document's code has the parameter count npgpt computes. Skipped without torch."""
import numpy as np
import pytest
from references import optional_reference

torch = optional_reference("torch", reason="the reference GPT")

import npgpt  # noqa: E402
from npgpt import GPT, GPTConfig, jitter, ops  # noqa: E402
from npgpt.verify.counting import document_code_num_params, torch_transformer_num_params  # noqa: E402
from npgpt.verify.twins import from_npgpt  # noqa: E402


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 0.25])        # 0.25: a LayerNorm epsilon large enough to matter
def test_gpt_matches_pytorch(rng, pos_encoding, tie_weights, bias, eps):
    cfg = GPTConfig(vocab_size=13, block_size=9, n_layer=2, n_head=3, n_embd=12,
                    pos_encoding=pos_encoding, tie_weights=tie_weights, bias=bias, layer_norm_epsilon=eps)
    model = GPT(cfg, dtype=np.float64)
    jitter(model.params, seed=4)
    twin = from_npgpt(model)
    idx, targets = rng.integers(0, 13, (3, 9)), rng.integers(0, 13, (3, 9))

    logits, loss = model.forward(idx, targets)
    grads = model.backward()
    t_logits, t_loss = twin(torch.from_numpy(idx), torch.from_numpy(targets))
    t_loss.backward()

    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    t_grads = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    assert sorted(t_grads) == sorted(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(g, t_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_gelu_matches_pytorch_tanh_gelu(rng):
    x = 4 * rng.standard_normal(1000)
    y, _ = ops.gelu_forward(x)
    expected = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)


def test_sinusoidal_table_matches_the_documents_pytorch_construction():
    """The document's PositionalEncoding builds its table this way (restated, float32 as in torch)."""
    d_model, n = 16, 20
    position = torch.arange(0, n, dtype=torch.float).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-torch.log(torch.tensor(10000.0)) / d_model))
    pe = torch.zeros(n, d_model)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)
    np.testing.assert_allclose(ops.sinusoidal_table(n, d_model), pe.numpy(), atol=2e-5)


@pytest.mark.parametrize("args", [(16, 2, 3, 1, 40), (24, 4, 1, 2, 24)])
def test_transformer_param_formula_matches_pytorch(args):
    d, nhead, n_enc, n_dec, d_ff = args
    t = torch.nn.Transformer(d, nhead, n_enc, n_dec, d_ff)
    assert torch_transformer_num_params(d, nhead, n_enc, n_dec, d_ff) == sum(p.numel() for p in t.parameters())


def test_document_code_parameter_count_matches_pytorch():
    """Build the document's layers exactly as its code calls them and count."""
    with torch.device("meta"):      # shapes only, no memory
        embedding = torch.nn.Embedding(10000, 512)
        transformer = torch.nn.Transformer(512, 8, 24)
        fc_out = torch.nn.Linear(512, 10000)
    counted = sum(p.numel() for m in (embedding, transformer, fc_out) for p in m.parameters())
    assert counted == document_code_num_params() == 111_133_456
    assert len(transformer.encoder.layers) == 24 and len(transformer.decoder.layers) == 6


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
def test_the_twins_cached_greedy_generation_is_npgpts(pos_encoding):
    """The PyTorch side of ``bench --preset gpt2``: its KV cache gives npgpt's greedy tokens."""
    from npgpt.verify.twins import generate_greedy
    model = GPT(GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=3, n_embd=12, pos_encoding=pos_encoding),
                dtype=np.float64)
    jitter(model.params, scale=0.5, seed=8)
    prompt = [3, 1, 4, 1, 5]
    np.testing.assert_array_equal(generate_greedy(from_npgpt(model), prompt, 19).numpy(),
                                  npgpt.generate(model, prompt, 19))
    with pytest.raises(ValueError, match="one token at a time"):
        kv = [[] for _ in range(2)]
        twin = from_npgpt(model)
        twin(torch.tensor([prompt]), kv=kv)
        twin(torch.tensor([prompt]), kv=kv)
