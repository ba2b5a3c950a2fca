"""wdimage drill DIR: boot a built image under QEMU, check that its watchdog is armed, then run each requested
scenario: faults the watchdog must answer (panic, kill, hang, ...) and controls that must not reset the guest
(healthy, stop, pause, migrate). Exit 0 only when every check and every scenario passed."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from wdimage import drill, drill_report, scenarios
from wdimage.errors import usage_error
from wdimage.fileio import write_atomically
from wdimage.models import Action


def _scenario_table() -> str:
    rows = [f"  {name:<14} {scenarios.SCENARIOS[name].outcome:<7} {scenarios.SCENARIOS[name].summary}"
            for name in scenarios.names()]
    return ("scenarios (--fault NAME; outcome: fire = the watchdog must fire with the image's action, reboot = the "
            "daemon must reboot the guest,\n quiet = nothing may happen for twice the window):\n" + "\n".join(rows) +
            "\n  all            every scenario the image supports, controls first (the default)")


def add_parser(sub) -> None:
    p = sub.add_parser("drill", help="boot a built image, crash it, prove the watchdog resets it",
                       description=__doc__, epilog=_scenario_table(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", type=Path, help="an output directory of 'wdimage build'")
    p.add_argument("--fault", action="append", choices=drill.FAULT_CHOICES, metavar="NAME",
                   help="a scenario to run (repeatable; see the list below; default: all)")
    p.add_argument("--action", choices=[str(a) for a in Action],
                   help="drill as if the image had been built with this --action: the image does not depend on "
                        "it, only QEMU's -action watchdog= does (default: the manifest's)")
    p.add_argument("--machine", choices=drill.MACHINES,
                   help="QEMU machine type (default: the model's: pc, or q35 for itco); e.g. q35 to drill "
                        "i6300esb beside q35's built-in iTCO")
    p.add_argument("--json", metavar="FILE", type=Path,
                   help="also write the report as JSON to FILE ('-': stdout, the summary then goes to stderr)")
    p.add_argument("--junit", metavar="FILE", type=Path,
                   help="also write a JUnit XML report to FILE: one test case per check and per scenario")
    p.set_defaults(func=_cmd)


def _check_target(option: str, path: Path | None) -> None:
    if path and str(path) != "-" and not path.parent.is_dir():
        raise usage_error(f"{option} {path}: directory {path.parent} does not exist")


def _cmd(args: argparse.Namespace) -> int:
    _check_target("--json", args.json)
    _check_target("--junit", args.junit)
    build = drill.load_build(args.directory)
    built_with = build.action
    if args.action:
        build = dataclasses.replace(build, action=Action(args.action))
    report = drill.run_drill(build, drill.faults_for(args.fault or ["all"]), machine=args.machine)
    if build.action != built_with:
        report.warnings.append(f"action {build.action} instead of the manifest's {built_with} (--action)")
    to_stdout = str(args.json) == "-"
    print(drill_report.render_text(report), file=sys.stderr if to_stdout else sys.stdout)  # stdout: the JSON alone
    if args.json:
        write_json(args.json, drill_report.report_json(report))
    if args.junit:
        write_atomically(args.junit, drill_report.report_junit(report, console_tail(report)), mode=0o644)
    return int(report.exit_code)


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
