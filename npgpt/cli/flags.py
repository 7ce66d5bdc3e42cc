"""The one convention of ``python -m npgpt``'s commands, and the flag helpers they share.

Every command is a module of this package with ``register(subparsers)`` and ``run(args) -> int``.
``register`` makes its parser with :func:`command` and adds each flag with :func:`add` (written by
hand) or :func:`add_field` (from a field of a config dataclass, whose metadata holds the help text,
the type and the allowed values: :func:`npgpt.models.config.option`).

Defaults are applied after parsing, not by argparse: a command's parser leaves a flag that was not
written out of the namespace (``argparse.SUPPRESS``), and :class:`Parser` then sets each missing flag
to its default and records the flags the user wrote in ``args.given``. That is how ``train --resume``
and ``train --config`` tell an explicit ``--lr 0.001`` from the default one.
"""
import argparse
from dataclasses import MISSING, Field

from ..checks import at_least, in_range

DEFAULT_PREFIX = "default of "      # where a flag's default waits in the namespace until Parser applies it


class Parser(argparse.ArgumentParser):
    """``npgpt``'s top-level parser: after parsing, every flag the user did not write gets its default
    (:func:`complete`)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        return complete(namespace), extras


def complete(namespace: argparse.Namespace) -> argparse.Namespace:
    """Set every flag missing from ``namespace`` to its default; ``namespace.given`` is the set of
    the flags' destinations (``"n_embd"`` for ``--n-embd``) that were written on the command line."""
    defaults = {key[len(DEFAULT_PREFIX):]: value for key, value in vars(namespace).items()
                if key.startswith(DEFAULT_PREFIX)}
    if not defaults and hasattr(namespace, "given"):         # completed already
        return namespace
    for key in defaults:
        delattr(namespace, DEFAULT_PREFIX + key)
    namespace.given = frozenset(name for name in defaults if hasattr(namespace, name))
    for name, value in defaults.items():
        if name not in namespace.given:
            setattr(namespace, name, value)
    return namespace


def command(subparsers, name: str, help: str, description: str,
            formatter_class: type = argparse.HelpFormatter) -> argparse.ArgumentParser:
    """The parser of command ``name``, with the flags every command has (``-q``, ``-v``)."""
    parser = subparsers.add_parser(name, help=help, description=description, formatter_class=formatter_class,
                                   argument_default=argparse.SUPPRESS)
    loudness = parser.add_mutually_exclusive_group()
    add(loudness, "-q", "--quiet", action="store_true", default=False,
        help="print only warnings and errors (and the command's result)")
    add(loudness, "-v", "--verbose", action="store_true", default=False,
        help="also print debug lines (what npgpt set up in the process, ...)")
    return parser


def add(container, *names: str, default=None, help: str, **kwargs) -> argparse.Action:
    """``container.add_argument(*names, ...)`` with ``default`` applied after parsing (see the module's
    docstring) and said at the end of the help text (unless it is None: then the help says what
    leaving the flag out means)."""
    if default is not None and not isinstance(default, bool):
        shown = repr(default) if isinstance(default, str) and not default.isprintable() else default
        help = f"{help} (default: {shown})"
    action = container.add_argument(*names, help=help, **kwargs)
    container.set_defaults(**{DEFAULT_PREFIX + action.dest: default})
    return action


def flag(name: str) -> str:
    """The flag of a config field: ``n_embd`` -> ``--n-embd``."""
    return "--" + name.replace("_", "-")


def field_type(f: Field) -> dict:
    """The argparse keywords that parse a value of the config field ``f`` (see
    :func:`npgpt.models.config.option`): its type, bounds or choices."""
    meta, kind = f.metadata, f.type
    if "parse" in meta:                                # a field with its own parser (train's --threads)
        return {"type": argparse_type(meta["parse"])}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if meta.get("choices") is not None:
        return {"choices": meta["choices"], "type": kind}
    if kind is int:
        return {"type": at_least(int(meta["low"]))}
    if kind is float:
        low = -float("inf") if meta["low"] is None else meta["low"]
        high = float("inf") if meta["high"] is None else meta["high"]
        return {"type": in_range(low, high, meta["low_open"], meta["high_open"])}
    return {"type": kind}


def add_field(container, name: str, f: Field, help: str | None = None, default=MISSING) -> argparse.Action:
    """The flag of the config field ``f`` (``--n-embd`` for ``n_embd``): its help text (``help``, else
    the field's), type and allowed values from the field's metadata, and its default (``default``,
    else the field's)."""
    default = f.default if default is MISSING else default
    return add(container, flag(name), default=None if default is MISSING else default,
               help=help or f.metadata["help"], **field_type(f))


def argparse_type(parse):
    """An argparse ``type`` from a checking function that raises ValueError with a readable message."""
    def parse_flag(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse_flag.__name__ = getattr(parse, "__name__", "value")
    return parse_flag


def check_folder(name: str, value: str) -> str:
    """``value`` of the folder flag ``name`` (e.g. "--out-dir"): an empty name is refused rather than
    read as the current folder (``Path("")`` is "."), where a run would write beside the user's files."""
    from ..checks import UsageError
    if not value.strip():
        raise UsageError(f"{name} is empty: name a folder (e.g. {name} runs/baby)")
    return value
