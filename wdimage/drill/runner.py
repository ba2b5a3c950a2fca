"""The drill: boot a guest, check that the watchdog is armed, run each scenario (wdimage.drill.scenarios), report.

The runner speaks to guests only through wdimage.vm.guest (a QEMU process that wdimage starts from a built image,
or a libvirt domain) and returns a DrillReport; wdimage.drill.report renders it (text, JSON, JUnit).
"""

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wdimage import log
from wdimage.drill import health as health_drill
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
from wdimage.drill.scenarios import MARGIN_SECONDS, Context, Outcome, Scenario, Setup, Window, names, select
from wdimage.errors import ExitCode, WdimageError, usage_error
from wdimage.image import distros
from wdimage.models import Action, Model
from wdimage.vm.guest import Event, EventKind, Guest, Target, Unsupported
from wdimage.vm.jsonstream import ProtocolError
from wdimage.vm.launch import LaunchSpec
from wdimage.vm.process import choose_accel, private_dir
from wdimage.vm.qemu_guest import QemuTarget

AGENT_TIMEOUT = 240  # seconds from QEMU start (or a reset) to an answering guest agent; TCG on a busy host
BOOT_SETTLE_TIMEOUT = 120  # seconds for systemd to finish starting units once the agent answers
CHECK_RETRY_SECONDS = 10  # how long failing checks are retried (a daemon still starting) before they count
CHECK_RETRY_WITHOUT_SYSTEMD = 60  # OpenRC has no "boot finished" to wait for: poll the checks longer
AFTERMATH_SECONDS = 15  # after the WATCHDOG event: how long to watch what the hypervisor and the guest do

FAULT_CHOICES = [*names(), "all"]
Fault = str  # a scenario name


def requested(choices: Sequence[str] | None) -> list[str]:
    """`--fault` values as given (repeatable; default `all`), without repeats. `all` stays `all`: it means
    every scenario this image can run, which only the image's setup decides (scenarios.select)."""
    return list(dict.fromkeys(choices or ["all"]))


def faults_for(choices: str | Sequence[str]) -> list[str]:
    """`--fault` values as scenario names in order, `all` expanded to every scenario, without repeats."""
    choices = [choices] if isinstance(choices, str) else list(choices)
    ordered = names() if "all" in choices else choices
    return list(dict.fromkeys(ordered))


# --- results ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FaultResult:
    """One scenario's result. The field names up to `detail` are the JSON report's since its first schema."""

    fault: str
    passed: bool
    action: str | None = None  # the WATCHDOG event's action; None when no event came
    seconds_to_reset: float | None = None  # fault to the event that answered it (WATCHDOG, or RESET on a reboot)
    rebooted_armed: bool | None = None  # None where nothing was to come back
    seconds_back_armed: float | None = None  # the event to checks passing again
    detail: str = ""  # what happened, in words
    outcome: str = ""  # what was expected: fire, reboot, quiet
    path: str | None = None  # what answered: "watchdog" (the hardware timer) or "soft-reboot" (the daemon)
    reason: str | None = None  # RESET/SHUTDOWN reason, or what the daemon logged
    window: Window | None = None  # expected seconds from the fault
    skipped: str | None = None  # why it was not run on this guest
    figures: dict = dataclasses.field(default_factory=dict)  # e.g. the migration's figures

    @property
    def ratio(self) -> float | None:
        """Measured seconds against the window's upper bound (goal: <= 1.1)."""
        if self.seconds_to_reset is None or self.window is None or not self.window.high:
            return None
        return self.seconds_to_reset / self.window.high


@dataclasses.dataclass
class DrillReport:
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

    @property
    def passed(self) -> bool:
        return (not self.error and bool(self.checks) and all(c.passed for c in self.checks)
                and len(self.faults) == len(self.faults_requested) and all(f.passed for f in self.faults))

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.FAILED


# --- the runner ---------------------------------------------------------------------------------------------

class Session:
    """The current guest and its last readiness probe; a guest that is still armed serves the next scenario."""

    def __init__(self, target: Target, setup: Setup, report: DrillReport):
        self.target = target
        self.setup = setup
        self.report = report
        self.guest: Guest | None = None
        self.probe: Probe | None = None

    def boot(self) -> Guest:
        self.close()
        self.guest = self.target.boot()
        return self.guest

    def wait_armed(self, since: float, prepare: Sequence[str] = ()) -> tuple[Probe, float, float]:
        """Once the guest agent answers and the boot settled: (probe, seconds to agent, seconds to armed), the
        seconds counted from `since` (a time.monotonic()). Failing checks are retried a little (a daemon still
        starting), then count as failed."""
        guest = self.guest
        guest.wait_agent(AGENT_TIMEOUT)
        to_agent = time.monotonic() - since
        log.info(f"guest agent answered after {to_agent:.1f}s")
        retry = CHECK_RETRY_SECONDS
        try:  # systemd: wait for the start jobs
            settle = guest.run("if [ -d /run/systemd/system ]; then systemctl is-system-running --wait; "
                               "else echo no-systemd; fi", timeout=BOOT_SETTLE_TIMEOUT)
            if settle.stdout.strip() == "no-systemd":
                retry = CHECK_RETRY_WITHOUT_SYSTEMD  # OpenRC: nothing to wait on; the checks are polled
        except TimeoutError:
            log.info(f"the guest's boot did not settle within {BOOT_SETTLE_TIMEOUT}s; checking anyway")
            guest.wait_agent(30)  # a timed-out command leaves the channel to resynchronise
            retry = CHECK_RETRY_WITHOUT_SYSTEMD  # start jobs still queued (the daemon after the network): poll
        for command in prepare:
            result = guest.run(command, timeout=60)
            output = (result.stdout + result.stderr).strip()
            log.info(f"guest$ {command} -> exit {result.exitcode}{': ' + output if output else ''}")
        deadline = time.monotonic() + retry
        while True:
            probe = run_checks(guest, self.setup.model, self.setup.timeout)
            if probe.armed or time.monotonic() > deadline:
                self.probe = probe
                # Armed when the daemon holding the device started (guest clocks), not when we happened to look.
                armed = probe.daemon_started if probe.daemon_started is not None else time.monotonic()
                return probe, to_agent, max(armed - since, 0.0)
            time.sleep(1)

    def ensure_armed(self) -> str | None:
        """A guest that is up and armed for the next scenario (booting one if needed); None, or what failed."""
        if self.guest is not None and self.probe is not None and self.probe.armed and self.guest.status() == "running":
            return None
        guest = self.boot()
        probe, _, _ = self.wait_armed(guest.started_at)
        return None if probe.armed else ", ".join(c.title for c in probe.checks if not c.passed)

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
        self.guest, self.probe = None, None


MACHINES = ("pc", "q35")


def run_drill(build: BuildOutput, faults: Sequence[str], prepare: Sequence[str] = (),
              machine: str | None = None, scratch: Path | None = None) -> DrillReport:
    """The drill of a built image: guests booted by wdimage under QEMU (KVM where a probe boot shows it works),
    on the model's machine type or `machine`; its private directory under `scratch` (default: TMPDIR)."""
    if machine is not None and (machine not in MACHINES or build.model is Model.ITCO and machine != "q35"):
        raise usage_error(f"--machine {machine!r}: expected one of {', '.join(MACHINES)}"
                          f"{' (itco lives on q35)' if build.model is Model.ITCO else ''}")
    setup = setup_from_build(build)
    try:  # a fault this image cannot run: exit 2 naming the build option, before any boot
        select(list(faults), setup, frozenset())
    except ValueError as e:
        raise usage_error(str(e)) from None
    report = DrillReport(target=str(build.directory), setup=setup, faults_requested=[], build=build)
    if warning := distros.drill_agent_warning(build.distro, build.drill_agent):
        report.warnings.append(warning)
    workdir = private_dir(scratch)
    try:
        base = LaunchSpec(model=build.model, action=build.action, image=build.image, kernel=build.kernel,
                          initrd=build.initrd, cmdline=build.kernel_cmdline, machine=machine)
        probe_spec = dataclasses.replace(base, accel="kvm", qmp_socket=workdir / "probe-qmp.sock",
                                         serial=f"file:{workdir / 'probe-console.log'}")
        report.accel, report.accel_reason = choose_accel(probe_spec, workdir)
        log.info(f"accelerator: {report.accel} ({report.accel_reason})")
        target = QemuTarget(dataclasses.replace(base, accel=report.accel), workdir, build.name)
        run_scenarios(target, report, faults, prepare)
    except WdimageError as e:
        report.error = e.message
    finally:
        if report.passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report.diagnostics = workdir
    return report


def run_scenarios(target: Target, report: DrillReport, faults: Sequence[str], prepare: Sequence[str] = ()) -> None:
    """Boot, check, then each scenario in turn; fills `report`. Scenarios the image cannot run are refused
    (exit 2 naming the build option) when named, left out with the reason under `all`."""
    try:
        scenarios, report.left_out = select(list(faults), report.setup, target.capabilities)
    except ValueError as e:
        raise usage_error(str(e)) from None
    report.faults_requested = [s.name for s in scenarios]
    session = Session(target, report.setup, report)
    try:
        with log.step(f"Booting {target.describe()} and checking that the watchdog is armed"):
            guest = session.boot()
            probe, to_agent, to_armed = session.wait_armed(guest.started_at, prepare)
            report.checks, report.kernel = probe.checks, probe.kernel
            report.boot_to_agent_seconds = to_agent
            report.boot_to_armed_seconds = to_armed if probe.armed else None
            report.boot = probe.boot
            for check in probe.checks:
                log.info(f"{'ok' if check.passed else 'FAILED'}: {check.title}: {check.seen}")
        if not probe.armed:
            return
        session.setup = report.setup = dataclasses.replace(report.setup, interval=probe.interval)
        for scenario in scenarios:
            report.faults.append(run_scenario(session, scenario))
    except (TimeoutError, ConnectionError, ProtocolError) as e:
        report.error = getattr(e, "message", None) or str(e) or type(e).__name__
    finally:
        session.close()


def run_scenario(session: Session, scenario: Scenario) -> FaultResult:
    setup = session.setup
    missing = scenario.needs - session.target.capabilities
    if missing:
        reason = f"{session.target.describe()} cannot {', '.join(sorted(missing))}"
        log.info(f"skipped '{scenario.name}': {reason}")
        return FaultResult(scenario.name, True, outcome=str(scenario.outcome), skipped=reason)
    window = scenario.window(setup)
    title = {Outcome.FIRE: "the watchdog must fire", Outcome.REBOOT: "the daemon must reboot the guest",
             Outcome.QUIET: "nothing may happen"}
    with log.step(f"'{scenario.name}': {scenario.summary}"):
        not_armed = session.ensure_armed()
        if not_armed:
            return FaultResult(scenario.name, False, outcome=str(scenario.outcome), window=window,
                               detail=f"not armed before the fault: {not_armed}")
        ctx = Context(session.guest, setup, session.probe)
        outcome, why = scenario.outcome, ""
        if scenario.expect and (override := scenario.expect(ctx)):
            outcome, why = override
        log.info(f"{title[outcome]}: {window.why}")
        result = FaultResult(scenario.name, False, outcome=str(outcome), window=window)
        try:
            WATCHERS[outcome](session, scenario, ctx, result)
        except Unsupported as e:
            result.passed, result.skipped = True, str(e)
        if why:
            result.detail += f"; {why}"
        if ctx.notes:
            result.detail += f"; {'; '.join(ctx.notes)}"
        result.figures.update(ctx.figures)
        log.info(f"{'ok' if result.passed else 'FAILED'}: {result.detail}")
        if not (result.passed and result.rebooted_armed is not False and session.guest is not None
                and session.probe is not None and session.probe.armed):
            session.close()  # the next scenario gets a fresh boot
        return result


def _deadline(wall: float) -> float:
    """A time.time() as a time.monotonic() deadline."""
    return time.monotonic() + wall - time.time()


def _inject(ctx: Context, scenario: Scenario) -> float:
    ctx.guest.clear_events()
    fault_at = time.time()
    scenario.inject(ctx)
    return fault_at


def _others(guest: Guest) -> str:
    seen = [str(e) for e in guest.events()]
    return f"; other events: {', '.join(seen)}" if seen else ""


def watch_fire(session: Session, scenario: Scenario, ctx: Context, result: FaultResult) -> None:
    """The hardware watchdog must fire within the window, with the configured action; then the action's
    aftermath (reset: back and armed; poweroff: gone; pause: paused; ...)."""
    guest, setup, window = ctx.guest, ctx.setup, result.window
    fault_at = _inject(ctx, scenario)
    limit = window.high + MARGIN_SECONDS
    event = guest.wait_event({EventKind.WATCHDOG}, _deadline(fault_at + limit))
    if event is None:
        result.detail = f"no WATCHDOG event within {limit:.0f}s of the fault; status: {guest.status()}{_others(guest)}"
        if any(e.kind is EventKind.RESET for e in guest.events()):
            result.detail += " (the guest reset itself, not through the watchdog)"
        return
    seconds = round(event.time - fault_at, 2)
    result.action, result.seconds_to_reset, result.path = event.action, seconds, "watchdog"
    result.passed = event.action == setup.action and seconds <= limit
    result.detail = (f"WATCHDOG {event.action} {seconds:.1f}s after the fault "
                     f"(expected {_span(window)}: {window.why})")
    if event.action != setup.action:
        result.detail += f"; expected action {setup.action}"
    ok, said = AFTERMATH.get(Action(event.action), _stays)(session, ctx, result, event)
    result.passed = result.passed and ok
    result.detail += f"; {said}"


def watch_reboot(session: Session, scenario: Scenario, ctx: Context, result: FaultResult) -> None:
    """The daemon's health test must fail and the daemon reboot the guest (or, last resort, the watchdog fire);
    then the guest must come back armed."""
    guest, window = ctx.guest, result.window
    fault_at = _inject(ctx, scenario)
    limit = window.high + MARGIN_SECONDS
    event = guest.wait_event({EventKind.RESET, EventKind.WATCHDOG, EventKind.SHUTDOWN}, _deadline(fault_at + limit))
    if event is None:
        result.detail = f"no reboot within {limit:.0f}s of the fault; status: {guest.status()}{_others(guest)}"
        return
    seconds = round(event.time - fault_at, 2)
    if scenario.restore:  # e.g. the link back up, or the rebooted guest would fail the same test again
        scenario.restore(ctx)
    result.seconds_to_reset, result.reason = seconds, event.reason
    result.path = "watchdog" if event.kind is EventKind.WATCHDOG else "soft-reboot"
    result.action = event.action
    result.passed = seconds <= limit
    how = (f"WATCHDOG {event.action}" if event.kind is EventKind.WATCHDOG else f"{event}")
    result.detail = f"{how} {seconds:.1f}s after the fault (expected {_span(window)}: {window.why})"
    if event.kind is EventKind.SHUTDOWN or (event.kind is EventKind.WATCHDOG and event.action != "reset"):
        result.rebooted_armed = False
        result.detail += "; the guest did not reboot"
        result.passed = False
        return
    if not _back_armed(session, ctx, result, event)[0]:
        return
    _daemon_said(ctx, result, event)


def _daemon_said(ctx: Context, result: FaultResult, event: Event) -> None:
    """The reason the daemon logged before going down (its journal, kept across the reboot), and so the path:
    its soft reboot ends with the hardware timer set to 1 s (a WATCHDOG event) or reboot(2) (a RESET)."""
    try:
        said = health_drill.read_reason(ctx.guest)
    except (TimeoutError, ConnectionError) as e:
        said, why = None, f"the journal could not be read: {e or type(e).__name__}"
    else:
        why = "the daemon logged no shutdown before it (journalctl -b -1 -t watchdog)"
    if said:
        result.reason = said
        result.path = "soft-reboot"
        ended = "the hardware timer set to 1s" if event.kind is EventKind.WATCHDOG else "reboot(2)"
        result.detail += f"; the daemon's soft reboot ({said}), ended by {ended}"
    else:
        result.passed = False
        result.detail += f"; not the daemon's doing: {why}"


def watch_quiet(session: Session, scenario: Scenario, ctx: Context, result: FaultResult) -> None:
    """A control: nothing may happen for twice the window after the injection; the guest stays armed."""
    guest, window = ctx.guest, result.window
    _inject(ctx, scenario)
    quiet = 2 * window.high
    event = guest.wait_event({EventKind.WATCHDOG, EventKind.RESET, EventKind.SHUTDOWN, EventKind.EXITED},
                             time.monotonic() + quiet)
    if event is not None:
        result.detail = f"{event} came, where nothing may happen ({window.why}){_others(guest)}"
        return
    result.detail = f"no WATCHDOG or RESET for {quiet:.0f}s (twice {window.high:.0f}s: {window.why})"
    problem = scenario.restore(ctx) if scenario.restore else None
    if problem:
        result.detail += f"; {problem}"
        return
    probe = run_checks(ctx.guest, ctx.setup.model, ctx.setup.timeout)
    deadline = time.monotonic() + CHECK_RETRY_SECONDS
    while not probe.armed and time.monotonic() < deadline:
        time.sleep(1)
        probe = run_checks(ctx.guest, ctx.setup.model, ctx.setup.timeout)
    session.probe = probe
    result.passed = probe.armed
    result.detail += "; still armed afterwards" if probe.armed else (
        "; not armed afterwards: " + "; ".join(f"{c.title}: {c.seen}" for c in probe.checks if not c.passed))


WATCHERS: dict[Outcome, Callable[[Session, Scenario, Context, FaultResult], None]] = {
    Outcome.FIRE: watch_fire, Outcome.REBOOT: watch_reboot, Outcome.QUIET: watch_quiet}


def _span(window: Window) -> str:
    return f"{window.high:.0f}s" if window.low == window.high else f"{window.low:.0f}-{window.high:.0f}s"


# --- after the WATCHDOG event: what each action does, and what the drill checks ---------------------------

def _back_armed(session: Session, ctx: Context, result: FaultResult, event: Event) -> tuple[bool, str]:
    """After a reset the hypervisor reboots the guest in the same process: it must come back armed."""
    since = time.monotonic() - (time.time() - event.time)
    try:
        probe, _, to_armed = session.wait_armed(since)
    except (TimeoutError, ConnectionError, ProtocolError) as e:
        result.rebooted_armed = False
        result.passed = False
        said = f"the guest did not come back: {e}"
    else:
        result.rebooted_armed = probe.armed
        result.passed = result.passed and probe.armed
        if probe.armed:
            result.seconds_back_armed = round(to_armed, 1)
            said = f"back and armed {to_armed:.1f}s after the reset"
        else:
            said = "came back but not armed: " + "; ".join(f"{c.title}: {c.seen}" for c in probe.checks if not c.passed)
    if result.outcome == Outcome.REBOOT:
        result.detail += f"; {said}"
    return bool(result.rebooted_armed), said


def _exited(session: Session, ctx: Context, result: FaultResult, event: Event) -> tuple[bool, str]:
    gone = ctx.guest.wait_event({EventKind.EXITED}, time.monotonic() + AFTERMATH_SECONDS)
    session.probe = None
    return gone is not None, "QEMU then: exited" if gone else f"expected the guest to power off; status {ctx.guest.status()}"


def _paused(session: Session, ctx: Context, result: FaultResult, event: Event) -> tuple[bool, str]:
    status = ctx.guest.status()
    session.probe = None
    return status in ("watchdog", "paused"), f"QEMU then: {status}"


def _stays(session: Session, ctx: Context, result: FaultResult, event: Event) -> tuple[bool, str]:
    """none, debug: the event only; the guest is left as the fault left it."""
    time.sleep(2)
    session.probe = None
    return ctx.guest.status() == "running", f"event only, the guest is left as it was; QEMU then: {ctx.guest.status()}"


def _shutdown(session: Session, ctx: Context, result: FaultResult, event: Event) -> tuple[bool, str]:
    """An ACPI shutdown request: a live kernel obeys it, a crashed one cannot (the guest stays down)."""
    came = ctx.guest.wait_event({EventKind.SHUTDOWN, EventKind.EXITED}, time.monotonic() + AFTERMATH_SECONDS)
    session.probe = None
    crashed = result.fault in ("panic", "migrate-panic")
    if came is None:
        return crashed, (f"ACPI shutdown requested; the crashed guest cannot obey it and stays down (QEMU then: "
                         f"{ctx.guest.status()})" if crashed else "ACPI shutdown requested, but the live guest did not shut down")
    return not crashed, f"ACPI shutdown requested; the guest obeyed: {came}"


NMI_MARKS = ("NMI received", "NMI:", "Uhhuh")


def _nmi(session: Session, ctx: Context, result: FaultResult, event: Event) -> tuple[bool, str]:
    """inject-nmi: the NMI's effect is what the guest kernel prints on its console."""
    deadline = time.monotonic() + AFTERMATH_SECONDS
    while True:
        lines = [line.strip() for line in ctx.guest.console_tail(80).splitlines() if any(m in line for m in NMI_MARKS)]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(1)
    session.probe = None
    if lines:
        return True, f"the guest's console: {lines[-1]}"
    return False, "no NMI message on the guest's console"


AFTERMATH: dict[Action, Callable[[Session, Context, FaultResult, Event], tuple[bool, str]]] = {
    Action.RESET: _back_armed, Action.POWEROFF: _exited, Action.PAUSE: _paused, Action.SHUTDOWN: _shutdown,
    Action.NONE: _stays, Action.DEBUG: _stays, Action.INJECT_NMI: _nmi,
}
