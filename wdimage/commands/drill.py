"""wdimage drill DIR: boot a built image under QEMU, check that its watchdog is armed, crash the guest in each
requested way and prove that the watchdog resets it. Exit 0 only when every check and every fault passed."""

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from wdimage import drill
from wdimage.errors import Interrupted
from wdimage.fileio import check_replaceable, write_atomically
from wdimage.outputs import is_drill_report


def add_parser(sub) -> None:
    p = sub.add_parser("drill", help="boot a built image, crash it, prove the watchdog resets it",
                       description=__doc__)
    p.add_argument("directory", metavar="DIR", type=Path, help="an output directory of 'wdimage build'")
    p.add_argument("--fault", choices=drill.FAULT_CHOICES, default="all",
                   help="panic: SysRq crash; kill: SIGKILL the daemon; hang: SIGSTOP the daemon; "
                        "all (default): each in turn, each in its own boot")
    p.add_argument("--json", metavar="FILE", type=Path,
                   help="also write the report as JSON to FILE ('-': stdout, the summary then goes to stderr); "
                        "an existing FILE is replaced only when it is a previous drill report")
    p.add_argument("--force", action="store_true",
                   help="replace the report file(s) even when they are not previous drill reports")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    if args.json and str(args.json) != "-":
        check_replaceable(args.json, "--json", is_drill_report, "a wdimage drill report", args.force)
    build = drill.load_build(args.directory)
    with scratch_scope():
        report = drill.run_drill(build, drill.faults_for(args.fault))
    to_stdout = str(args.json) == "-"
    print(drill.render_text(report), file=sys.stderr if to_stdout else sys.stdout)  # stdout: the JSON alone
    if args.json:
        write_json(args.json, drill.report_json(report))
    return int(report.exit_code)


@contextlib.contextmanager
def scratch_scope():
    """Make the drill's scratch directory (QEMU sockets, overlays, console logs: wdimage.qemu.private_dir,
    under tempfile.gettempdir()) inside a 0700 directory of this run, removed whole when the drill is
    interrupted (run_drill keeps a failed drill's scratch directory as diagnostics, and cannot tell an
    interruption from a failure) or when it is left empty. Interim: belongs in run_drill itself."""
    parent = tempfile.gettempdir()
    if "," in parent or len(parent) > 30:  # private_dir would fall back to /tmp: scope it there
        parent = "/tmp"
    scope = Path(tempfile.mkdtemp(prefix="wdimage-run-", dir=parent))
    saved, tempfile.tempdir = tempfile.tempdir, str(scope)
    try:
        yield scope
    except (Interrupted, KeyboardInterrupt):
        shutil.rmtree(scope, ignore_errors=True)
        raise
    finally:
        tempfile.tempdir = saved
        with contextlib.suppress(OSError):
            scope.rmdir()  # empty after a passed drill (or any error before a scratch dir); diagnostics stay


def write_json(path: Path, data: dict) -> None:
    """To stdout for '-'; otherwise a temp file renamed over FILE, so a reader never sees half a report."""
    text = json.dumps(data, indent=2) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        return
    write_atomically(path, text, mode=0o600)
