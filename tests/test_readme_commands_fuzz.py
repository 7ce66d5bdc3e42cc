"""Every ``python -m npgpt`` command of the README, each of its values swapped for a hostile one
(issue 28, done when: "no command on the README's list leaves a traceback for a user's mistake; a
bug in npgpt still shows its traceback").

The commands are read from README.md's bash blocks, so a command added there is fuzzed here too. In
each command, one value at a time (a flag's value or a positional) is replaced by each of
:data:`HOSTILE`: numbers out of every range, words, the empty string, paths to nothing, to a folder,
to /dev/zero, to a FIFO, to random bytes and to an npz file of the wrong kind. The command runs
in-process (``npgpt.cli.main``) in its own folder holding what the README's paths name (a tiny
trained checkpoint at runs/baby/ckpt.npz, tiny app checkpoints, a tiny stand-in for ~/gpt2), under a
memory and time cap. Whatever it does, it must end the way the command line promises a user: 0, 2
(one line naming the mistake), 130/143, or 1 with one line that is not the "bug in npgpt" report --
never a traceback. A value that turns out valid may run; the cap ending it counts as "ran".

``test_a_bug_still_shows_its_traceback_and_fails_the_fuzz`` plants a bug (a KeyError on a missing
file) in the corpus reader: npgpt must still show its traceback, and the fuzz must fail that case.
"""
import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_readme import code_blocks, command_lines, npgpt_arguments
from zip_craft import capped

import npgpt
import npgpt.text.corpus
from npgpt.cli import build_parser, main

# ----------------------------------------------------------------------------- the cases
MISSING, FOLDER, FIFO, RANDOM, WRONG_NPZ = "no/such/file.npz", "a-folder", "a-fifo", "random.bin", "wrong.npz"
# Two huge integers: 10**20 - 1 is past int64 and odd (refused by any divisibility check); 2**30
# divides by every small power of two, so it passes those and reaches the memory and time bounds.
HOSTILE = ("-1", "0", "nan", "inf", "1e400", "abc", "", "99999999999999999999", "1073741824",
           MISSING, FOLDER, "/dev/zero", FIFO, RANDOM, WRONG_NPZ)
SPECIAL_FILES = ("/dev/zero", FIFO)     # reading either never ends: a command must refuse them, not wait

# What each command gets appended so that a valid value runs small and fast (argparse lets a later
# flag win, and a flag being fuzzed is never appended). The tiny model is the checkpoint's (the
# world fixture trains it with CHECKPOINT_MODEL), so `train --resume` with these flags continues it.
CHECKPOINT_MODEL = ["--n-layer", "1", "--n-embd", "16", "--block-size", "32"]
RUN_SMALL = ["--batch-size", "4", "--max-iters", "2", "--eval-iters", "1", "--final-eval-iters", "1",
             "--sample-tokens", "0", "--no-progress", "--threads", "1"]
SMALL = {"train": CHECKPOINT_MODEL + RUN_SMALL,
         "sample": ["--max-new-tokens", "10"],
         "eval": ["--max-tokens", "300", "--no-progress"],
         "prune": ["--then-finetune", "2", "--eval-iters", "1", "--no-progress"],
         "bench": ["--rounds", "1", "--warmup", "1", "--steps", "1", "--no-compile", "--threads", "1"],
         "app": ["--max-iters", "1", "--batch-size", "2", "--no-progress"]}

# Memory: 2 GiB more than the process holds. The tiny runs need far less; a value that makes a
# command allocate without checking hits it (MemoryError: a traceback, so a failure), and npgpt's own
# checks (runtime.memory.require_memory reads RLIMIT_AS) refuse against it instead.
MEMORY_CAP = 2 << 30
# Time: a case the cap ends counts as "ran", so a short cap cannot fail a case (but for a FIFO or
# /dev/zero, which a command must refuse at once); it only bounds how long a valid value runs. Here
# the valid cases end within a second, but 2**30 or 10**20 training or fine-tuning steps (which
# never end) and plan's search (2 to over 10 s, by budget and by the machine's load). With 6 s the
# file takes about 75 s on this shared 2-core machine.
SECONDS_CAP = 6.0
# An error line is the command's prefix, the flag, the value (quoted values are capped by npgpt;
# paths here are short and relative) and what was expected: the longest seen here are about 200
# characters (plan --memory lists its units). 500 leaves room for a long path and still catches a
# message that quotes a file's contents or lists every missing entry (the 1.59 GB
# "one-line" error).
MAX_LINE = 500


def readme_commands() -> list[list[str]]:
    """The README's npgpt commands, each once. None is left out: the ~/gpt2 ones run on a tiny
    stand-in folder, and bench's values are all refused before it times anything (with its cheapest
    flags appended in case one is not). The mpiexec line runs in one process here, where its --zero 1
    is refused, so only its --zero values test more than that refusal."""
    seen, commands = set(), []
    for words in command_lines():
        args = npgpt_arguments(words)
        if args is None or tuple(args) in seen:
            continue
        seen.add(tuple(args))
        commands.append(args)
    return commands


def value_slots(args: list[str]) -> list[tuple[int, str]]:
    """(index, label) of every value in ``args``: a flag's value (label: the flag) or a positional
    (label: its name), read from the command's own parser so a flag without a value is skipped.
    argparse has no public way to list a parser's actions; its private names are stable since 3.2."""
    subparsers = build_parser()._subparsers._group_actions[0].choices
    command = subparsers[args[0]]
    positionals = [a.dest for a in command._get_positional_actions()]
    slots, i = [], 1
    while i < len(args):
        action = command._option_string_actions.get(args[i])
        if action is not None:
            if action.nargs != 0:
                slots.append((i + 1, args[i]))
                i += 1
        else:
            slots.append((i, positionals.pop(0)))
        i += 1
    return slots


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]      # the command as it runs (the README's, one value replaced, small flags appended)
    label: str                 # the flag or positional fuzzed
    value: str
    readme: tuple[str, ...] = ()   # the README's command
    index: int = 0             # where the value goes in it

    def __str__(self) -> str:
        """The README's command with the hostile value in place, as pytest names the case."""
        words = [w if len(w) <= 24 else w[:21] + "..." for w in self.readme]
        words[self.index] = f"<{self.value!r}>"
        return " ".join(words)


def small_run(args: list[str], fuzzed_flag: str) -> list[str]:
    """``args`` with the flags that keep a valid run small appended (but the one being fuzzed and,
    for a recurrent model, the GPT-only ones), and the README's 'shakespeare' made the built-in
    corpus: Tiny Shakespeare's checksum is fixed, so no small copy can stand in for it, and a test
    never downloads."""
    extra, flags = [], SMALL.get(args[0], [])
    for i in range(len(flags)):
        if flags[i].startswith("--") and flags[i] != fuzzed_flag:
            takes_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
            extra += flags[i:i + 1 + takes_value]
    args = [("fallback" if a == "shakespeare" and args[i - 1] == "--data" else a) for i, a in enumerate(args)]
    return [*args, *extra]


def cases() -> list[Case]:
    """Every README command with each of its values replaced by each hostile value, each once."""
    found = {}
    for args in readme_commands():
        for index, label in value_slots(args):
            for value in HOSTILE:
                argv = small_run([*args[:index], value, *args[index + 1:]], label)
                found.setdefault(tuple(argv), Case(tuple(argv), label, value, tuple(args), index))
    return list(found.values())


CASES = cases()


# ----------------------------------------------------------------------------- the world the README assumes
TINY_GPT2_TEXT = "The dog ran. The cat sat on the dog. " * 20


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the README's commands read, made once, small: runs/baby/ckpt.npz (a 1-layer GPT trained
    2 steps), the translation and qa apps trained 1 step each, and home/gpt2, a random 1-layer GPT-2
    in the hub's layout (as tests/test_readme.py's stand-in). Then the README's commands that a
    valid value lets run (sample, eval, prune, a recurrent model's training, app run) run once here,
    small, outside the cap: every numba kernel a case can reach is compiled before any case runs. A
    compile the cap cut short leaves numba's dispatcher broken ("no compiled object yet"), and the
    next case that needs the kernel would fail for it (seen with a cold numba cache)."""
    root = tmp_path_factory.mktemp("world")
    tok = npgpt.BPETokenizer().train(TINY_GPT2_TEXT, vocab_size=270)
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(root / "home" / "gpt2", tokenizer=tok)
    with contextlib.chdir(root), pytest.MonkeyPatch.context() as mp:
        isolate(mp, root)
        assert main(["train", "--preset", "baby", "--data", "fallback", "--out-dir", "runs/baby",
                     *CHECKPOINT_MODEL, *RUN_SMALL]) == 0
        for app in ("translation", "qa"):
            assert main(["app", app, "train", *SMALL["app"]]) == 0
        mp.setenv("HOME", str(root / "home"))
        for args in readme_commands():
            if compiles_more(args):
                argv = [os.path.expanduser(a) for a in small_run(args, "")]
                assert main(argv) == 0, f"the README's command, made small, fails: npgpt {' '.join(argv)}"
    return root


def compiles_more(args: list[str]) -> bool:
    """Whether the README's command runs numba kernels that training a GPT does not compile."""
    return (args[0] in ("sample", "eval", "prune") or (args[0] == "train" and "--model" in args)
            or (args[0] == "app" and args[2:3] == ["run"]))


def isolate(mp: pytest.MonkeyPatch, root: Path) -> None:
    """No download, and no cache or data folder outside ``root``."""
    def no_network(*args: object, **kwargs: object) -> bytes:
        raise OSError("tests never use the network")
    mp.setattr(npgpt.text.corpus, "_fetch_url", no_network)
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    mp.setenv("NPGPT_DATA_DIR", str(root / "no-data"))


def prepare(case: Case, world: Path, here: Path, mp: pytest.MonkeyPatch) -> list[str]:
    """Set up ``here`` for ``case`` (the hostile files, a copy of what the command reads) and
    return its argv, ~ expanded to ``here/home``."""
    isolate(mp, here)
    (here / FOLDER).mkdir()
    os.mkfifo(here / FIFO)
    (here / RANDOM).write_bytes(np.random.default_rng(0).bytes(4096))
    np.savez(here / WRONG_NPZ, weights=np.arange(12.0).reshape(3, 4), names=np.array(["a", "b"]))
    argv = list(case.argv)
    if any("runs/baby" in a for a in argv):
        shutil.copytree(world / "runs" / "baby", here / "runs" / "baby")
    if argv[0] == "app" and len(argv) > 2 and (world / "runs" / "apps" / argv[1]).is_dir():
        shutil.copytree(world / "runs" / "apps" / argv[1], here / "runs" / "apps" / argv[1])
    if "run.toml" in argv:
        (here / "run.toml").write_text(readme_toml(), encoding="utf-8")
    if any(a.startswith("~") for a in argv):
        shutil.copytree(world / "home", here / "home")
        mp.setenv("HOME", str(here / "home"))
        argv = [os.path.expanduser(a) for a in argv]
    return argv


def readme_toml() -> str:
    """The README's run.toml, which its `train --config run.toml` reads."""
    return code_blocks("toml")[0]


# ----------------------------------------------------------------------------- running one case
class CapReached(BaseException):
    """The test's time cap ended the command: it ran. A BaseException, so npgpt's ``except
    Exception`` (the "bug" report) never takes it for an error of the command, and a TimeoutError
    the command itself raised is never taken for the cap."""


@contextlib.contextmanager
def cap(extra_bytes: int, seconds: float) -> Iterator[None]:
    """zip_craft's memory and time cap, its alarm raising :class:`CapReached`."""
    def reached(signum: int, frame: object) -> None:
        raise CapReached
    with capped(extra_bytes, seconds):
        signal.signal(signal.SIGALRM, reached)      # capped() puts back the handler it found
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # disarmed before capped() restores anything


@dataclass
class Outcome:
    code: int | None           # None: the cap ended it
    err: str


def run_case(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``npgpt argv`` in-process under the cap: its exit status (None: the cap ended it) and stderr."""
    capsys.readouterr()
    try:
        with cap(MEMORY_CAP, SECONDS_CAP):
            code = main(argv)
    except CapReached:
        code = None
    except SystemExit as e:     # argparse: a bad flag
        code = e.code
    return Outcome(code, capsys.readouterr().err)


def faults(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with how ``case`` ended, as a user would see it (empty: nothing)."""
    err, found = outcome.err, []
    if outcome.code is None:
        if case.value in SPECIAL_FILES:
            found.append(f"read {case.value} until the {SECONDS_CAP:.0f} s cap instead of refusing it")
    elif outcome.code not in (0, 1, 2, 130, 143):
        found.append(f"exit status {outcome.code}")
    if "Traceback" in err:
        found.append("a traceback")
    if "this is a bug in npgpt" in err:
        found.append("the 'bug in npgpt' report")
    lines = error_lines(err, case.argv[0])
    if outcome.code in (1, 2) and not lines:
        found.append(f"exit status {outcome.code} without an error line")
    if outcome.code == 1 and len(lines) > 1 and not lines[0].split(": ", 1)[-1].startswith("training diverged"):
        found.append("exit status 1 with more than one line")
    for line in lines:
        if not line.startswith("npgpt "):
            found.append(f"an error message of more than one line: {line[:200]!r}")
        elif len(line) > MAX_LINE:
            found.append(f"an error line of {len(line)} characters: {line[:200]!r}...")
    return found


def error_lines(err: str, command: str) -> list[str]:
    """The lines of stderr from the command's first error line (``npgpt COMMAND: error:`` from npgpt
    or argparse, or ``npgpt COMMAND: training diverged``) to the end: npgpt writes nothing after it,
    so a line there that does not start with ``npgpt`` is the rest of a message with a newline in it."""
    lines = err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"npgpt {command}") and ": " in line]
    return [line for line in lines[starts[0]:] if line.strip()] if starts else []


# ----------------------------------------------------------------------------- the tests
def test_every_readme_command_is_fuzzed():
    """The list is the README's: every command, and each value in it (a command without values,
    like ``params``, has nothing to swap)."""
    fuzzed = {c.argv[0] for c in CASES}
    assert {args[0] for args in readme_commands() if value_slots(args)} == fuzzed
    assert {"train", "sample", "eval", "prune", "costs", "plan", "bench", "app"} <= fuzzed
    assert len(CASES) > 500


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_hostile_value_ends_as_the_command_line_promises(case, world, tmp_path, monkeypatch, capsys):
    check(case, world, tmp_path, monkeypatch, capsys)


def check(case: Case, world: Path, here: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> None:
    """Run ``case`` in the folder ``here``; fail naming the command and what a user would have seen."""
    monkeypatch.chdir(here)
    argv = prepare(case, world, here, monkeypatch)
    outcome = run_case(argv, capsys)
    found = faults(case, outcome)
    assert not found, (f"python -m npgpt {' '.join(argv)}: exit {outcome.code}: " + "; ".join(found)
                       + f"\n--- stderr ---\n{outcome.err[-3000:]}")


def test_a_bug_still_shows_its_traceback_and_fails_the_fuzz(world, tmp_path, monkeypatch, capsys):
    """A bug planted in the corpus reader (a KeyError where a missing file should be named): npgpt
    shows its traceback and the "report it" line, and the fuzz's case for that file fails."""
    def buggy_load_text(path: str) -> str:
        return {}[str(path)]
    monkeypatch.setattr(npgpt.text.corpus, "load_text", buggy_load_text)
    case = next(c for c in CASES if c.readme[0] == "eval" and c.label == "--data" and c.value == MISSING)
    with pytest.raises(AssertionError) as failure:
        check(case, world, tmp_path, monkeypatch, capsys)
    report = str(failure.value)
    assert "exit 1: a traceback; the 'bug in npgpt' report" in report
    assert "Traceback (most recent call last)" in report and f"KeyError: '{MISSING}'" in report
