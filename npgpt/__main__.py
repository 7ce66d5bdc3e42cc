"""``python -m npgpt``: the command line (:mod:`npgpt.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
