"""What a process runs with: threads, ``malloc``, MPI ranks, npgpt's environment
variables and its log. Nothing here acts on import; :func:`configure` applies the process settings."""
from .process import configure

__all__ = ["configure"]
