"""npgpt: a GPT you can read. NumPy forward and hand-written backward passes, checked by finite
differences, with numba twins of the hot loops one switch away (:func:`set_backend`).

The package follows the document's table of contents:

    npgpt/ops/        4.2, 4.3   the formulas: forward/backward pairs in plain NumPy
    npgpt/kernels/    -          their numba twins (npgpt/backend.py picks which run)
    npgpt/text/       3, step 1  corpora, characters, byte-level BPE, word vectors
    npgpt/models/     2; 3, step 2; 4 code   GPT, RNN/LSTM/GRU, encoder-decoder, the document's model
    npgpt/decoding/   3, step 3  greedy, temperature, top-k, top-p, beam search
    npgpt/training/   4.3        batches, optimizers, the training loop, checkpoints
    npgpt/evaluation/ 8          perplexity, BLEU, ROUGE
    npgpt/tools/      -          gradient checks, parameter counts, benchmarks, analysis, plots
"""
from . import _ranks  # first: under mpiexec, sets each rank's thread count before NumPy and numba start
from .backend import get_backend, set_backend, use_backend
from .config import PRESETS, GPTConfig
from .decoding import beam_search, generate, next_token_distribution
from .evaluation import bleu, bootstrap_aggregate, evaluate_text, perplexity, rouge, sentence_bleu
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
from .models.pretrained import load_pretrained
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
from .tools.gradcheck import GradcheckReport, check_model, check_op, gradcheck, jitter
from .training import SGD, AdamW, Dataset, TrainConfig, Trainer, clip_grad_norm, lr_schedule

__version__ = "0.1.0"

# Subpackages that `import npgpt` does not load (they are heavier, or rarely needed), imported on
# first use, so `npgpt.apps.translation` works after a plain `import npgpt`.
_LAZY_SUBPACKAGES = ("allocation", "apps", "kernels", "ops", "tools")


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
