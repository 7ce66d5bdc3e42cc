"""npgpt: a GPT you can read. NumPy forward and hand-written backward passes, checked by finite
differences, with numba twins of the hot loops one switch away (:func:`set_backend`)."""
from .backend import get_backend, set_backend, use_backend
from .bpe import BPETokenizer
from .config import PRESETS, GPTConfig
from .data import CorpusUnavailableError, Dataset, load_text, resolve_corpus
from .document_model import DocumentModel
from .generate import KVCache, beam_search, generate, next_token_distribution
from .gradcheck import GradcheckReport, check_model, check_op, gradcheck, jitter
from .model import GPT
from .optim import SGD, AdamW, clip_grad_norm, lr_schedule
from .rnn import GRU, LSTM, RNN, RecurrentConfig, RecurrentLM, RecurrentState
from .seq2seq import MultiheadAttention, Transformer
from .tokenizer import CharTokenizer
from .trainer import TrainConfig, Trainer
from .wordvec import WordVectors, train_glove, train_word2vec

__version__ = "0.1.0"

__all__ = [
    # the model and its checks
    "GPT", "GPTConfig", "PRESETS", "GradcheckReport", "check_model", "check_op", "gradcheck", "jitter",
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
]
