import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # makes benchmarks/ (the PyTorch twin) importable


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
