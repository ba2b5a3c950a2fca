"""The drill's report for people (text), programs (JSON) and CI systems (JUnit XML, the only junitparser module)."""

import dataclasses
import datetime

from wdimage import __version__
from wdimage.drill.runner import DrillReport, FaultResult
from wdimage.jsonfile import DRILL_REPORT


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def fault_json(f: FaultResult, timeout: int, origin: float | None = None) -> dict:
    return {
        "fault": f.fault, "passed": f.passed, "action": f.action, "seconds_to_reset": f.seconds_to_reset,
        "ratio_to_timeout": _round(f.seconds_to_reset / timeout if f.seconds_to_reset else None, 3),
        "rebooted_armed": f.rebooted_armed, "seconds_back_armed": f.seconds_back_armed, "detail": f.detail,
        "outcome": f.outcome, "path": f.path, "reason": f.reason,
        "expected_window": [f.window.low, f.window.high] if f.window else None,
        "expected_why": f.window.why if f.window else None,
        "ratio_to_window": _round(f.ratio, 3), "skipped": f.skipped, "figures": f.figures or None,
        # schema 3: the scenario's moments in seconds since the drill started, the console of a failure
        "timeline": f.marks.relative(origin) if origin is not None and f.marks.fault is not None else None,
        "console_tail": f.console_tail or None,
    }


def report_json(report: DrillReport) -> dict:
    setup, build = report.setup, report.build
    return {
        "schema": DRILL_REPORT.schema,
        "target": report.target,
        "directory": str(build.directory) if build else None, "name": setup.name,
        "distro": build.distro if build else None, "release": build.release if build else None,
        "model": str(setup.model), "action": str(setup.action), "timeout": setup.timeout,
        "interval": setup.interval, "health": setup.health.to_json() if setup.health else None,
        "accel": report.accel, "accel_reason": report.accel_reason, "kernel": report.kernel or None,
        "machine": report.machine or None, "hypervisor": report.hypervisor or None, "wdimage": __version__,
        "started_at": datetime.datetime.fromtimestamp(report.started, datetime.timezone.utc).isoformat(
            timespec="seconds") if report.started is not None else None,
        "first_boot": report.first_boot.relative(report.started)
        if report.started is not None and report.first_boot.boot is not None else None,
        "boot_to_agent_seconds": _round(report.boot_to_agent_seconds),
        "boot_to_armed_seconds": _round(report.boot_to_armed_seconds),
        "boot_timeline": {k: _round(v, 2) if isinstance(v, float) else v
                          for k, v in report.boot.as_dict().items()} if report.boot else None,
        "checks": [dataclasses.asdict(c) for c in report.checks],
        "faults_requested": report.faults_requested,
        "faults": [fault_json(f, setup.timeout, report.started) for f in report.faults],
        "left_out": [{"fault": name, "why": why} for name, why in report.left_out],
        "warnings": report.warnings,
        "passed": report.passed,
        "error": report.error or None,
        "diagnostics": str(report.diagnostics) if report.diagnostics else None,
        "console_tail": report.console_tail or None,
    }


def timeline_text(boot) -> str:
    steps = [("the kernel ran the initramfs", boot.init),
             (f"armed by {'the initramfs' if boot.armed_by == 'initramfs' else boot.armed_by or 'the keepalive'}",
              boot.armed),
             ("the real root's init started", boot.real_root), ("the daemon took over", boot.daemon)]
    text = ", ".join(f"{what} {at:.1f}s" for what, at in sorted((s for s in steps if s[1] is not None),
                                                                 key=lambda s: s[1]))
    return text + (f"; {boot.handovers} hand-over(s) with the device left armed" if boot.handovers else "")


def render_text(report: DrillReport) -> str:
    setup, build = report.setup, report.build
    where = f"{build.distro} {build.release}, " if build else ""
    lines = [f"Drill of {report.target} ({where}{setup.model}, action {setup.action}, timeout {setup.timeout}s)"
             + (f" under {report.accel.upper()}" if report.accel else "")]
    if report.accel_reason:
        lines.append(f"  accelerator: {report.accel_reason}")
    if report.kernel:
        lines.append(f"  guest kernel: {report.kernel}")
    if report.boot_to_armed_seconds is not None:
        lines.append(f"  boot to armed: {report.boot_to_armed_seconds:.1f}s "
                     f"(guest agent after {report.boot_to_agent_seconds:.1f}s)")
        if report.boot and report.boot.armed is not None:
            lines.append(f"  boot timeline (guest uptime): {timeline_text(report.boot)}")
    lines += [f"  warning: {w}" for w in report.warnings]
    if report.checks:
        lines.append("Checks:")
        for c in report.checks:
            lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {c.title}: {c.seen}")
            if c.fix:
                lines.append(f"        fix: {c.fix}")
    if report.faults:
        lines.append("Faults:")
        for f in report.faults:
            verdict = "SKIP" if f.skipped else "PASS" if f.passed else "FAIL"
            lines.append(f"  {verdict}  {f.fault}: {f.skipped or f.detail}")
    skipped = report.faults_requested[len(report.faults):]
    if skipped:
        lines.append(f"Not run: {', '.join(skipped)} (the guest was not armed)")
    if report.left_out:
        lines.append("Left out of 'all': " + "; ".join(f"{n} ({why})" for n, why in report.left_out))
    if report.error:
        lines.append(f"Stopped: {report.error}")
    if report.diagnostics:
        lines.append(f"Console logs and QEMU output kept in {report.diagnostics}")
    lines.append(f"Result: {'PASSED' if report.passed else 'FAILED'}")
    return "\n".join(lines)


def report_junit(report: DrillReport, console_tail: str = "") -> str:
    """JUnit XML: one test case per readiness check and per scenario, with its timing; failures carry the detail
    and the end of the guest's console."""
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite(f"wdimage drill {report.setup.name}")
    classname = f"wdimage.drill.{report.setup.name}"
    for check in report.checks:
        case = TestCase(f"check {check.name}: {check.title}", classname=f"{classname}.checks")
        if not check.passed:  # the outcome first, then system-out: the order JUnit's consumers expect
            case.result = [Failure(f"{check.seen}; fix: {check.fix}" if check.fix else check.seen)]
        case.system_out = check.seen
        suite.add_testcase(case)
    for f in report.faults:
        case = TestCase(f"fault {f.fault}", classname=f"{classname}.faults",
                        time=f.seconds_to_reset if f.seconds_to_reset is not None else 0)
        if f.skipped:
            case.result = [Skipped(f.skipped)]
        elif not f.passed:
            failure = Failure(f.detail[:500] or "failed")
            failure.text = console_tail
            case.result = [failure]
        case.system_out = f.detail
        suite.add_testcase(case)
    for name in report.faults_requested[len(report.faults):]:
        case = TestCase(f"fault {name}", classname=f"{classname}.faults")
        case.result = [Skipped("not run: the guest was not armed")]
        suite.add_testcase(case)
    if report.error:
        case = TestCase("drill", classname=classname)
        error = Error(report.error[:500])
        error.text = console_tail
        case.result = [error]
        suite.add_testcase(case)
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.update_statistics()
    return xml.tostring().decode() if isinstance(xml.tostring(), bytes) else xml.tostring()


@dataclasses.dataclass(frozen=True)
class JunitCase:
    """One test case for junit_document: at most one of failure, error, skipped."""

    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None
    error: str | None = None
    skipped: str | None = None
    out: str = ""


def junit_document(suites: list[tuple[str, list[JunitCase]]]) -> str:
    """JUnit XML of named suites of cases: the one place besides report_junit that speaks junitparser (used by
    wdimage audit)."""
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    xml = JUnitXml()
    for name, cases in suites:
        suite = TestSuite(name)
        for c in cases:
            case = TestCase(c.name, classname=c.classname, time=round(c.seconds, 3))
            if c.failure is not None:
                case.result = [Failure(c.failure[:500])]
            elif c.error is not None:
                case.result = [Error(c.error[:500])]
            elif c.skipped is not None:
                case.result = [Skipped(c.skipped[:500])]
            if c.out:
                case.system_out = c.out
            suite.add_testcase(case)
        suite.update_statistics()
        xml.add_testsuite(suite)
    xml.update_statistics()
    text = xml.tostring()
    return text.decode() if isinstance(text, bytes) else text
