"""A Hugging Face GPT-2 folder, model and tokenizer at once: ``model, tok = npgpt.load_pretrained(path)``.

The folder is what the ``gpt2`` repository on the Hugging Face hub holds (``config.json``,
``model.safetensors``, ``vocab.json``, ``merges.txt``), or what ``transformers``' or npgpt's
``save_pretrained`` writes. npgpt never downloads it: the README says how to get one.

The model comes from :meth:`npgpt.GPT.from_pretrained` (:mod:`npgpt.io.gpt2_files`), the
tokenizer from :meth:`npgpt.BPETokenizer.load_hf` with GPT-2's pre-tokenization pattern.
"""
import logging
import os
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from ..checks import UsageError
from ..models.gpt import GPT
from ..runtime.logs import shown
from ..text import BPETokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("vocab.json", "merges.txt")


def load_pretrained(path: str | os.PathLike[str], dtype: DTypeLike = np.float32, verbose: bool = True
                    ) -> tuple[GPT, BPETokenizer | None]:
    """``(model, tokenizer)`` of the GPT-2 folder ``path``: an :class:`npgpt.GPT` in eval mode and
    an :class:`npgpt.BPETokenizer`, or None for the tokenizer when the folder has neither
    ``vocab.json`` nor ``merges.txt``. One of the two without the other, or a tokenizer with more
    ids than the model has embeddings, is a ValueError naming the file."""
    model = GPT.from_pretrained(path, dtype=dtype, verbose=verbose)
    return model, load_tokenizer(path, model.config.vocab_size, verbose)


def load_tokenizer(path: str | os.PathLike[str], vocab_size: int | None = None, verbose: bool = True
                   ) -> BPETokenizer | None:
    """The GPT-2 tokenizer of the folder ``path`` (``vocab.json`` + ``merges.txt``), or None when it
    has neither file. ``vocab_size``: the model's, which the tokenizer's ids must fit."""
    folder = Path(path).expanduser()
    vocab, merges = (folder / name for name in TOKENIZER_FILES)
    # exists(), not is_file(): a FIFO or a folder in their place is the reader's to name, not "missing"
    if not vocab.exists() and not merges.exists():
        if (folder / "tokenizer.json").is_file():
            with shown(verbose) as level:
                log.log(logging.WARNING if verbose else level,
                        f"{folder}: tokenizer.json is not read (npgpt reads GPT-2's vocab.json + merges.txt); "
                        f"no tokenizer")
        return None
    for missing, present in ((vocab, merges), (merges, vocab)):
        if not missing.exists():
            raise UsageError(f"{missing}: missing; GPT-2's tokenizer needs {missing.name} beside {present.name}")
    tokenizer = BPETokenizer.load_hf(vocab, merges, pattern="gpt2")
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        raise UsageError(f"{vocab}: the tokenizer has {tokenizer.vocab_size} ids but the model has "
                         f"vocab_size={vocab_size}: they do not belong together")
    return tokenizer
