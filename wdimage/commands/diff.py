"""wdimage diff: what really differs between two builds (their manifests), ignoring what always differs."""

import json
from pathlib import Path

from wdimage.errors import ExitCode
from wdimage.image import manifest_diff


def add_parser(sub) -> None:
    p = sub.add_parser(
        "diff", help="show what differs between two builds (settings, packages, kernel config check, checksums)",
        description="Compare two builds' manifest.json: settings, package versions (the full installed list: "
                    "added, removed, changed), the kernel-config check result and checksums. The build's start "
                    "time and duration always differ; they are ignored and listed as ignored.")
    p.add_argument("a", type=Path, metavar="A", help="a 'wdimage build' output directory or its manifest.json")
    p.add_argument("b", type=Path, metavar="B", help="the other build")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 1 when the builds differ in settings, packages or the kernel config check (like "
                        "git diff); checksums, which differ between any two builds, are shown but not counted")
    p.set_defaults(func=_cmd_diff)


def _cmd_diff(args) -> int:
    diff = manifest_diff.diff_paths(args.a, args.b)
    if args.json:
        print(json.dumps(manifest_diff.diff_json(diff), indent=2, ensure_ascii=False))
    else:
        print(manifest_diff.render_text(diff), end="")
    if args.exit_code and diff.differs:
        return int(ExitCode.FAILED)
    return int(ExitCode.OK)
