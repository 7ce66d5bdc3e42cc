"""``python -m npgpt params``: the document's parameter claim (section 4.1) beside counts computed
from the architectures."""
from .flags import command


def register(subparsers) -> None:
    p = command(subparsers, "params", help="parameter counts: the document's claim vs computed",
                description="Compare the document's parameter claim (section 4.1) with counts computed from "
                            "the architectures.")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..verify.counting import document_parameter_report
    for label, count in document_parameter_report():
        print(f"{label:<52} {count:>14,}")
    return 0
