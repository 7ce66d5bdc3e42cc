"""Hugging Face GPT-2 folders, in and out: ``config.json`` + ``model.safetensors`` <-> :class:`npgpt.GPT`.

npgpt's parameters already carry GPT-2's names and layouts (``transformer.h.0.attn.c_attn.weight``
is (C, 3C), applied as ``x @ W + b``, as GPT-2's Conv1D stores it), so reading a checkpoint is
renaming at most, never transposing. What differs between the files found in the wild:

- the names: ``transformers``' ``save_pretrained`` writes ``transformer.wte.weight``; the original
  hub files say ``wte.weight``. Both load.
- buffers that are not parameters: older files carry each block's causal mask, ``h.0.attn.bias``
  (1, 1, n_positions, n_positions), and ``h.0.attn.masked_bias``. They are dropped (npgpt builds
  its mask); mind ``h.0.attn.c_attn.bias``, a real parameter, which stays.
- the output layer: GPT-2 ties it to the token embedding, and a file may still hold a copy,
  ``lm_head.weight``, which must then equal ``wte``.
- the dtype: float32, or float16/bfloat16 (converted to the model's dtype, said as a warning).

``config.json`` maps onto :class:`~npgpt.GPTConfig`: ``n_positions`` -> block_size, ``n_embd``,
``n_layer``, ``n_head``, ``vocab_size``, ``layer_norm_epsilon``, ``tie_word_embeddings`` ->
tie_weights, ``n_inner`` -> mlp_widths (when it is not 4 n_embd), and the dropouts. GPT-2's
activation, ``gelu_new``, is npgpt's tanh GELU; a config asking for anything npgpt does not compute
(another activation, another architecture, cross-attention, attention scaled otherwise) is refused
rather than run wrong.

Nothing here downloads anything: a user brings the folder (the README says where to get one).
"""
import ctypes
import errno
import glob
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol, Self, TypeVar

import numpy as np
from numpy.typing import DTypeLike

from ..atomic import atomic_write_text, current_umask
from ..checks import UsageError
from ..locks import hold_lock
from ..models.config import GPTConfig
from ..runtime.logs import shown
from ..text.bpe import BPETokenizer
from .npz import MAX_MESSAGE, not_a_file, one_line
from .safetensors import SafetensorsFile, write_safetensors

log = logging.getLogger(__name__)

CONFIG, WEIGHTS = "config.json", "model.safetensors"
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")       # the same formula, 0.5 x (1 + tanh(...))
BUFFERS = re.compile(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$")     # causal masks, not parameters
FLOATS = {"F32", "F64", "F16", "BF16"}
# GPT-2 attention options npgpt computes only at their defaults: key -> the default.
ATTENTION_DEFAULTS = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                      "add_cross_attention": False}
MAX_CONFIG_BYTES = 1 << 20
# A GPT-2 block's own parameters: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj, each a
# weight and a bias. n_layer is checked against it before the config's shapes are listed, so that
# listing them costs no more than the header the file already holds (a million tiny tensors listed
# once, not twelve million names).
TENSORS_PER_BLOCK = 12
OTHER_WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors.index.json", "tf_model.h5", "flax_model.msgpack")


class GPT2Model(Protocol):
    """What a GPT-2 folder is read into and written from: an :class:`npgpt.GPT`, named by what is
    asked of it, not by its class: :mod:`npgpt.models.gpt` imports this module (its
    ``from_pretrained`` and ``save_pretrained`` delegate here), so this one cannot import it back
    (a cycle). ``cls(config, dtype=..., init=False)`` builds one without drawing weights."""

    def __init__(self, config: GPTConfig, *, dtype: DTypeLike = ..., init: bool = ...) -> None: ...
    @property
    def config(self) -> GPTConfig: ...
    @property
    def params(self) -> dict[str, np.ndarray]: ...
    @property
    def dtype(self) -> np.dtype: ...
    @staticmethod
    def param_shapes(config: GPTConfig, /) -> Mapping[str, tuple[int, ...]]: ...
    def eval(self) -> Self: ...


M = TypeVar("M", bound=GPT2Model)


# ----------------------------------------------------------------------------- config.json
def config_from_hf(hf: object, where: str | os.PathLike[str]) -> GPTConfig:
    """The :class:`~npgpt.GPTConfig` a GPT-2 ``config.json`` (a dict, read from ``where``) describes."""
    def refuse(problem: str) -> NoReturn:       # values quoted from the file: one line, capped
        raise UsageError(f"{where}: {one_line(problem)}")

    if not isinstance(hf, dict):
        refuse(f"expected a JSON object, got a JSON {type(hf).__name__}")
    model_type, architectures = hf.get("model_type", "gpt2"), hf.get("architectures") or ["GPT2LMHeadModel"]
    if model_type != "gpt2" or not isinstance(architectures, list) or not set(architectures) <= set(ARCHITECTURES):
        refuse(f"the architecture is {architectures!r} (model_type {model_type!r}); npgpt reads GPT-2 "
               f"checkpoints ({' or '.join(ARCHITECTURES)}, model_type 'gpt2') only")
    if "n_positions" not in hf and "n_ctx" in hf:                 # the oldest GPT-2 configs
        hf = {**hf, "n_positions": hf["n_ctx"]}
    sizes = {}
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        value = hf.get(key)
        if value is None:
            refuse(f"it has no {key!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            refuse(f"{key!r} is {value!r}, expected a positive integer")
        sizes[key] = value
    activation = hf.get("activation_function", "gelu_new")
    if activation not in TANH_GELUS:
        refuse(f"activation_function is {activation!r}; npgpt's GELU is the tanh approximation GPT-2 uses "
               f"({' or '.join(map(repr, TANH_GELUS))}), so it would compute another model")
    for key, default in ATTENTION_DEFAULTS.items():
        if hf.get(key, default) != default:
            refuse(f"{key} is {hf[key]!r}; npgpt's GPT-2 attention computes only {key}={default!r}")
    n_inner = hf.get("n_inner")
    if n_inner is not None and (isinstance(n_inner, bool) or not isinstance(n_inner, int) or n_inner < 1):
        refuse(f"'n_inner' is {n_inner!r}, expected null or a positive integer")
    tie = hf.get("tie_word_embeddings", True)
    if not isinstance(tie, bool):
        refuse(f"'tie_word_embeddings' is {tie!r}, expected true or false")
    dropouts = {key: hf.get(key, 0.1) for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    try:
        # Any: GPTConfig's annotation says ``tuple``, though None (its default) is a valid mlp_widths.
        mlp_widths: Any = None if n_inner in (None, 4 * sizes["n_embd"]) else (n_inner,) * sizes["n_layer"]
        return GPTConfig(vocab_size=sizes["vocab_size"], block_size=sizes["n_positions"],
                         n_layer=sizes["n_layer"], n_head=sizes["n_head"], n_embd=sizes["n_embd"],
                         dropout=max(dropouts.values()), tie_weights=tie,
                         layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5), mlp_widths=mlp_widths)
    except (TypeError, ValueError) as e:
        refuse(str(e))


def config_to_hf(config: GPTConfig, eos_token_id: int | None = None) -> dict[str, Any]:
    """The GPT-2 ``config.json`` (a dict) of a GPTConfig that GPT-2 can express (else a ValueError)."""
    c = config
    problems = [problem for problem, present in (
        ("sinusoidal positions (GPT-2 learns its position table)", c.pos_encoding != "learned"),
        ("no biases (GPT-2 has them in every layer)", not c.bias),
        ("pruned heads (GPT-2's blocks have n_head each)", c.head_counts is not None),
        ("factorised weights (GPT-2 stores full matrices)", c.factorized is not None),
        ("MLPs of different widths", c.mlp_widths is not None and len(set(c.mlp_widths)) > 1),
    ) if present]
    if problems:
        raise UsageError(f"a GPT-2 checkpoint cannot hold this model: it has {'; '.join(problems)}")
    width = 4 * c.n_embd if c.mlp_widths is None else c.mlp_widths[0]
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.block_size, "n_embd": c.n_embd,
        "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": None if width == 4 * c.n_embd else width,
        "activation_function": "gelu_new", "layer_norm_epsilon": c.layer_norm_epsilon,
        "tie_word_embeddings": c.tie_weights,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
        "scale_attn_weights": True, "bos_token_id": eos_token_id, "eos_token_id": eos_token_id,
    }


# ----------------------------------------------------------------------------- reading
def npgpt_name(name: str) -> str | None:
    """A file's tensor name -> npgpt's parameter name (``wte.weight`` -> ``transformer.wte.weight``),
    or None for a buffer that is not a parameter (``h.0.attn.bias``, ``h.0.attn.masked_bias``)."""
    if BUFFERS.search(name):
        return None
    if name.startswith("transformer.") or name == "lm_head.weight":
        return name
    return "transformer." + name


def from_pretrained(cls: type[M], path: str | os.PathLike[str], dtype: DTypeLike = np.float32,
                    verbose: bool = True) -> M:
    """A ``cls`` (:class:`npgpt.GPT`; :class:`GPT2Model` says what is asked of it) holding the
    GPT-2 checkpoint in the folder ``path``, in eval mode. Everything is checked before a weight is
    read: the files, the config, its sizes against the weights file (before the model is allocated:
    a config.json of a million layers beside a small file is refused at once), every tensor's name,
    shape and dtype; then the weights are read one tensor at a time (the memory needed is the
    model's, plus one tensor)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder; a Hugging Face GPT-2 checkpoint is a folder holding "
                         f"{CONFIG} and {WEIGHTS}")
    config_path, weights_path = folder / CONFIG, folder / WEIGHTS
    for path in (config_path, weights_path):
        kind = not_a_file(path)
        if kind not in (None, "missing"):
            raise UsageError(f"{path}: {kind}, not a file")
    if not config_path.is_file():
        raise UsageError(f"{config_path}: missing; a Hugging Face GPT-2 checkpoint is a folder holding "
                         f"{CONFIG} and {WEIGHTS} (npgpt never downloads them: see the README)")
    if not weights_path.is_file():
        others = [name for name in OTHER_WEIGHT_FILES if (folder / name).exists()]
        hint = (f"; the folder has {', '.join(others)}, which npgpt does not read (a .bin is a pickle, "
                f"which can run code): save the model again with transformers' save_pretrained, whose "
                f"default is one {WEIGHTS}") if others else ""
        raise UsageError(f"{weights_path}: missing{hint}")
    hf = _read_config(config_path)
    with SafetensorsFile(weights_path) as st:
        _check_layers(hf, st, config_path, weights_path)      # before config_from_hf lists widths per layer
        config = config_from_hf(hf, config_path)
        shapes = _shapes_the_file_can_hold(st, cls, config, config_path, weights_path)
        plan, head_copy = _match(st, shapes, config, weights_path)
        model = cls(config, dtype=dtype, init=False)        # only now: the file holds every weight
        for name, key in plan.items():
            _copy_into(model.params[name], st.read(key), weights_path, key)
        if head_copy is not None:
            head = st.read(head_copy).astype(model.dtype)
            if not np.array_equal(head, model.params["transformer.wte.weight"]):
                raise UsageError(f"{weights_path}: lm_head.weight differs from the token embedding wte, but "
                                 f"{config_path.name} ties them (tie_word_embeddings true)")
        narrow = sorted({st.entry(key).dtype for key in plan.values()} & {"F16", "BF16"})
    if narrow:
        with shown(verbose) as level:
            log.log(logging.WARNING if verbose else level,
                    f"{weights_path}: {' and '.join(narrow)} weights converted to {model.dtype.name}")
    return model.eval()


def _read_config(path: Path) -> Any:
    """The JSON of ``config.json``, its size checked before it is read (GPT-2's is 700 bytes)."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise UsageError(f"{path}: {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a config.json may have")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise UsageError(f"{path}: not valid JSON (it nests too deeply to read)") from None
    except ValueError as e:         # not UTF-8, not JSON, or an integer of more than 4300 digits
        raise UsageError(f"{path}: not valid JSON ({e})") from None


def _check_layers(hf: Any, st: SafetensorsFile, config_path: Path, weights_path: Path) -> None:
    """config.json's n_layer against the weights file, before anything is built per layer: every
    block has tensors of its own. (A value that is no count is config_from_hf's to refuse.)"""
    n_layer = hf.get("n_layer") if isinstance(hf, dict) else None
    if isinstance(n_layer, int) and not isinstance(n_layer, bool) and n_layer * TENSORS_PER_BLOCK > len(st.names):
        raise UsageError(f"{config_path}: n_layer={n_layer} needs {TENSORS_PER_BLOCK} tensors of its own for every "
                         f"block, but {weights_path.name} holds {len(st.names):,} tensors")


def _shapes_the_file_can_hold(st: SafetensorsFile, cls: type[GPT2Model], config: GPTConfig, config_path: Path,
                              weights_path: Path) -> Mapping[str, tuple[int, ...]]:
    """The parameter shapes ``config`` implies, once ``config.json``'s sizes are seen to fit the
    weights file (:func:`_check_layers` has bounded n_layer), before anything is allocated for them:
    every weight takes at least 2 bytes (float16) of the file's tensor data."""
    shapes = cls.param_shapes(config)
    weights = sum(math.prod(shape) for shape in shapes.values())
    if 2 * weights > st.header.data_bytes:
        sizes = ", ".join(f"{hf}={getattr(config, ours)}" for hf, ours in (
            ("vocab_size", "vocab_size"), ("n_positions", "block_size"), ("n_embd", "n_embd"), ("n_layer", "n_layer")))
        raise UsageError(f"{config_path}: {sizes} imply {weights:,} weights, {2 * weights:,} bytes even as float16, "
                         f"but {weights_path.name} holds {st.header.data_bytes:,} bytes of tensors")
    return shapes


def _match(st: SafetensorsFile, shapes: Mapping[str, tuple[int, ...]], config: GPTConfig,
           where: Path) -> tuple[dict[str, str], str | None]:
    """(npgpt name -> file key for every parameter, the key of a tied head's copy or None), after
    checking names, shapes and dtypes against ``shapes`` (the config's parameters); a ValueError
    lists everything wrong."""
    plan: dict[str, str] = {}
    head_copy: str | None = None
    unexpected: list[str] = []
    twice: list[str] = []
    for key in st.names:
        name = npgpt_name(key)
        if name is None:
            continue
        if name == "lm_head.weight" and config.tie_weights:
            head_copy = key
        elif name not in shapes:
            unexpected.append(key)
        elif name in plan:
            twice.append(f"{plan[name]} and {key}")
        else:
            plan[name] = key
    missing = [name for name in shapes if name not in plan]
    found = {name: st.entry(key).shape for name, key in plan.items()}
    if head_copy is not None:
        found["lm_head.weight"] = st.entry(head_copy).shape
    expected = {**shapes, "lm_head.weight": (config.vocab_size, config.n_embd)}
    misshaped = [f"{name}: {shape} in the file, {tuple(expected[name])} for the config" for name, shape in found.items()
                 if tuple(shape) != tuple(expected[name])]
    not_float = [f"{key} ({st.entry(key).dtype})" for key in [*plan.values(), head_copy]
                 if key is not None and st.entry(key).dtype not in FLOATS]
    problems = [f"{label}: {', '.join(items[:8])}" + (f" and {len(items) - 8} more" if len(items) > 8 else "")
                for label, items in (("missing weights", missing), ("unexpected weights", unexpected),
                                     ("weights that appear twice (with and without 'transformer.')", twice),
                                     ("mis-shaped weights", misshaped), ("weights that are not floats", not_float))
                if items]
    if problems:                        # one line, however many names and shapes the file holds
        raise UsageError(one_line(f"{where} does not fit its {CONFIG}: " + "; ".join(problems),
                                  len(str(where)) + MAX_MESSAGE))
    return plan, head_copy


def _copy_into(param: np.ndarray, value: np.ndarray, where: Path, key: str) -> None:
    """One tensor into its parameter, converted to the parameter's dtype; NaN or inf are refused."""
    value = value.astype(param.dtype, copy=False)
    if not np.isfinite(value).all():
        raise UsageError(f"{where}: {key} holds NaN or infinite values")
    param[...] = value


# ----------------------------------------------------------------------------- writing
def save_pretrained(model: GPT2Model, path: str | os.PathLike[str], tokenizer: BPETokenizer | None = None
                    ) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder: ``model.safetensors`` (``transformer.`` names,
    the model's dtype, no ``lm_head.weight`` when tied, as ``transformers`` writes it) and
    ``config.json``; with ``tokenizer`` (a :class:`npgpt.BPETokenizer`) also its ``vocab.json`` and
    ``merges.txt``. ``transformers.GPT2LMHeadModel.from_pretrained(path)`` opens it. Returns the folder.

    The folder lands whole or not at all: everything is written into a sibling folder
    (``.<name>.saving-*``), which then takes the folder's place in one step (:func:`_swap_into_place`);
    other files of an existing folder (a README, a generation_config.json) are carried over. A
    failure or an interruption at any moment leaves the earlier folder as it was; what a killed save
    left beside it is removed by the next save. Refused before anything is written: a model holding
    NaN or infinite values (naming the parameter), a parent that is a file or not writable, a file
    system without room for the new folder beside the old one."""
    expected = type(model).param_shapes(model.config)
    if set(model.params) != set(expected):
        raise UsageError(f"{type(model).__name__} does not hold every float weight of a GPT (missing "
                         f"{sorted(set(expected) - set(model.params))[:3]}...); save a float npgpt.GPT")
    _check_finite(model.params)
    eos = None
    if tokenizer is not None:
        if tokenizer.vocab_size > model.config.vocab_size:
            raise UsageError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                             f"vocab_size={model.config.vocab_size}: they do not belong together")
        eos = tokenizer.special_tokens.get("<|endoftext|>")
    elif model.config.vocab_size == 50257:
        eos = 50256                                            # GPT-2's <|endoftext|>
    hf = config_to_hf(model.config, eos)
    folder = Path(path).expanduser().absolute()
    if folder.is_symlink():
        folder = folder.resolve()       # the folder it names is replaced, not the link
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a folder")
    _check_room(folder, _saved_bytes(model, tokenizer))
    written = {WEIGHTS, CONFIG, *(TOKENIZER_FILES if tokenizer is not None else ())}
    with hold_lock(folder.parent / f".{folder.name}.lock", f"the folder {folder}"):
        _remove_killed_saves(folder)                  # under the lock: no live save owns them
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}{SAVING}"))
        try:
            os.chmod(staging, 0o777 & ~current_umask())     # mkdtemp's folder is the owner's only
            write_safetensors(staging / WEIGHTS, model.params, metadata={"format": "pt"})   # a tied model has no lm_head
            if tokenizer is not None:
                tokenizer.save_hf(staging)
            atomic_write_text(staging / CONFIG, json.dumps({**hf, "dtype": model.dtype.name}, indent=2) + "\n")
            _carry_over(folder, staging, written)
            _fsync(staging)
            _swap_into_place(staging, folder)
        except OSError as e:        # the disk filled meanwhile, a folder vanished: the earlier one stays
            raise UsageError(f"{folder}: saving failed ({e.strerror or e}); the folder is as it was") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)    # gone already after a swap into a new place
    return folder


SAVING = ".saving-"         # .<name>.saving-*: a save being written (a killed save's, once its lock is free)
REPLACED = ".replaced-"     # .<name>.replaced-*: the earlier folder, for the instant between two renames
TOKENIZER_FILES = ("vocab.json", "merges.txt")
# Bytes a save writes besides the weights: config.json (1 kB), the safetensors header (100 bytes a
# tensor), the tokenizer's files (GPT-2's: 1.5 MB, about 30 bytes an id).
SAVE_MARGIN = 1 << 20
RENAME_EXCHANGE, AT_FDCWD = 2, -100         # Linux renameat2(2)


def _check_finite(params: Mapping[str, np.ndarray]) -> None:
    """Refuse a model whose weights hold NaN or inf: load_pretrained would refuse the folder."""
    bad = [name for name, p in params.items() if not np.isfinite(p).all()]
    if bad:
        more = f" (and {len(bad) - 1} more parameters)" if len(bad) > 1 else ""
        raise UsageError(f"parameter {bad[0]} holds NaN or infinite values{more}: a model that diverged is not "
                         f"saved (a GPT-2 folder with them would not load)")


def _saved_bytes(model: GPT2Model, tokenizer: BPETokenizer | None) -> int:
    vocabulary = 30 * tokenizer.vocab_size if tokenizer is not None else 0
    return sum(p.nbytes for p in model.params.values()) + 100 * len(model.params) + vocabulary + SAVE_MARGIN


def _check_room(folder: Path, needed: int) -> None:
    """The folder's parent, made if missing: a folder, writable, with room for ``needed`` bytes
    (the new folder is written beside the old one, which stays until the new one is whole)."""
    parent = folder.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{folder}: its parent {parent} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{folder}: cannot create its parent folder {parent} ({e.strerror or e})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{folder}: its parent folder {parent} is not writable")
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise UsageError(f"{folder}: saving needs about {needed / 1e6:.1f} MB, but {parent} has {free / 1e6:.1f} MB free")


def _remove_killed_saves(folder: Path) -> None:
    """What saves killed before they finished left beside ``folder``: their sibling folders. One
    killed between the two renames of :func:`_swap_into_place` left the earlier folder under its
    ``.replaced-`` name and none at ``folder``: that one is put back."""
    for sibling in sorted(folder.parent.glob(f".{glob.escape(folder.name)}[.]*")):
        if sibling.name.startswith(f".{folder.name}{REPLACED}") and not os.path.lexists(folder):
            os.rename(sibling, folder)
            log.warning(f"{folder}: put back, as a save killed while replacing it had left it")
        elif sibling.name.startswith((f".{folder.name}{SAVING}", f".{folder.name}{REPLACED}")):
            shutil.rmtree(sibling, ignore_errors=True)
            log.info(f"{sibling}: removed, left by a save that was killed")


def _carry_over(folder: Path, staging: Path, written: set[str]) -> None:
    """Every entry of the existing ``folder`` that this save does not write, into ``staging``: as
    hard links (no copy, no room needed), or copies where links are not allowed. Temporary files
    of older, killed writes (``.name.*.tmp``) stay behind."""
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if entry.name in written or (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        target = staging / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, target)


def _link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _swap_into_place(staging: Path, folder: Path) -> None:
    """``staging`` becomes ``folder`` in one step: a rename when there is no folder yet, Linux's
    atomic exchange of the two names when there is (the earlier folder is then at ``staging``, and
    the caller removes it). Without the exchange (another system, a file system lacking it) the
    earlier folder is renamed aside first: a kill between the two renames leaves it under its
    ``.replaced-`` name, which the next save puts back (:func:`_remove_killed_saves`)."""
    if not os.path.lexists(folder):
        os.rename(staging, folder)
    elif not _exchange(staging, folder):
        aside = folder.parent / staging.name.replace(SAVING, REPLACED, 1)
        os.rename(folder, aside)
        try:
            os.rename(staging, folder)
        except BaseException:
            os.rename(aside, folder)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync(folder.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically (renameat2 with RENAME_EXCHANGE); False where the
    system or the file system cannot."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform.startswith("linux") else None
    if rename is None:
        return False
    if rename(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync(folder: Path) -> None:
    """Flush a folder's entries (the names of what was written or renamed in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:             # some file systems cannot fsync a folder; the rename still stands
        pass
    finally:
        os.close(fd)
