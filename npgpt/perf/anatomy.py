"""Where one training step's time goes, part by part (notebook 10, ``benchmarks/anatomy.py``).

Each part (attention, the MLP's matrix products, GELU, LayerNorm, output layer + loss, embedding,
AdamW) is timed alone, forward and backward, on the step's real shapes, and multiplied by how often a
step runs it; "other" is the measured full step minus the parts (residual adds, reshapes, Python).
:func:`step_anatomy` times npgpt on one backend, :func:`torch_step_anatomy` the same parts in the
PyTorch twin (eager). Run each in a fresh process (:func:`npgpt.perf.harness.run_isolated`): thread
pools of one library starve another's.
"""
from typing import Any

import numpy as np

from ..kernels import backend
from ..models import GPT
from ..models.config import GPTConfig
from ..training.optim import AdamW
from .contenders import BENCH_PRESETS, NpgptContender, TorchContender
from .timing import median_ms

PARTS = ("attention", "MLP matmuls", "GELU", "LayerNorm", "head + loss", "embedding", "AdamW")


def step_anatomy(preset: str = "baby", backend_name: str = "numba", repeats: int = 20) -> dict[str, Any]:
    """Milliseconds per training step spent in each part (forward + backward, every layer),
    each part timed alone on the step's real shapes; "other" is the full step minus the parts
    (residual adds, reshapes, Python). Returns {part: ms} and the full step's ms."""
    cfg = GPTConfig.preset(preset)
    B, T, C, L, V = BENCH_PRESETS[preset]["batch_size"], cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    rng = np.random.default_rng(0)
    model = GPT(cfg, seed=0)
    p = model.block_params()[0]
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    h = rng.standard_normal((B, T, 4 * C)).astype(np.float32)
    ids = rng.integers(0, V, (B, T))
    with backend.use_backend(backend_name) as F:
        def fwd_bwd(forward, backward, *args):
            out, cache = forward(*args)[:2]
            backward(np.ones_like(out) if np.ndim(out) else 1.0, cache)

        def head_and_loss():
            logits, cache = F.linear_forward(x, model.params["transformer.wte.weight"].T)
            loss, loss_cache = F.cross_entropy_forward(logits.reshape(B * T, V), ids.reshape(-1))
            F.linear_backward(F.cross_entropy_backward(1.0, loss_cache).reshape(B, T, V), cache)

        # the gradients exist before the update, as in a step: made once, outside the timed call
        grads = {k: np.full_like(v, 1e-3) for k, v in model.params.items()}
        optimizer = AdamW(model.params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)

        def adamw():
            optimizer.step(grads)

        parts = {
            "attention": L * median_ms(lambda: fwd_bwd(
                F.self_attention_forward, F.self_attention_backward, x, p["attn.c_attn.weight"],
                p["attn.c_attn.bias"], p["attn.c_proj.weight"], p["attn.c_proj.bias"], cfg.n_head), repeats),
            "MLP matmuls": L * (median_ms(lambda: fwd_bwd(F.linear_forward, F.linear_backward, x,
                                                           p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]), repeats)
                                + median_ms(lambda: fwd_bwd(F.linear_forward, F.linear_backward, h,
                                                             p["mlp.c_proj.weight"], p["mlp.c_proj.bias"]), repeats)),
            "GELU": L * median_ms(lambda: fwd_bwd(F.gelu_forward, F.gelu_backward, h), repeats),
            "LayerNorm": (2 * L + 1) * median_ms(lambda: fwd_bwd(
                F.layernorm_forward, F.layernorm_backward, x, p["ln_1.weight"], p["ln_1.bias"]), repeats),
            "head + loss": median_ms(head_and_loss, repeats),
            "embedding": median_ms(lambda: F.embedding_backward(x, F.embedding_forward(
                ids, model.params["transformer.wte.weight"])[1]), repeats),
            "AdamW": median_ms(adamw, repeats),
        }
        contender = NpgptContender(cfg, backend_name, ids, ids)
        for _ in range(3):
            contender.step()
        step_ms = median_ms(contender.step, repeats)
    parts["other"] = max(step_ms - sum(parts.values()), 0.0)
    return {"parts_ms": parts, "step_ms": step_ms}


def torch_step_anatomy(preset: str = "baby", repeats: int = 30, threads: int = 2) -> dict[str, Any]:
    """The parts of :func:`step_anatomy`, timed in PyTorch eager with the twin's own modules."""
    import torch
    import torch.nn.functional as F

    from ..verify.twins import TorchGPT

    torch.set_num_threads(threads)
    cfg = GPTConfig.preset(preset)
    B, T, C, L, V = BENCH_PRESETS[preset]["batch_size"], cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    model = TorchGPT(cfg)
    block = model.transformer.h[0]
    x = torch.randn(B, T, C, requires_grad=True)
    h = torch.randn(B, T, 4 * C, requires_grad=True)
    ids = torch.randint(0, V, (B, T))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)

    def fwd_bwd(fn):
        def run():
            out = fn()
            out.backward(torch.ones_like(out))
        return run

    for p in model.parameters():      # the gradients exist before the update, as in a step: set once
        p.grad = torch.full_like(p, 1e-3)

    def adamw():
        optimizer.step()

    def ms(fn):
        return median_ms(fn, repeats)

    wte = model.transformer.wte.weight
    parts = {
        "attention": L * ms(fwd_bwd(lambda: block.attn(x))),
        "MLP matmuls": L * (ms(fwd_bwd(lambda: block.mlp.c_fc(x))) + ms(fwd_bwd(lambda: block.mlp.c_proj(h)))),
        "GELU": L * ms(fwd_bwd(lambda: F.gelu(h, approximate="tanh"))),
        "LayerNorm": (2 * L + 1) * ms(fwd_bwd(lambda: block.ln_1(x))),
        "head + loss": ms(fwd_bwd(lambda: F.cross_entropy((x @ wte.T).view(-1, V), ids.view(-1)))),
        "embedding": ms(fwd_bwd(lambda: model.transformer.wte(ids))),
        "AdamW": ms(adamw),
    }
    rng = np.random.default_rng(0)
    xb = rng.integers(0, V, (B, T))
    contender = TorchContender(cfg, xb, xb, threads)
    step_ms = ms(contender.step)
    parts["other"] = max(step_ms - sum(parts.values()), 0.0)
    return {"parts_ms": parts, "step_ms": step_ms}
