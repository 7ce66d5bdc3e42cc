"""The models (document 2; 3, step 2; 4 code): the GPT and its quantized twin, the recurrent networks,
the encoder-decoder and the document's own model, on one shared base (:mod:`.base`) and one cache
protocol (:mod:`.cache`)."""
from .base import Model, TrainingMode
from .cache import DecodingCache, KVCache, RecurrentState
from .config import PRESETS, RECURRENT_PRESETS, GPTConfig, RecurrentConfig
from .document import DocumentModel
from .gpt import GPT
from .quantized import QuantizedGPT
from .recurrent import GRU, LSTM, RNN, RecurrentLM
from .seq2seq import MultiheadAttention, Transformer

__all__ = ["DecodingCache", "DocumentModel", "GPT", "GPTConfig", "PRESETS", "GRU", "KVCache", "LSTM", "Model",
           "QuantizedGPT", "RECURRENT_PRESETS", "RNN", "RecurrentConfig", "RecurrentLM", "RecurrentState",
           "MultiheadAttention", "TrainingMode", "Transformer"]
