import signal

import numba
import numpy as np
import pytest
from references import pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish  # noqa: F401
from threadpoolctl import threadpool_limits

# Optional references (torch, tiktoken, ...): tests ask with references.optional_reference(); the hooks
# imported above record the skips (NPGPT_REFERENCE_SKIPS) and keep a run of modules skipped at import
# from exiting 5.

# Tests check behaviour, not speed: one BLAS and one numba thread, so threads never spin-wait on
# each other when the machine is busy (performance lives in benchmarks/ and `npgpt bench`).
threadpool_limits(1)
numba.set_num_threads(1)

# Tests of Ctrl-C assume what a terminal gives Python: SIGINT raising KeyboardInterrupt. A shell
# without job control starts a background job (`pytest &`, nohup, some CI runners) with SIGINT
# ignored, and Python then leaves it ignored, so a test's SIGINT would do nothing. Restore the
# terminal's behaviour; child processes then start with SIGINT at its default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A small text file to train on, with the corpus cache kept inside the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 30, encoding="utf-8")
    return path
