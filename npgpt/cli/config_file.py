"""``npgpt train --config run.toml``: a run's settings in a file, read with :mod:`tomllib`.

The file is flat, one ``key = value`` line per setting, and its keys are the flags of ``npgpt train``
without the dashes (``n_embd = 128`` for ``--n-embd 128``); ``npgpt train --print-config`` writes one.
Each value is checked as its flag is, against the config field it sets; a bad file is one line
naming the file, the key and what was expected.
"""
import difflib
import json
import tomllib
from dataclasses import Field
from pathlib import Path

from ..checks import MissingFile, UsageError
from ..models.config import check_option
from ..text.bpe_files import read_file

MAX_BYTES = 1 << 20     # a run's settings take a few hundred bytes; a bigger file is not one


def read(path: str, fields: dict[str, Field]) -> dict[str, object]:
    """The settings of the TOML file ``path``, each checked against its field in ``fields`` (name ->
    dataclass field made with :func:`npgpt.models.config.option`)."""
    table = _parse(Path(path))
    settings = {}
    for key, value in table.items():
        settings[key] = check(path, key, value, fields)
    return settings


def _parse(path: Path) -> dict:
    if path.is_dir():
        raise UsageError(f"--config {path} is a folder, expected a TOML file")
    try:       # a regular file, checked before it is read: a FIFO would wait for a writer, /dev/zero never ends
        text = read_file(path, "a TOML file", MAX_BYTES).decode("utf-8")
    except MissingFile:
        raise MissingFile(f"--config {path}: no such file") from None
    except UsageError as e:
        raise UsageError(f"--config {e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--config {path} is not UTF-8 text ({e.reason} at byte {e.start}), expected TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path} is not valid TOML: {e}") from None


def check(path: str, key: str, value: object, fields: dict[str, Field]) -> object:
    """``value`` of ``key``, checked; a UsageError naming the file, the key and what was expected."""
    if key not in fields:
        close = difflib.get_close_matches(key.replace("-", "_"), fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"{path}: unknown key {key!r}{hint}; expected one of the keys that "
                         f"npgpt train --print-config writes: the flags of npgpt train without the dashes")
    if isinstance(value, dict):
        raise UsageError(f"{path}: [{key}] is a table, expected a value: the file is flat, one "
                         f"'{key} = ...' line per setting")
    f = fields[key]
    if "parse" in f.metadata:
        try:
            return f.metadata["parse"](value)
        except ValueError as e:
            raise UsageError(f"{path}: {key}: {e}") from None
    return check_option(f"{path}: {key}", value, f)


def to_toml(sections: list[tuple[str, dict[str, object]]]) -> str:
    """A flat TOML file of ``sections``, each (comment, {key: value}); None values are left out (TOML
    has no null: a missing key means the default)."""
    lines = ["# The settings of an `npgpt train` run: read it back with `npgpt train --config FILE`.",
             "# Each key is a flag without its dashes (n_embd = 128 is --n-embd 128); flags beside",
             "# --config win over the file."]
    for comment, values in sections:
        lines += ["", f"# {comment}"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)   # a TOML basic string uses JSON's escapes
