"""The document's five applications (section 5), and a chat model (sections 1 and 5, 智能对话), each
trained, evaluated and run the same way:

    from npgpt.apps import translation
    translation.train()                                # -> runs/apps/translation/ckpt.npz
    translation.evaluate()                             # the test split's metric beside the baselines
    translation.run("three thousand and five")         # '三千零五'

or ``python -m npgpt app translation train|eval|run "three thousand and five"``.

    generation     the Tiny Shakespeare GPT continues a prompt; perplexity, distinct-n
    translation    English numbers and dates -> Chinese, the document's encoder-decoder; BLEU (zh)
    summarization  a report -> one aggregating sentence, GPT + "TL;DR:"; ROUGE
    qa             a report and a question -> the answer, GPT + "Q: ... A:"; exact match, token F1
    sentiment      an English or Chinese review -> positive/negative, GPT + classifier head; accuracy
    chat           a shop's list and a conversation -> the assistant's reply, GPT pre-trained on
                   plain text then fine-tuned with a chat template (loss on the assistant's turns);
                   exact match against the model before fine-tuning and a retrieval baseline

Each task's data comes from a seeded generator here, with its data card in the module docstring
(:mod:`~npgpt.apps.numbers_zh`, :mod:`~npgpt.apps.passages`, :mod:`~npgpt.apps.reviews`, :mod:`~npgpt.apps.dialogues`).
"""
import importlib

from ..checks import UsageError

APPS = ("generation", "translation", "summarization", "qa", "sentiment", "chat")
ALIASES = {"generate": "generation", "translate": "translation", "summarize": "summarization",
           "summarise": "summarization", "question-answering": "qa", "classify": "sentiment", "dialogue": "chat"}


def resolve(name):
    """The app module for ``name`` (an app or one of its aliases); a ValueError naming the choices."""
    key = ALIASES.get(name, name)
    if key not in APPS:
        raise UsageError(f"unknown app {name!r}; choose one of {', '.join(APPS)} "
                         f"(or {', '.join(sorted(ALIASES))})")
    return importlib.import_module(f"{__name__}.{key}")
