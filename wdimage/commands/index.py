"""wdimage index: gather the manifests (and drill results) of several build output directories into one index."""

import json
from pathlib import Path

from wdimage.ci import matrix, release
from wdimage.errors import usage_error


def add_parser(sub) -> None:
    p = sub.add_parser(
        "index", help="gather build output directories into one index (JSON or a Markdown table)",
        description="Read DIR/manifest.json and, if present, DIR/drill.json (from 'wdimage drill DIR --json "
                    "DIR/drill.json') of each DIR and print one index: JSON, or with --markdown a table of the "
                    "images with their drill results. --releasable and --release-notes say what a release of "
                    "these directories publishes: the images whose drill passed; every other cell of "
                    "'wdimage matrix' is listed in the notes with the reason.")
    p.add_argument("directories", nargs="+", type=Path, metavar="DIR", help="a 'wdimage build' output directory")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    form.add_argument("--releasable", action="store_true",
                      help="print the names of the directories a release publishes, one a line")
    form.add_argument("--release-notes", action="store_true",
                      help="print the release notes (Markdown): what is published, what is not and why")
    p.set_defaults(func=_cmd_index)


def _cmd_index(args) -> int:
    for directory in args.directories:
        if not directory.is_dir():
            raise usage_error(f"{directory}: not a directory", "pass 'wdimage build' output directories")
    index = matrix.build_index(args.directories)
    if args.markdown:
        print(matrix.render_index_markdown(index), end="")
    elif args.releasable or args.release_notes:
        plan = release.release_plan(index)
        text = release.render_release_notes(index, plan) if args.release_notes else "".join(
            f"{name}\n" for name in plan["publish"])
        print(text, end="")
    else:
        print(json.dumps(index, indent=2))
    return 0
