"""wdimage matrix: the CI build matrix (distro x watchdog model), with the excluded cells and why."""

import json

from wdimage.ci import matrix


def add_parser(sub) -> None:
    p = sub.add_parser(
        "matrix", help="print the CI build matrix (distro x watchdog model)",
        description="Print the CI build matrix: every distro x watchdog model cell, whether CI builds and drills "
                    "it, and why a cell is excluded. --json prints the matrix CI consumes "
                    "(GitHub Actions: strategy.matrix: ${{ fromJSON(...) }}).")
    p.add_argument("--json", action="store_true", help='print {"include": [{name, distro, release, model, drill, minutes}]}')
    p.set_defaults(func=_cmd_matrix)


def _cmd_matrix(args) -> int:
    if args.json:
        print(json.dumps(matrix.build_matrix(), separators=(",", ":")))
    else:
        print(matrix.render_matrix_text())
    return 0
