"""wdimage drill DIR: boot a built image under QEMU, check that its watchdog is armed, then run each requested
scenario: faults the watchdog must answer (panic, kill, hang, ...) and controls that must not reset the guest
(healthy, stop, pause, migrate). Exit 0 only when every check and every scenario passed.

wdimage drill --libvirt DOMAIN [--connect URI]: the same on a libvirt domain (started if it is off), expecting
what the domain's <watchdog> and the guest's /etc/watchdog.conf say; anything but --fault healthy or proof
needs --yes-crash-it.

--safe (both): the readiness checks and the `proof` only: the watchdog shown to fire on the running guest,
which is not restarted (docs/safe-proof.md)."""

import argparse
import contextlib
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

from wdimage.drill import pages, scenarios
from wdimage.drill import report as drill_report
from wdimage.drill import runner as drill
from wdimage.errors import Interrupted, usage_error
from wdimage.fileio import check_replaceable, write_atomically
from wdimage.image.outputs import is_drill_report, is_html_report, is_junit_report, is_markdown_report
from wdimage.models import Action


def _scenario_table() -> str:
    rows = [f"  {name:<14} {scenarios.SCENARIOS[name].outcome:<7} {scenarios.SCENARIOS[name].summary}"
            for name in scenarios.names()]
    return ("scenarios (--fault NAME; outcome: fire = the watchdog must fire with the image's action, reboot = the "
            "daemon must reboot the guest,\n quiet = nothing may happen for twice the window, proof = the watchdog "
            "must fire with the action none for the moment, the guest\n runs on; --safe runs it alone):\n"
            + "\n".join(rows) + "\n  all            every scenario the image supports, controls first (the default)")


def add_parser(sub) -> None:
    p = sub.add_parser("drill", help="boot a built image, crash it, prove the watchdog resets it",
                       description=__doc__, epilog=_scenario_table(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", type=Path, nargs="?",
                   help="an output directory of 'wdimage build' (or --libvirt DOMAIN)")
    p.add_argument("--libvirt", metavar="DOMAIN", help="drill this libvirt domain instead of a built image")
    p.add_argument("--connect", metavar="URI", help="--libvirt: the libvirt connection URI (default: libvirt's own)")
    p.add_argument("--yes-crash-it", action="store_true",
                   help="--libvirt: allow the scenarios that crash, stop or pause the domain (all but healthy and "
                        "proof)")
    p.add_argument("--safe", action="store_true",
                   help="prove the watchdog of a running guest without restarting it: the readiness checks and "
                        "the `proof` scenario only (the hypervisor's action set to none for about one watchdog "
                        "timeout, the daemon frozen until the watchdog fires, then re-armed and the action "
                        "restored); needs no --yes-crash-it; a --fault that crashes, stops or pauses is refused")
    p.add_argument("--fault", action="append", choices=drill.FAULT_CHOICES, metavar="NAME",
                   help="a scenario to run (repeatable; see the list below; default: all)")
    p.add_argument("--action", choices=[str(a) for a in Action],
                   help="drill as if the image had been built with this --action: the image does not depend on "
                        "it, only QEMU's -action watchdog= does (default: the manifest's)")
    p.add_argument("--machine", choices=drill.MACHINES,
                   help="QEMU machine type (default: the model's on the image's arch: pc, q35 for itco, virt on "
                        "arm64, s390-ccw-virtio on s390x); e.g. q35 to drill i6300esb beside q35's built-in iTCO")
    p.add_argument("--json", metavar="FILE", type=Path,
                   help="also write the report as JSON to FILE ('-': stdout, the summary then goes to stderr); "
                        "an existing FILE is replaced only when it is a previous drill report")
    p.add_argument("--junit", metavar="FILE", type=Path,
                   help="also write a JUnit XML report to FILE: one test case per check and per scenario; "
                        "an existing FILE is replaced only when it is a previous wdimage JUnit report")
    p.add_argument("--html", metavar="FILE", type=Path,
                   help="also write the report as one self-contained HTML page to FILE: a timeline per scenario "
                        "(boot, armed, fault, the expected window, the event, the reset, armed again), the checks "
                        "with their fixes, a failure's console; an existing FILE is replaced only when it is a "
                        "previous wdimage HTML report")
    p.add_argument("--markdown", metavar="FILE", type=Path,
                   help="also write the report as Markdown to FILE (a table and a Mermaid timeline: a CI job's "
                        "summary, e.g. appended to $GITHUB_STEP_SUMMARY); replaced only when a previous one")
    p.add_argument("--force", action="store_true",
                   help="replace the report file(s) even when they are not previous drill reports")
    p.set_defaults(func=_cmd)


# Each report file: how a previous one is recognised, in words.
REPORT_FILES = {
    "--json": (is_drill_report, "a wdimage drill report"),
    "--junit": (is_junit_report, "a wdimage JUnit report"),
    "--html": (is_html_report, "a wdimage HTML report"),
    "--markdown": (is_markdown_report, "a wdimage Markdown report"),
}


def _check_target(option: str, path: Path | None, force: bool = False) -> None:
    """Nothing of the user's is overwritten: an existing FILE must be a previous report of the same kind."""
    if path and str(path) != "-":
        is_ours, what = REPORT_FILES[option]
        check_replaceable(path, option, is_ours, what, force)


@contextlib.contextmanager
def scratch_scope():
    """A directory of this run (under TMPDIR) to make the drill's scratch directory in (QEMU sockets, overlays,
    console logs: run_drill(scratch=...) passes it to wdimage.vm.process.private_dir), removed whole when the
    drill is interrupted (run_drill keeps a failed drill's scratch directory as diagnostics, and cannot tell an
    interruption from a failure) or when it is left empty. Interim: belongs in run_drill itself."""
    parent = tempfile.gettempdir()
    if "," in parent or len(parent) > 30:  # private_dir would fall back to /tmp: scope it there
        parent = "/tmp"
    scope = Path(tempfile.mkdtemp(prefix="wdimage-run-", dir=parent))
    try:
        yield scope
    except (Interrupted, KeyboardInterrupt):
        shutil.rmtree(scope, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            scope.rmdir()  # empty after a passed drill (or any error before a scratch dir); diagnostics stay


def _cmd(args: argparse.Namespace) -> int:
    for option in REPORT_FILES:
        _check_target(option, getattr(args, option[2:]), args.force)
    written = [str(path) for option in REPORT_FILES if (path := getattr(args, option[2:])) and str(path) != "-"]
    if len(set(written)) < len(written):
        raise usage_error(f"{', '.join(REPORT_FILES)} must name different files")
    faults = drill.requested(args.fault)
    if args.safe:
        try:
            faults = scenarios.safe_faults(args.fault and faults)
        except ValueError as e:
            raise usage_error(str(e)) from None
    if args.libvirt is not None:
        report = _libvirt(args, faults)
    else:
        report = _built_image(args, faults)
    to_stdout = str(args.json) == "-"
    print(drill_report.render_text(report), file=sys.stderr if to_stdout else sys.stdout)  # stdout: the JSON alone
    data = drill_report.report_json(report)
    if args.json:
        write_json(args.json, data)
    if args.junit:
        write_atomically(args.junit, drill_report.report_junit(report, console_tail(report)), mode=0o644)
    if args.html:
        write_atomically(args.html, pages.render_html(data), mode=0o644)
        print(f"HTML report: {args.html}", file=sys.stderr)
    if args.markdown:
        write_atomically(args.markdown, pages.render_markdown(data), mode=0o644)
    return int(report.exit_code)


def _libvirt(args: argparse.Namespace, faults: list[str]) -> drill.DrillReport:
    for option, value in (("DIR", args.directory), ("--action", args.action), ("--machine", args.machine)):
        if value is not None:
            raise usage_error(f"{option} is for a built image; with --libvirt the domain's own definition applies")
    from wdimage.drill import libvirt as libvirt_drill  # libvirt-python is an optional extra

    return libvirt_drill.drill_libvirt(args.libvirt, args.connect, faults, yes_crash_it=args.yes_crash_it)


def _built_image(args: argparse.Namespace, faults: list[str]) -> drill.DrillReport:
    if args.directory is None:
        raise usage_error("give DIR (an output directory of 'wdimage build') or --libvirt DOMAIN")
    for option, value in (("--connect", args.connect), ("--yes-crash-it", args.yes_crash_it or None)):
        if value is not None:
            raise usage_error(f"{option} is for --libvirt DOMAIN")
    build = drill.load_build(args.directory)
    built_with = build.action
    if args.action:
        build = dataclasses.replace(build, action=Action(args.action))
    with scratch_scope() as scratch:
        report = drill.run_drill(build, faults, machine=args.machine, scratch=scratch)
    if build.action != built_with:
        report.warnings.append(f"action {build.action} instead of the manifest's {built_with} (--action)")
    return report


def console_tail(report: drill.DrillReport, lines: int = 40) -> str:
    """The end of the newest guest console kept for diagnosis ('' when the drill passed and kept nothing)."""
    if report.diagnostics is None:
        return ""
    logs = sorted(report.diagnostics.glob("*-console.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return ""
    return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])


def write_json(path: Path, data: dict) -> None:
    """To stdout for '-'; otherwise a temp file renamed over FILE, so a reader never sees half a report."""
    text = json.dumps(data, indent=2) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        return
    write_atomically(path, text, mode=0o600)
