"""Nothing changes the process on import or when a model is built; npgpt.runtime.configure() applies
npgpt's process settings explicitly (the threading layer, malloc, a rank's share of the cores) and
restores the thread counts; the command line and Trainer.train() call it; npgpt's log lines go where
the application says (npgpt/runtime/process.py, npgpt/runtime/logs.py)."""
import json
import logging
import os
import subprocess
import sys
import textwrap

import numba
import pytest

import npgpt
from npgpt.runtime import logs, process

# Under mpiexec with 2 ranks per machine (MPICH's variable), with no thread variable set.
IMPORT_PROBE = textwrap.dedent("""
    import json, os, sys
    calls = []
    real_umask = os.umask
    os.umask = lambda mask: (calls.append(oct(mask)), real_umask(mask))[1]
    import numba
    layer = numba.config.THREADING_LAYER
    environ = dict(os.environ)
    import npgpt, npgpt.cli, npgpt.atomic, npgpt.kernels.backend
    from npgpt.runtime import memory
    npgpt.GPT(npgpt.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    print(json.dumps({"environ": sorted(set(os.environ.items()) ^ set(environ.items())), "umask": calls,
                      "layer": [layer, numba.config.THREADING_LAYER], "malloc": memory._applied}))
""")


def test_importing_npgpt_and_building_a_model_change_nothing_in_the_process():
    env = {k: v for k, v in os.environ.items() if k not in npgpt.runtime.ranks.THREAD_VARIABLES
           and k != "NUMBA_THREADING_LAYER"}
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=120,
                          env={**env, "MPI_LOCALNRANKS": "2"}, check=True)
    seen = json.loads(done.stdout)
    assert seen["environ"] == []                       # before: NUMBA_NUM_THREADS, OMP_NUM_THREADS, ... set
    assert seen["umask"] == []                         # before: os.umask(0) and back, on import
    assert seen["layer"][1] == seen["layer"][0]        # before: "workqueue", on import
    assert seen["malloc"] is None                      # before: mallopt when the first model was built


def test_configure_applies_the_settings_and_restores_the_thread_counts(monkeypatch):
    from npgpt.runtime import memory
    from npgpt.runtime.threads import get_threads
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a machine with two cores")
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", numba.config.THREADING_LAYER)
    numba.set_num_threads(2)          # the suite runs on 1 (tests/conftest.py): start from more than the share
    try:
        with process.configure({"MPI_LOCALNRANKS": str(numba.config.NUMBA_NUM_THREADS)}) as applied:
            assert numba.get_num_threads() == 1 and get_threads() == 1
            assert applied.rank_threads == {"numba": 1, "blas": 1} and applied.threading_layer == "workqueue"
            assert numba.config.THREADING_LAYER == "workqueue" and memory._applied is not None
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(1)


def test_the_users_thread_counts_and_threading_layer_win():
    environ = {"MPI_LOCALNRANKS": "2", "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
               "NUMBA_THREADING_LAYER": "omp"}
    with process.configure(environ) as applied:
        assert applied.rank_threads == {} and applied.threading_layer is None
    with process.configure({}) as applied:                   # alone: every core
        assert applied.rank_threads == {}


def test_the_numba_backend_asks_for_the_sleeping_threads_when_its_kernels_are_first_fetched():
    code = ("import numba, npgpt; before = numba.config.THREADING_LAYER; npgpt.kernels.backend.ops(); "
            "print(before, numba.config.THREADING_LAYER)")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "NPGPT_BACKEND")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=True).stdout.split()
    assert out == ["default", "workqueue"]


def test_the_trainer_and_the_command_line_apply_the_settings(monkeypatch, tmp_path):
    from contextlib import contextmanager

    import npgpt.cli
    import npgpt.training.trainer
    calls = []

    @contextmanager
    def recorded(environ=None, generating=False):
        calls.append("configure for generating" if generating else "configure")
        yield None
    monkeypatch.setattr(npgpt.training.trainer, "configure", recorded)
    monkeypatch.setattr(npgpt.cli, "configure", recorded)
    assert npgpt.cli.main(["params", "-q"]) == 0
    assert calls == ["configure"]
    assert npgpt.cli.main(["sample", "--ckpt", str(tmp_path / "none.npz")]) != 0          # refused, after configure
    assert calls == ["configure", "configure for generating"]
    calls.pop()
    data = npgpt.Dataset("the quick brown fox jumps over the lazy dog. " * 20, cache=False)
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=data.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    config = npgpt.TrainConfig(max_iters=1, batch_size=2, warmup_iters=0, eval_interval=1, eval_iters=1)
    npgpt.Trainer(model, data, config).train(progress=False, log=lambda *_: None)
    assert calls == ["configure", "configure"]


def test_an_atomic_write_takes_the_umask_of_the_moment(tmp_path):
    from npgpt.atomic import atomic_write_bytes
    before = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")         # before: the umask of import time, 0o022 here
    finally:
        os.umask(before)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- the log
def test_a_verbose_call_shows_its_lines_when_nobody_configured_the_log(capsys):
    log = logging.getLogger("npgpt.text.bpe")
    with logs.shown(True) as level:
        log.log(level, "an info line")
        log.warning("a warning")
    with logs.shown(False) as level:
        log.log(level, "a debug line")
    out, err = capsys.readouterr()
    assert out == "an info line\n" and err == "a warning\n"
    assert not logs.configured() and not logging.getLogger("npgpt").handlers


def test_a_verbose_call_leaves_a_configured_log_to_the_application(capsys):
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    logger = logging.getLogger("npgpt")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        npgpt.BPETokenizer().train("the cat sat on the mat " * 5, 258, verbose=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert seen[0].startswith("merge 1/2: ") and capsys.readouterr().out == ""


def test_library_modules_do_not_print():
    """print() is the command line's (and the notebooks' helpers'): text/, io/ and runtime/ log."""
    import ast
    from pathlib import Path
    package = Path(npgpt.__file__).parent
    for folder in ("text", "io", "runtime", "models", "training"):
        for path in (package / folder).glob("*.py"):
            calls = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                     if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
            assert not calls, f"{path.relative_to(package)} prints at lines {calls}"


def test_a_generating_process_asks_for_openmp_with_a_bounded_spin():
    """npgpt sample (and the GPT-2 benchmark's workers) only generate: numba's threads may spin a little,
    so the decoding step's 48 regions a token start in microseconds (npgpt/runtime/process.py)."""
    code = ("import os, sys, numba, numpy, npgpt; from npgpt.runtime import process; from npgpt.kernels import decode; "
            "process.configure(generating=True).__enter__(); npgpt.kernels.backend.ops(); numba.get_num_threads(); "
            "print(numba.threading_layer(), os.environ.get('GOMP_SPINCOUNT'), decode.regions_are_cheap())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "NPGPT_BACKEND", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    run = lambda extra: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                       env={**env, **extra}, check=True).stdout.split()
    assert run({}) == ["omp", process.SPIN_COUNT, "True"]       # the backend's later ask for workqueue changes nothing
    assert run({"GOMP_SPINCOUNT": "7"}) == ["omp", "7", "True"]     # the user's spin stands
    assert run({"NUMBA_THREADING_LAYER": "workqueue"})[::2] == ["workqueue", "False"]   # and the user's layer


def test_a_training_process_keeps_the_sleeping_threads_and_decodes_on_one_thread():
    code = ("import numba, npgpt; from npgpt.kernels import decode; npgpt.kernels.backend.ops(); "
            "numba.set_num_threads(2); print(numba.threading_layer(), decode.regions_are_cheap(), "
            "decode.blocks_build(1 << 30)[1])")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "NPGPT_BACKEND")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=True).stdout.split()
    assert out == ["workqueue", "False", "1"]      # workqueue's wake-up costs more than a split saves


def test_without_openmp_a_generating_process_gets_workqueue_and_no_spin_is_left_set(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setitem(sys.modules, "numba.np.ufunc.omppool", None)      # importing it raises ImportError
    monkeypatch.setattr(numba.config, "THREADING_LAYER", numba.config.THREADING_LAYER)
    assert process.use_generating_threads({}) == "workqueue" == numba.config.THREADING_LAYER
    assert "GOMP_SPINCOUNT" not in os.environ
