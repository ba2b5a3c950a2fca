"""wdimage matrix: the CI build matrix (distro x architecture x watchdog model), with the excluded cells and why."""

import json

from wdimage.ci import matrix
from wdimage.errors import usage_error
from wdimage.models import Arch, arch_from_name


def add_parser(sub) -> None:
    p = sub.add_parser(
        "matrix", help="print the CI build matrix (distro x architecture x watchdog model)",
        description="Print the CI build matrix: every distro x architecture x watchdog model cell (the models that "
                    "exist on each architecture), whether CI builds and drills "
                    "it, and why a cell is excluded. --json prints the matrix CI consumes "
                    "(GitHub Actions: strategy.matrix: ${{ fromJSON(...) }}).")
    p.add_argument("--json", action="store_true",
                   help='print {"include": [{name, distro, release, model, arch, runner, drill, minutes}]}')
    p.add_argument("--arch", metavar="ARCH", help=f"only the cells of one architecture: {', '.join(Arch)}")
    p.set_defaults(func=_cmd_matrix)


def _cmd_matrix(args) -> int:
    arch = None
    if args.arch is not None and (arch := arch_from_name(args.arch)) is None:
        raise usage_error(f"--arch {args.arch}: expected one of {', '.join(Arch)}")
    if args.json:
        print(json.dumps(matrix.build_matrix(arch), separators=(",", ":")))
    else:
        print(matrix.render_matrix_text(arch))
    return 0
