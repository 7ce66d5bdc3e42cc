"""npgpt: a GPT you can read. NumPy forward and hand-written backward passes, checked by finite
differences, with numba twins of the hot loops one switch away (:func:`set_backend`).

The package follows the article's table of contents, one floor per folder: each imports only from
the folders listed before it, and from three modules below them all, ``npgpt/checks.py`` (argument
checks), ``npgpt/atomic.py`` (atomic file writes) and ``npgpt/locks.py`` (one run at a time in a
folder). ``tests/test_layout.py`` checks that, and that
the README's map is this table:

| folder | article | what |
|---|---|---|
| `npgpt/runtime/` | — | what a process runs with: threads and their governor on a shared CPU, the `malloc` setting, MPI ranks |
| `npgpt/ops/` | §4.2, §4.3 | the formulas: one file per op, a `forward -> (out, cache)` / `backward(dout, cache)` pair in plain NumPy, with the formula in its docstring |
| `npgpt/kernels/` | — | numba twins of the hot ops, with the same signatures, tested equal to them, and the backend switch (`npgpt/kernels/backend.py`: the NumPy formulas or their numba twins) |
| `npgpt/text/` | §3, step 1 | corpora, characters, byte-level BPE (encodes exactly as tiktoken does), word2vec and GloVe |
| `npgpt/models/` | §2; §3, step 2; §4 code | the configs and presets, the GPT (Hugging Face GPT-2 names and layouts), RNN/LSTM/GRU and a recurrent LM, an encoder-decoder, the article's model made runnable |
| `npgpt/io/` | — | files: one checked `.npz` reader (every entry's size and shape checked before anything is allocated), training checkpoints, safetensors and Hugging Face GPT-2 folders |
| `npgpt/decoding/` | §3, step 3 | greedy, temperature, top-k, top-p, beam search, generation with a cache |
| `npgpt/training/` | §4.3 | batches, SGD, AdamW, the schedule and clipping, the training loop with exact resume, data parallel over MPI, recurrence against attention measured |
| `npgpt/evaluation/` | §8 | perplexity, BLEU, ROUGE, bootstrap intervals |
| `npgpt/allocation/` | §2, §7 | what a model costs; quantization, pruning, low rank, distillation; the scaling study and the planner |
| `npgpt/apps/` | §1, §5 | the five applications and a chat model, each trained, evaluated and run |
| `npgpt/verify/` | — | gradient checks, parameter counts, and the references the tests hold npgpt to: PyTorch twins, a naive BPE trainer |
| `npgpt/perf/` | — | the benchmark: contenders in their own processes, contention, the anatomy of a step |
| `npgpt/plots/` | — | the figures, and the explorers: controls a reader moves (ipywidgets; a static figure where widgets cannot show) |
| `npgpt/exercises/` | §2–4 | exercise mode: the catalogue and the grader |
| `npgpt/site/` | — | the course as a website: built from the committed notebooks of both editions, served on this machine, read page by page in a headless Chromium |
| `npgpt/cli/` | — | `python -m npgpt`: one command line for all of it |
"""
from .decoding import beam_search, generate, next_token_distribution
from .evaluation import bleu, bootstrap_aggregate, evaluate_text, perplexity, rouge, sentence_bleu
from .io.pretrained import load_pretrained
from .models import (
    GPT,
    GRU,
    LSTM,
    RNN,
    DocumentModel,
    KVCache,
    MultiheadAttention,
    RecurrentConfig,
    RecurrentLM,
    RecurrentState,
    Transformer,
)
from .models.config import PRESETS, GPTConfig
from .kernels.backend import get_backend, set_backend, use_backend
from .text import (
    BPETokenizer,
    CharTokenizer,
    CorpusUnavailableError,
    WordVectors,
    load_text,
    resolve_corpus,
    train_glove,
    train_word2vec,
)
from .training import SGD, AdamW, Dataset, TrainConfig, Trainer, clip_grad_norm, lr_schedule
from .verify.gradcheck import GradcheckReport, check_model, check_op, gradcheck, jitter

__version__ = "0.1.0"

# Subpackages that `import npgpt` does not load (they are heavier, or rarely needed), imported on
# first use, so `npgpt.apps.translation` works after a plain `import npgpt`.
_LAZY_SUBPACKAGES = ("allocation", "apps", "cli", "exercises", "io", "kernels", "ops", "perf", "plots", "runtime",
                     "verify")


def __getattr__(name):
    if name in _LAZY_SUBPACKAGES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'npgpt' has no attribute {name!r}")

__all__ = [
    # the model and its checks; a Hugging Face GPT-2 folder (model and tokenizer)
    "GPT", "GPTConfig", "PRESETS", "load_pretrained", "GradcheckReport", "check_model", "check_op", "gradcheck", "jitter",
    # backends
    "get_backend", "set_backend", "use_backend",
    # text and data
    "BPETokenizer", "CharTokenizer", "CorpusUnavailableError", "Dataset", "load_text", "resolve_corpus",
    "WordVectors", "train_glove", "train_word2vec",
    # training and decoding
    "SGD", "AdamW", "clip_grad_norm", "lr_schedule", "TrainConfig", "Trainer",
    "KVCache", "beam_search", "generate", "next_token_distribution",
    # sequence models of the document
    "RNN", "LSTM", "GRU", "RecurrentConfig", "RecurrentLM", "RecurrentState",
    "MultiheadAttention", "Transformer", "DocumentModel",
    # evaluation (document section 8)
    "perplexity", "evaluate_text", "bleu", "sentence_bleu", "rouge", "bootstrap_aggregate",
]
