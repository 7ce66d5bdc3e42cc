"""Command line: ``python -m npgpt COMMAND`` (``--help`` on each explains every flag).

One module per command (train, sample, eval, params, bench, prune, costs, plan, app, site), each with
``register(subparsers)`` and ``run(args) -> int``; the flags and their defaults follow
:mod:`npgpt.cli.flags`. Around every command, npgpt's log goes to the console
(:func:`npgpt.runtime.logs.to_console`; ``-q`` warnings and errors only, ``-v`` debug lines too) and
its process settings are applied (:func:`npgpt.runtime.configure`).

Exit status: 0 done; 2 a usage mistake (a bad flag value or file: one line naming it, from a
:class:`npgpt.checks.UsageError`); 1 a run that diverged or could not save, or a bug inside npgpt
(its traceback, then a line asking to report it); 130 Ctrl-C, 143 SIGTERM (a training run saves a
checkpoint at a step boundary first; elsewhere the command stops where it is, saving nothing
half-written, and says so in one line).

Under ``mpiexec -n N`` only ``train`` runs (data parallel, :mod:`npgpt.training.distributed`); every
other command says so in one line on every rank and exits 2, instead of running N copies that
write the same files.
"""
import argparse
import logging
import shlex
import signal
import sys
import traceback

from ..checks import UsageError
from ..runtime.logs import to_console
from ..runtime.process import configure
from ..training.trainer import SIGNAL_EXIT, CheckpointNotSaved, TrainingDiverged, interrupts
from . import app, bench, costs, params, plan, prune, sample, site, train
from . import eval as evaluate
from .flags import Parser

COMMANDS = (train, sample, evaluate, params, bench, prune, costs, plan, app, site)
DATA_PARALLEL = ("train",)      # the commands that may run under mpiexec -n N: the others refuse on every rank
GENERATING = ("sample",)        # the commands that generate and never train: numba threads that spin a little


def build_parser() -> Parser:
    """The parser of ``npgpt`` and all its commands; ``parse_args`` applies the defaults
    (:mod:`npgpt.cli.flags`)."""
    parser = Parser(prog="npgpt", description="npgpt: a GPT you can read. Train, sample, count, benchmark.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=argparse.ArgumentParser)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (a bad flag exits 2 from argparse, as usual)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    with to_console(level), configure(generating=args.command in GENERATING), interrupts():     # SIGTERM, as Ctrl-C, ends a command with its one line
        try:
            code, failed = run_and_report(args)
        except BaseException:
            if running_together(args):         # print this rank's traceback, then end every rank
                traceback.print_exc()
                args.comm.abort(1)
            raise
    if failed and running_together(args):
        args.comm.abort(code)      # the other ranks may be waiting in a collective: end them too
    return code


def running_together(args) -> bool:
    """Whether this process trains with other MPI ranks past the point where they agreed to start."""
    comm = getattr(args, "comm", None)
    return comm is not None and comm.size > 1 and getattr(args, "after_agreement", False)


def error_line(text: str) -> None:
    """``text`` and its newline to stderr in one write: under ``mpiexec`` the ranks share stderr,
    and two writes per line (what print does) let their lines interleave."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_and_report(args) -> tuple[int, bool]:
    """(exit status, whether an error ended the command). A usage mistake is one line; any other
    exception is a bug in npgpt: its traceback, then one line asking to report it."""
    from ..runtime.ranks import launched_rank, launched_size
    who = f"npgpt {args.command}"
    if launched_size() > 1:
        who += f" (rank {launched_rank()} of {launched_size()})"
    try:
        if launched_size() > 1 and args.command not in DATA_PARALLEL:
            raise UsageError(f"npgpt {args.command} runs on one process, but mpiexec started {launched_size()}: "
                             f"every rank would run it whole (and write the same files); start it without "
                             f"mpiexec (npgpt {' and '.join(DATA_PARALLEL)} run data parallel)")
        return args.run(args), False
    except TrainingDiverged as e:
        error_line(f"{who}: training diverged: {e}")
        saved = getattr(e, "kept", None)
        if saved:
            error_line(f"{who}: {saved}")
        return 1, True
    except CheckpointNotSaved as e:
        error_line(f"{who}: error: {e}")
        return 1, True
    except KeyboardInterrupt as e:     # outside a training loop, which handles its own signals
        signum = getattr(e, "signum", signal.SIGINT)
        error_line(f"{who}: interrupted" + (" (SIGTERM)" if signum == signal.SIGTERM else ""))
        return SIGNAL_EXIT[signum], True
    except UsageError as e:
        error_line(f"{who}: error: {e}")
        return 2, True
    except Exception:
        traceback.print_exc()
        error_line(f"{who}: this is a bug in npgpt, not a mistake in the command: please report it with the "
                   f"traceback above and the command line: python -m npgpt {shlex.join(args.argv)}")
        return 1, True
