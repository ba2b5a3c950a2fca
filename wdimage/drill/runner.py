"""The drill: boot a guest, check that the watchdog is armed, run each scenario (wdimage.drill.scenarios), report.

The runner speaks to guests only through wdimage.vm.guest (a QEMU process that wdimage starts from a built image,
or a libvirt domain): wdimage.drill.session boots them and waits until they are armed, wdimage.drill.watch
watches what follows each fault. It returns a DrillReport; wdimage.drill.report renders it (text, JSON, JUnit).
"""

import dataclasses
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from wdimage import log
from wdimage.drill.build_output import BuildOutput, load_build, setup_from_build  # noqa: F401  (re-exported)
from wdimage.drill.checks import (  # noqa: F401  (re-exported: the drill's public names)
    GUEST_PROBE,
    BootTimeline,
    Check,
    Holder,
    Probe,
    daemon_age,
    evaluate_checks,
    parse_holders,
    parse_sections,
    ping_interval,
    run_checks,
)
from wdimage.drill.scenarios import MARGIN_SECONDS, Context, Outcome, Scenario, Setup, names, select  # noqa: F401
from wdimage.drill.session import AGENT_TIMEOUT, Session  # noqa: F401  (AGENT_TIMEOUT re-exported)
from wdimage.drill.watch import WATCHERS, FaultResult, Marks
from wdimage.errors import ExitCode, WdimageError, usage_error
from wdimage.image import distros
from wdimage.models import MODELS, Model, machines_of  # noqa: F401  (Model re-exported)
from wdimage.vm import accel
from wdimage.vm.guest import Target, Unsupported
from wdimage.vm.jsonstream import ProtocolError
from wdimage.vm.launch import LaunchSpec, machine_type
from wdimage.vm.process import private_dir
from wdimage.vm.qemu_guest import QemuTarget

FAULT_CHOICES = [*names(), "all"]
Fault = str  # a scenario name


def requested(choices: Sequence[str] | None) -> list[str]:
    """`--fault` values as given (repeatable; default `all`), without repeats. `all` stays `all`: it means
    every scenario this image can run, which only the image's setup decides (scenarios.select)."""
    return list(dict.fromkeys(choices or ["all"]))




# --- results ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DrillReport:
    """The whole drill: the readiness checks of the first boot, then each scenario's FaultResult
    (wdimage.drill.watch)."""

    target: str  # what was drilled, in words
    setup: Setup
    faults_requested: list[str]
    build: "BuildOutput | None" = None
    accel: str = ""
    accel_reason: str = ""
    kernel: str = ""  # uname -r in the guest
    boot_to_agent_seconds: float | None = None
    boot_to_armed_seconds: float | None = None
    boot: BootTimeline | None = None  # the first boot's seconds, in the guest's uptime
    checks: list[Check] = dataclasses.field(default_factory=list)
    faults: list[FaultResult] = dataclasses.field(default_factory=list)
    left_out: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # from `all`, with the reason
    warnings: list[str] = dataclasses.field(default_factory=list)
    diagnostics: Path | None = None  # the kept private dir (console logs) after a failure
    error: str = ""  # why the drill stopped early, if it did
    machine: str = ""  # the QEMU machine type, where wdimage chose it
    hypervisor: str = ""  # e.g. "QEMU 7.2.0 (Debian 1:7.2+dfsg-7+deb12u16)", where the backend says
    started: float | None = None  # time.time() when the drill began: the origin of the scenarios' timelines
    first_boot: Marks = dataclasses.field(default_factory=Marks)  # the first boot: booted, armed (and by whom)
    console_tail: str = ""  # the end of the guest's console when the drill failed before any scenario

    @property
    def passed(self) -> bool:
        return (not self.error and bool(self.checks) and all(c.passed for c in self.checks)
                and len(self.faults) == len(self.faults_requested) and all(f.passed for f in self.faults))

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.FAILED


# --- the runner ---------------------------------------------------------------------------------------------

# `drill --machine`: every machine type a model lives on (models.MODELS), refused models' aside.
MACHINES = tuple(dict.fromkeys(m for about in MODELS.values() if not about.refused
                               for machines in about.machines.values() for m in machines))


def run_drill(build: BuildOutput, faults: Sequence[str], prepare: Sequence[str] = (),
              machine: str | None = None, scratch: Path | None = None) -> DrillReport:
    """The drill of a built image: guests booted by wdimage under QEMU (KVM where a probe boot shows it works),
    on the model's machine type or `machine`; its private directory under `scratch` (default: TMPDIR)."""
    if machine is not None and machine not in machines_of(build.model, build.arch):
        raise usage_error(f"--machine {machine!r}: {build.model} on {build.arch} lives on "
                          f"{', '.join(machines_of(build.model, build.arch))}")
    setup = setup_from_build(build)
    try:  # a fault this image cannot run: exit 2 naming the build option, before any boot
        select(list(faults), setup, frozenset())
    except ValueError as e:
        raise usage_error(str(e)) from None
    report = DrillReport(target=str(build.directory), setup=setup, faults_requested=[], build=build)
    if warning := distros.drill_agent_warning(build.distro, build.drill_agent):
        report.warnings.append(warning)
    cpus = drill_cpus()
    workdir = private_dir(scratch)
    target = None
    try:
        base = LaunchSpec(model=build.model, action=build.action, image=build.image, kernel=build.kernel,
                          initrd=build.initrd, cmdline=build.kernel_cmdline, machine=machine, seed=build.seed,
                          arch=build.arch)
        if cpus is not None:
            base = dataclasses.replace(base, cpus=cpus)
            log.info(f"guest: {cpus} vCPU(s) (WDIMAGE_DRILL_CPUS; the image's launch has {LaunchSpec.cpus})")
        probe_spec = dataclasses.replace(base, accel="kvm", qmp_socket=workdir / "probe-qmp.sock",
                                         serial=f"file:{workdir / 'probe-console.log'}")
        target = QemuTarget(dataclasses.replace(base, accel="tcg"), workdir, build.name)
        report.accel, report.accel_reason = _accelerator(probe_spec, target)
        target.base = dataclasses.replace(base, accel=report.accel)
        report.machine = machine_type(base)
        log.info(f"accelerator: {report.accel} ({report.accel_reason})")
        run_scenarios(target, report, faults, prepare)
    except WdimageError as e:
        report.error = e.message
    finally:
        if target is not None:
            target.drop_early()  # started beside the probe and never taken (an error before the first boot)
        if report.passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report.diagnostics = workdir
    return report


CPUS_RE = re.compile(r"[1-9][0-9]?")


def drill_cpus() -> int | None:
    """WDIMAGE_DRILL_CPUS: the drill's guests with this many vCPUs instead of the image's launch's. Several TCG
    guests on few cores waste less with one vCPU each (the test suite's two workers: measured 12-15 % less
    time to a settled boot); exit 2 on anything but 1-99."""
    value = os.environ.get("WDIMAGE_DRILL_CPUS", "")
    if not value:
        return None
    if not CPUS_RE.fullmatch(value):
        raise usage_error(f"WDIMAGE_DRILL_CPUS={value!r}: expected a number of vCPUs, 1-99")
    return int(value)


def _accelerator(probe_spec: LaunchSpec, target: QemuTarget) -> tuple[str, str]:
    """KVM or TCG (wdimage.vm.accel). When only the KVM probe can tell, the first boot starts under TCG beside
    it: where KVM fails (as here, DESIGN.md) that boot is the probe's seconds further along; where KVM works, it
    is stopped and the drill boots under KVM."""
    if answer := accel.known(probe_spec):
        return answer
    log.info("the first boot starts under TCG beside the KVM probe (kept if KVM cannot boot this guest)")
    target.start_early()
    answer = None
    try:
        answer = accel.probe(probe_spec, target.workdir)
        return answer
    finally:
        if answer is None or answer[0] != "tcg":
            target.drop_early()


def run_scenarios(target: Target, report: DrillReport, faults: Sequence[str], prepare: Sequence[str] = ()) -> None:
    """Boot, check, then each scenario in turn; fills `report`. Scenarios the image cannot run are refused
    (exit 2 naming the build option) when named, left out with the reason under `all`."""
    try:
        scenarios, report.left_out = select(list(faults), report.setup, target.capabilities)
    except ValueError as e:
        raise usage_error(str(e)) from None
    report.faults_requested = [s.name for s in scenarios]
    report.started = time.time()
    session = Session(target, report.setup)
    try:
        with log.step(f"Booting {target.describe()} and checking that the watchdog is armed"):
            guest = session.boot()
            probe, to_agent, to_armed = session.wait_armed(guest.started_at, prepare)
            report.hypervisor = guest.hypervisor()
            report.first_boot = Marks(boot=session.booted, armed=session.armed, armed_by=session.armed_by,
                                      end=time.time())
            report.checks, report.kernel = probe.checks, probe.kernel
            report.boot_to_agent_seconds = to_agent
            report.boot_to_armed_seconds = to_armed if probe.armed else None
            report.boot = probe.boot
            for check in probe.checks:
                log.info(f"{'ok' if check.passed else 'FAILED'}: {check.title}: {check.seen}")
        if not probe.armed:
            report.console_tail = _tail(session)
            return
        session.setup = report.setup = dataclasses.replace(report.setup, interval=probe.interval)
        for number, scenario in enumerate(scenarios, 1):
            report.faults.append(run_scenario(session, scenario, f"{number}/{len(scenarios)}"))
    except (TimeoutError, ConnectionError, ProtocolError) as e:
        report.error = getattr(e, "message", None) or str(e) or type(e).__name__
        report.console_tail = _tail(session)
    finally:
        session.close()


CONSOLE_TAIL_LINES = 40


def _tail(session: Session) -> str:
    """The end of the current guest's console ('' when there is none, or it cannot be read)."""
    if session.guest is None:
        return ""
    try:
        return session.guest.console_tail(CONSOLE_TAIL_LINES)
    except (OSError, ConnectionError, ProtocolError, Unsupported):
        return ""


def run_scenario(session: Session, scenario: Scenario, count: str = "") -> FaultResult:
    setup = session.setup
    missing = scenario.needs - session.target.capabilities
    if missing:
        reason = f"{session.target.describe()} cannot {', '.join(sorted(missing))}"
        log.info(f"skipped '{scenario.name}': {reason}")
        return FaultResult(scenario.name, True, outcome=str(scenario.outcome), skipped=reason)
    window = scenario.window(setup)
    title = {Outcome.FIRE: "the watchdog must fire", Outcome.REBOOT: "the daemon must reboot the guest",
             Outcome.QUIET: "nothing may happen",
             Outcome.PROOF: "the watchdog must fire, with the action none for the moment"}
    with log.step(f"{f'[{count}] ' if count else ''}'{scenario.name}': {scenario.summary}"):
        not_armed = session.ensure_armed()
        marks = Marks(boot=session.booted, armed=session.armed, armed_by=session.armed_by)
        if not_armed:
            marks.end = time.time()
            return FaultResult(scenario.name, False, outcome=str(scenario.outcome), window=window,
                               detail=f"not armed before the fault: {not_armed}", marks=marks,
                               console_tail=_tail(session))
        ctx = Context(session.guest, setup, session.probe)
        outcome, why = scenario.outcome, ""
        if scenario.expect and (override := scenario.expect(ctx)):
            outcome, why = override
        log.info(f"{title[outcome]}: {window.why}")
        result = FaultResult(scenario.name, False, outcome=str(outcome), window=window, marks=marks)
        try:
            WATCHERS[outcome](session, scenario, ctx, result)
        except Unsupported as e:
            result.passed, result.skipped = True, str(e)
        if why:
            result.detail += f"; {why}"
        if ctx.notes:
            result.detail += f"; {'; '.join(ctx.notes)}"
        result.figures.update(ctx.figures)
        result.marks.end = time.time()
        if not result.passed and not result.skipped:
            result.console_tail = _tail(session)
        log.info(f"{'ok' if result.passed else 'FAILED'}: {result.detail}")
        if not (result.passed and result.rebooted_armed is not False and session.guest is not None
                and session.probe is not None and session.probe.armed):
            session.close()  # the next scenario gets a fresh boot
        return result


