"""npgpt: a GPT you can read. NumPy forward and hand-written backward passes, checked by finite
differences."""
from .backend import get_backend, set_backend, use_backend
from .bpe import BPETokenizer
from .config import PRESETS, GPTConfig
from .data import CorpusUnavailableError, Dataset, load_text, resolve_corpus
from .generate import KVCache, beam_search, generate, next_token_distribution
from .gradcheck import GradcheckReport, check_model, check_op, gradcheck, jitter
from .model import GPT
from .optim import SGD, AdamW, clip_grad_norm, lr_schedule
from .rnn import GRU, LSTM, RNN, RecurrentConfig, RecurrentLM, RecurrentState
from .tokenizer import CharTokenizer
from .trainer import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = [
           "GPT",
           "PRESETS",
           "SGD",
           "AdamW",
           "CharTokenizer",
           "CorpusUnavailableError",
           "Dataset",
           "GPTConfig",
           "GradcheckReport",
           "KVCache",
           "TrainConfig",
           "Trainer",
           "beam_search",
           "check_model",
           "check_op",
           "clip_grad_norm",
           "generate",
           "gradcheck",
           "jitter",
           "load_text",
           "lr_schedule",
           "next_token_distribution",
           "resolve_corpus",
]
