"""wdimage index: gather the manifests (and drill results) of several build output directories into one index."""

import json
from pathlib import Path

from wdimage import matrix
from wdimage.errors import usage_error


def add_parser(sub) -> None:
    p = sub.add_parser(
        "index", help="gather build output directories into one index (JSON or a Markdown table)",
        description="Read DIR/manifest.json and, if present, DIR/drill.json (from 'wdimage drill DIR --json "
                    "DIR/drill.json') of each DIR and print one index: JSON, or with --markdown a table of the "
                    "images with their drill results.")
    p.add_argument("directories", nargs="+", type=Path, metavar="DIR", help="a 'wdimage build' output directory")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    p.set_defaults(func=_cmd_index)


def _cmd_index(args) -> int:
    for directory in args.directories:
        if not directory.is_dir():
            raise usage_error(f"{directory}: not a directory", "pass 'wdimage build' output directories")
    index = matrix.build_index(args.directories)
    if args.markdown:
        print(matrix.render_index_markdown(index), end="")
    else:
        print(json.dumps(index, indent=2))
    return 0
