"""npgpt: a GPT you can read. NumPy forward and hand-written backward passes, checked by finite
differences."""
from .config import PRESETS, GPTConfig
from .gradcheck import GradcheckReport, check_model, check_op, gradcheck, jitter
from .model import GPT

__version__ = "0.1.0"

__all__ = ["GPT", "GPTConfig", "PRESETS", "GradcheckReport", "check_model", "check_op", "gradcheck", "jitter"]
