"""Text encoding (document section 3, step 1): corpora, characters, byte-level BPE, word vectors."""
from .bpe import BPETokenizer
from .chars import CharTokenizer
from .corpus import Corpus, CorpusUnavailableError, load_corpus, load_text, resolve_corpus
from .wordvec import WordVectors, train_glove, train_word2vec

__all__ = ["BPETokenizer", "CharTokenizer", "Corpus", "CorpusUnavailableError", "WordVectors", "load_corpus", "load_text",
           "resolve_corpus", "train_glove", "train_word2vec"]
