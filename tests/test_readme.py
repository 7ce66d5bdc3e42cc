"""The README tells the truth a newcomer can check.

- Its two commands are the ones CI runs, and the Python version it names is pyproject's.
- Every number it quotes is rendered from a committed result or from npgpt itself
  (``tests/readme_facts.py``), and no measured-looking number is left unaccounted for.
- Every path it names exists; it points at nothing outside the repository, and at no issue.
- Every ``python -m npgpt`` command it shows parses; the cheap ones run here, and the command
  sequence runs in order, shortened, in the slow tests (each command with a few steps appended:
  ``--max-iters`` and the like, which argparse lets a later flag override).
- Its maps (folders, notebooks) are the tree's.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import readme_facts

import npgpt
from npgpt.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SETUP = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -e . --config-settings editable_mode=compat"


def code_blocks(language):
    return [body for lang, body in FENCE.findall(README) if lang == language]


def prose():
    """The README without its fenced code blocks."""
    return FENCE.sub("", README)


def command_lines():
    """Every command line of the README's bash blocks, comments removed, as argument lists."""
    return [shlex.split(line, comments=True) for block in code_blocks("bash")
            for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def npgpt_arguments(words):
    """The arguments after ``python -m npgpt`` in a command line (under mpiexec too), or None."""
    text = " ".join(words)
    if "python -m npgpt" not in text:
        return None
    start = next(i for i in range(len(words) - 2) if words[i:i + 3] == ["python", "-m", "npgpt"])
    return words[start + 3:]


# ----------------------------------------------------------------------------- the two commands
def test_the_two_commands_are_the_ones_ci_runs():
    bash = [block.strip() for block in code_blocks("bash")]
    assert bash[0] == f"{SETUP} && python -m npgpt train --preset baby --data shakespeare"
    assert bash[1] == f"{SETUP} && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run takes the README's line that matches its pattern and runs it as written
    pattern = re.search(r"grep -m1 -E '([^']+)' README\.md", ci).group(1)
    assert [line for line in README.splitlines() if re.search(pattern, line)] == [bash[1]]
    assert 'eval "$readme_test"' in ci


def test_the_python_version_is_pyprojects():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    assert f"Python {version} or newer" in README


# ----------------------------------------------------------------------------- numbers
def npgpt_facts():
    """What the README says about npgpt's own settings, rendered from them."""
    from npgpt.runtime.memory import LARGEST_HEAP_BLOCK
    from npgpt.text.corpus import TINYSHAKESPEARE_SIZE, fallback_text
    c, b = npgpt.TrainConfig(), npgpt.PRESETS["baby"]
    final_batches = build_parser().parse_args(["train"]).final_eval_iters
    fallback = len(fallback_text().encode("utf-8"))

    def sci(x):                                   # 1e-3, as a person writes it
        mantissa, exponent = f"{x:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return [
        f"{b.n_layer} layers, {b.n_head} heads, width {b.n_embd}, block {b.block_size}, batch {c.batch_size}, "
        f"{c.max_iters} steps, AdamW (lr {sci(c.lr)}, betas {c.beta1:g}/{c.beta2:g}, weight decay {c.weight_decay:g}),",
        f"{c.warmup_iters} warmup steps, then cosine decay to {sci(c.min_lr)}, clip {c.grad_clip:.1f}",
        f"means over {final_batches} train and {final_batches} val",
        f"a final evaluation over {final_batches} batches per split",
        f"`tinyshakespeare.txt`, {TINYSHAKESPEARE_SIZE:,} bytes",
        f"({fallback // 1000} KB, `npgpt/corpus/fallback.txt`)",
        f"{round(TINYSHAKESPEARE_SIZE / fallback)} times smaller",
        f"blocks up to {LARGEST_HEAP_BLOCK >> 20} MB",
    ]


def test_every_table_and_fact_of_the_results_is_in_the_readme():
    missing = [text for text in [*readme_facts.tables(), *readme_facts.facts(), *npgpt_facts()]
               if text.replace("\n", " ") not in README.replace("\n", " ")]
    assert not missing, "the README does not say (or no longer says) what the results say:\n" + "\n".join(missing)


MEASURED = re.compile(r"(?<![\w.§^/-])(\d[\d,]*(?:\.\d+)?)(?:\s?(?:ms|s|µs|%|x|tokens/s|MB|KB|GB/s|GB|minutes))?(?![\w.])")
NOT_MEASURED = {
    # versions, sections and names, not measurements
    "3.11", "4.1", "4.2", "4.3", "0.9", "1e-4",
}


def test_no_number_in_the_readme_prose_is_unaccounted_for():
    """Every decimal or number with a unit in the prose is part of a rendered fact or table (or a
    version or section number listed in NOT_MEASURED), so no measurement can go stale unnoticed."""
    sources = " ".join([*readme_facts.tables(), *readme_facts.facts(), *npgpt_facts()])
    text = re.sub(r"`[^`]*`", "", prose())                      # inline code: names, flags, paths
    text = re.sub(r"\(figures/[^)]*\)|\(https?://[^)]*\)", "", text)
    loose = []
    for match in MEASURED.finditer(text):
        number, whole = match.group(1), match.group(0)
        if ("." in number or whole != number) and number not in NOT_MEASURED and number not in sources:
            loose.append(whole)
    assert not loose, f"numbers in the README that no committed result renders: {loose}"


def test_the_number_check_catches_a_stale_number():
    assert MEASURED.search("the step took 31.4 ms").group(0) == "31.4 ms"
    assert MEASURED.search("§4.2 and GPT-2 and batch 12") is None or \
        "." not in MEASURED.search("§4.2 and GPT-2 and batch 12").group(1)


@pytest.mark.slow
def test_the_params_block_is_what_the_command_prints():
    printed = subprocess.run([sys.executable, "-m", "npgpt", "params"], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout
    assert printed.strip() in [block.strip() for block in code_blocks("")]


# ----------------------------------------------------------------------------- paths and links
PATH = re.compile(r"`((?:npgpt|tests|benchmarks|notebooks|figures|\.ci)/[\w./-]*)`|\]\(((?!https?:)[^)]+)\)")


def test_every_path_the_readme_names_exists():
    named = {a or b for a, b in PATH.findall(README)}
    assert len(named) > 20
    missing = sorted(p for p in named if not (ROOT / p.split("::")[0]).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"


def test_the_readme_points_at_nothing_outside_the_repository():
    assert "../" not in README and "/work/" not in README
    assert not re.search(r"\bissues?\s+#?\d", README, re.I), "the README speaks to users, who have no issues"


def map_table(text):
    """The rows of the package map (``| `npgpt/...` | ... |``) in ``text``."""
    return [line for line in text.splitlines() if re.match(r"^\| `npgpt/\w+/` \|", line)]


def test_the_maps_are_the_trees():
    package = Path(npgpt.__file__).parent
    folders = {f"npgpt/{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    rows = map_table(README)
    assert rows == map_table(npgpt.__doc__), "the README's map is not the package docstring's"
    mapped = {re.match(r"^\| `(npgpt/\w+/)`", row).group(1) for row in rows}
    assert mapped == folders, f"README map {sorted(mapped)} against the package {sorted(folders)}"
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    listed = set(re.findall(r"^\| `(\w+)` \| (?:all|§|—)", README, re.M))
    assert listed == notebooks, f"README's notebook table {sorted(listed)} against notebooks/ {sorted(notebooks)}"


# ----------------------------------------------------------------------------- commands
def test_every_npgpt_command_in_the_readme_parses():
    parser = build_parser()
    commands = [args for args in map(npgpt_arguments, command_lines()) if args is not None]
    assert len(commands) >= 20
    for args in commands:
        try:
            parser.parse_args([os.path.expanduser(a) for a in args])
        except SystemExit:
            pytest.fail(f"the README's `python -m npgpt {' '.join(args)}` does not parse")


def test_every_script_the_readme_runs_exists():
    scripts = [words[1] for words in command_lines() if words[:1] == ["python"] and words[1].endswith(".py")]
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts


def run(args, cwd, env=None, timeout=600):
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    return done.stdout


CHEAP = (["costs", "--preset", "small"], ["plan", "--flops", "1e15", "--memory", "2GB"])


@pytest.mark.parametrize("args", CHEAP, ids=lambda a: a[0])
@pytest.mark.slow
def test_the_cheap_commands_run_as_shown(args, tmp_path):
    assert args in [npgpt_arguments(words) for words in command_lines()]
    assert run(["-m", "npgpt", *args], tmp_path).strip()


@pytest.mark.slow
def test_the_python_examples_run(tmp_path):
    first = code_blocks("python")[0]
    out = run(["-c", first], tmp_path)
    assert "wte.weight" in out
    speed = code_blocks("python")[1]
    run(["-c", "import npgpt\n" + speed], tmp_path)


def test_the_hf_command_exists_as_written():
    hf = shutil.which("hf")
    if hf is None:
        pytest.skip("the hub's client `hf` is not installed (it comes with huggingface_hub, a dependency of transformers)")
    line = next(words for words in command_lines() if words[:1] == ["hf"])
    assert line[1] == "download"
    helptext = subprocess.run([hf, "download", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--local-dir" in helptext


# ----------------------------------------------------------------------------- the sequence, shortened
SHORT = {"train": ["--max-iters", "{steps}", "--eval-interval", "10", "--eval-iters", "2", "--final-eval-iters", "2",
                   "--sample-tokens", "10", "--no-progress", "--threads", "1"],
         "prune": ["--then-finetune", "2", "--eval-iters", "2", "--no-progress"],
         "eval": ["--max-tokens", "300", "--no-progress"],
         "sample": ["--max-new-tokens", "10"],
         "bench": ["--rounds", "1", "--warmup", "1", "--steps", "1", "--no-compile", "--threads", "1"]}


def shortened(args, steps):
    command = args[0]
    extra = [a.format(steps=steps) for a in SHORT.get(command, [])]
    return [*args, *extra]


@pytest.mark.slow
def test_the_command_sequence_runs_in_order_and_keeps_every_result(tmp_path):
    """The "Command line" block, in order, in one folder: each command runs, and no command
    changes a checkpoint an earlier one wrote (but --resume, which continues its own)."""
    block = next(b for b in code_blocks("bash") if "--resume" in b)
    sequence = [npgpt_arguments(shlex.split(line, comments=True)) for line in block.splitlines() if line.strip()]
    written = {}
    for number, args in enumerate(sequence):
        steps = 12 if "--resume" in args else 6
        run(["-m", "npgpt", *shortened(args, steps)], tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
        if "--resume" in args:
            written.pop(str(tmp_path / "runs" / "baby" / "ckpt.npz"), None)
        for ckpt, before in written.items():
            assert Path(ckpt).read_bytes() == before, f"command {number} ({' '.join(args)}) changed {ckpt}"
        written.update({str(p): p.read_bytes() for p in (tmp_path / "runs").rglob("ckpt.npz")})
    assert len(written) >= 4


@pytest.mark.slow
def test_the_application_commands_run_in_order(tmp_path):
    block = next(b for b in code_blocks("bash") if "app qa run" in b)
    for line in block.splitlines():
        args = npgpt_arguments(shlex.split(line, comments=True))
        if args is None:
            continue
        if args[-1] == "train":
            args = [*args, "--max-iters", "2", "--no-progress"]
        run(["-m", "npgpt", *args], tmp_path)
    assert (tmp_path / "runs" / "apps" / "qa" / "ckpt.npz").is_file()


@pytest.mark.slow
def test_the_gpt2_examples_run_on_a_stand_in_folder(tmp_path):
    """The GPT-2 commands and the Python example, with ~ pointing at a folder holding a tiny random
    GPT-2 and a byte-level tokenizer in the hub's file layout."""
    home = tmp_path / "home"
    tok = npgpt.BPETokenizer().train("The dog ran. The cat sat on the dog. " * 20, vocab_size=270)
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(home / "gpt2", tokenizer=tok)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    block = next(b for b in code_blocks("bash") if "--pretrained ~/gpt2" in b)
    for line in block.splitlines():
        args = npgpt_arguments(shlex.split(line, comments=True))
        if args and args[0] in ("sample", "eval"):
            run(["-m", "npgpt", *[os.path.expanduser(a).replace(str(Path.home()), str(home)) for a in shortened(args, 2)]],
                tmp_path, env=env)
    run(["-c", next(b for b in code_blocks("python") if "load_pretrained" in b)], tmp_path, env=env)
    assert (tmp_path / "runs" / "my-gpt2" / "model.safetensors").is_file()


def test_the_config_file_example_is_read_as_shown(tmp_path):
    """The README's run.toml and its command: the file's settings and the flag beside it both reach
    the run (``--print-config`` shows the resolved run without training)."""
    (tmp_path / "run.toml").write_text(code_blocks("toml")[0], encoding="utf-8")
    command = next(args for args in map(npgpt_arguments, command_lines()) if args and "--config" in args)
    resolved = tomllib.loads(run(["-m", "npgpt", *command, "--print-config"], tmp_path))
    written = tomllib.loads(code_blocks("toml")[0])
    assert {key: resolved[key] for key in written} == written
    flags = dict(zip(command[1::2], command[2::2]))
    assert resolved["lr"] == float(flags.pop("--lr")) and flags == {"--config": "run.toml"}
