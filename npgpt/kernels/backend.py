"""Which implementation of the hot ops runs: the readable NumPy reference or the numba twins.

    npgpt.set_backend("numpy")          # the formulas in npgpt/ops, exactly as written
    with npgpt.use_backend("numba"):    # the fused kernels in npgpt/kernels (the default)
        ...

The environment variable ``NPGPT_BACKEND`` sets the starting choice. Models and optimizers ask
:func:`ops` for the active namespace; nothing else needs to know which one it is.
"""
import types
from contextlib import contextmanager

from ..checks import UsageError
from ..runtime import settings
from ..runtime.process import use_sleeping_threads

BACKENDS = ("numpy", "numba")
DEFAULT = "numba"

_namespaces = {}


def _check(name):
    if name not in BACKENDS:
        raise UsageError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def _namespace(name):
    """The functions of backend ``name``: every op, with the numba twins where there are some."""
    if name not in _namespaces:
        from .. import ops
        functions = {n: getattr(ops, n) for n in ops.__all__}
        if name == "numba":
            # Before any parallel kernel can start numba's threads: they must be the sleeping kind
            # (npgpt.runtime.process explains why; a user's NUMBA_THREADING_LAYER wins).
            use_sleeping_threads()
            from .. import kernels
            functions.update({n: getattr(kernels, n) for n in kernels.TWINS})
        _namespaces[name] = types.SimpleNamespace(name=name, **functions)
    return _namespaces[name]


_active = _check(settings.backend() or DEFAULT)


def set_backend(name):
    """Make ``name`` ("numpy" or "numba") the backend for every later forward, backward and step."""
    global _active
    _active = _check(name)


def get_backend():
    """The active backend's name."""
    return _active


@contextmanager
def use_backend(name):
    """Run a block with backend ``name``, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield _namespace(name)
    finally:
        set_backend(previous)


def ops():
    """The active backend's functions, by their :mod:`npgpt.ops` names."""
    return _namespace(_active)
