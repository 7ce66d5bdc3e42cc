"""A real file system to inject a fault into: a tmpfs of a given size, or read-only.

    with tmpfs(tmp_path / "disk", "size=64k") as disk: ...   # a full disk after 64 kB
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro: ...     # a read-only file system
"""
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``folder`` (needs root on Linux: the test is skipped, saying so, without)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root on Linux): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
