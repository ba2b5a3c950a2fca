"""What follows a fault: each outcome's watcher (FIRE, REBOOT, QUIET) waits for the hypervisor's events within
the scenario's window and fills the scenario's FaultResult; after a WATCHDOG event, the configured action's
aftermath (AFTERMATH: reset back armed, poweroff gone, pause paused, ...) is checked too."""

import dataclasses
import time
from collections.abc import Callable

from wdimage import log
from wdimage.drill import health as health_drill
from wdimage.drill import proof
from wdimage.drill.checks import run_checks
from wdimage.drill.scenarios import MARGIN_SECONDS, Context, Outcome, Scenario
from wdimage.drill.session import CHECK_RETRY_SECONDS, Session
from wdimage.drill.windows import Window
from wdimage.models import Action
from wdimage.vm.guest import Event, EventKind, Guest
from wdimage.vm.jsonstream import ProtocolError

AFTERMATH_SECONDS = 15  # after the WATCHDOG event: how long to watch what the hypervisor and the guest do


@dataclasses.dataclass
class Marks:
    """A scenario's moments on the wall clock (time.time()), for the report's timeline: the boot (or reset) of
    the guest that served it, when that guest was armed and by whom, the fault, the event that answered it (the
    WATCHDOG event, or the RESET of the daemon's reboot), the RESET that followed, armed again, and the end of
    the watch. None where it did not happen."""

    boot: float | None = None
    armed: float | None = None
    armed_by: str = ""
    fault: float | None = None
    event: float | None = None
    event_label: str = ""  # e.g. "WATCHDOG reset", "RESET guest-reset"
    reset: float | None = None
    armed_again: float | None = None
    armed_again_by: str = ""
    end: float | None = None

    def relative(self, origin: float) -> dict:
        """Seconds since `origin` (the drill's start), for the JSON report."""
        return {key: (round(value - origin, 2) if isinstance(value, float) else value or None)
                for key, value in dataclasses.asdict(self).items()}


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
    marks: Marks = dataclasses.field(default_factory=Marks)  # the timeline
    console_tail: str = ""  # the end of the guest's console when the scenario failed

    @property
    def ratio(self) -> float | None:
        """Measured seconds against the window's upper bound (goal: <= 1.1)."""
        if self.seconds_to_reset is None or self.window is None or not self.window.high:
            return None
        return self.seconds_to_reset / self.window.high


def _deadline(wall: float) -> float:
    """A time.time() as a time.monotonic() deadline."""
    return time.monotonic() + wall - time.time()


def _inject(ctx: Context, scenario: Scenario, result: FaultResult) -> float:
    ctx.guest.clear_events()
    fault_at = result.marks.fault = time.time()
    scenario.inject(ctx)
    return fault_at


def _answered(result: FaultResult, event: Event) -> None:
    result.marks.event, result.marks.event_label = event.time, str(event)


def _others(guest: Guest) -> str:
    seen = [str(e) for e in guest.events()]
    return f"; other events: {', '.join(seen)}" if seen else ""


def watch_fire(session: Session, scenario: Scenario, ctx: Context, result: FaultResult) -> None:
    """The hardware watchdog must fire within the window, with the configured action; then the action's
    aftermath (reset: back and armed; poweroff: gone; pause: paused; ...)."""
    guest, setup, window = ctx.guest, ctx.setup, result.window
    fault_at = _inject(ctx, scenario, result)
    limit = window.high + MARGIN_SECONDS
    with log.waiting(f"the WATCHDOG event (expected {_span(window)} after the fault)", at_most=limit):
        event = guest.wait_event({EventKind.WATCHDOG}, _deadline(fault_at + limit))
    if event is None:
        result.detail = f"no WATCHDOG event within {limit:.0f}s of the fault; status: {guest.status()}{_others(guest)}"
        if any(e.kind is EventKind.RESET for e in guest.events()):
            result.detail += " (the guest reset itself, not through the watchdog)"
        return
    seconds = round(event.time - fault_at, 2)
    _answered(result, event)
    result.action, result.seconds_to_reset, result.path = event.action, seconds, "watchdog"
    result.passed = event.action == setup.action and seconds <= limit
    result.detail = (f"WATCHDOG {event.action} {seconds:.1f}s after the fault "
                     f"(expected {_span(window)}: {window.why})")
    if event.action != setup.action:
        result.detail += f"; expected action {setup.action}"
    ok, said = AFTERMATH.get(Action(event.action), _stays)(session, scenario, ctx, result, event)
    result.passed = result.passed and ok
    result.detail += f"; {said}"


def watch_reboot(session: Session, scenario: Scenario, ctx: Context, result: FaultResult) -> None:
    """The daemon's health test must fail and the daemon reboot the guest (or, last resort, the watchdog fire);
    then the guest must come back armed."""
    guest, window = ctx.guest, result.window
    fault_at = _inject(ctx, scenario, result)
    limit = window.high + MARGIN_SECONDS
    with log.waiting(f"the daemon's reboot (expected {_span(window)} after the fault)", at_most=limit):
        event = guest.wait_event({EventKind.RESET, EventKind.WATCHDOG, EventKind.SHUTDOWN},
                                 _deadline(fault_at + limit))
    if event is None:
        result.detail = f"no reboot within {limit:.0f}s of the fault; status: {guest.status()}{_others(guest)}"
        return
    seconds = round(event.time - fault_at, 2)
    _answered(result, event)
    if scenario.restore:  # e.g. the link back up, or the rebooted guest would fail the same test again
        scenario.restore(ctx)
    result.seconds_to_reset, result.reason = seconds, event.reason
    result.path = "watchdog" if event.kind is EventKind.WATCHDOG else "soft-reboot"
    result.action = event.action
    result.passed = seconds <= limit
    how = (f"WATCHDOG {event.action}" if event.kind is EventKind.WATCHDOG else f"{event}")
    result.detail = f"{how} {seconds:.1f}s after the fault (expected {_span(window)}: {window.why})"
    if event.kind is EventKind.SHUTDOWN or (event.kind is EventKind.WATCHDOG and event.action != Action.RESET):
        result.rebooted_armed = False
        result.detail += "; the guest did not reboot"
        result.passed = False
        return
    if not _back_armed(session, scenario, ctx, result, event)[0]:
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
    _inject(ctx, scenario, result)
    quiet = 2 * window.high
    with log.waiting(f"{quiet:.0f}s in which nothing may happen (twice the {window.high:.0f}s window)", at_most=quiet):
        event = guest.wait_event({EventKind.WATCHDOG, EventKind.RESET, EventKind.SHUTDOWN, EventKind.EXITED},
                                 time.monotonic() + quiet)
    if event is not None:
        _answered(result, event)
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
    Outcome.FIRE: watch_fire, Outcome.REBOOT: watch_reboot, Outcome.QUIET: watch_quiet,
    Outcome.PROOF: proof.watch_proof}


def _span(window: Window) -> str:
    return f"{window.high:.0f}s" if window.low == window.high else f"{window.low:.0f}-{window.high:.0f}s"


# --- after the WATCHDOG event: what each action does, and what the drill checks ---------------------------

def _back_armed(session: Session, scenario: Scenario, ctx: Context, result: FaultResult,
                event: Event) -> tuple[bool, str]:
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
            result.marks.armed_again, result.marks.armed_again_by = session.armed, session.armed_by
            said = f"back and armed {to_armed:.1f}s after the reset"
        else:
            said = "came back but not armed: " + "; ".join(f"{c.title}: {c.seen}" for c in probe.checks if not c.passed)
    # The reset: the RESET event that follows the watchdog's (read by now), or the daemon's reboot itself.
    try:
        seen = ctx.guest.events()
    except (ConnectionError, ProtocolError, OSError):
        seen = []
    reset = next((e for e in [event, *seen] if e.kind is EventKind.RESET), None)
    result.marks.reset = reset.time if reset else event.time
    if result.outcome == Outcome.REBOOT:
        result.detail += f"; {said}"
    return bool(result.rebooted_armed), said


def _exited(session: Session, scenario: Scenario, ctx: Context, result: FaultResult,
            event: Event) -> tuple[bool, str]:
    with log.waiting("QEMU to exit", at_most=AFTERMATH_SECONDS):
        gone = ctx.guest.wait_event({EventKind.EXITED}, time.monotonic() + AFTERMATH_SECONDS)
    session.probe = None
    return gone is not None, "QEMU then: exited" if gone else f"expected the guest to power off; status {ctx.guest.status()}"


def _paused(session: Session, scenario: Scenario, ctx: Context, result: FaultResult,
            event: Event) -> tuple[bool, str]:
    status = ctx.guest.status()
    session.probe = None
    return status in ("watchdog", "paused"), _with_trap(ctx, f"QEMU then: {status}")


def _stays(session: Session, scenario: Scenario, ctx: Context, result: FaultResult,
           event: Event) -> tuple[bool, str]:
    """none, debug: the event only; the guest is left as the fault left it."""
    time.sleep(2)
    session.probe = None
    status = ctx.guest.status()
    return status == "running", _with_trap(ctx, f"event only, the guest is left as it was; QEMU then: {status}")


def _with_trap(ctx: Context, said: str) -> str:
    """A fire that did not reset the guest: where the model stays disabled afterwards, say so."""
    note = proof.trap_note(ctx.setup.model)
    return f"{said}; {note}" if note else said


def _shutdown(session: Session, scenario: Scenario, ctx: Context, result: FaultResult,
              event: Event) -> tuple[bool, str]:
    """An ACPI shutdown request: a live kernel obeys it, a crashed one cannot (the guest stays down)."""
    came = ctx.guest.wait_event({EventKind.SHUTDOWN, EventKind.EXITED}, time.monotonic() + AFTERMATH_SECONDS)
    session.probe = None
    crashed = scenario.crashes_kernel
    if came is None:
        return crashed, (f"ACPI shutdown requested; the crashed guest cannot obey it and stays down (QEMU then: "
                         f"{ctx.guest.status()})" if crashed else "ACPI shutdown requested, but the live guest did not shut down")
    return not crashed, f"ACPI shutdown requested; the guest obeyed: {came}"


NMI_MARKS = ("NMI received", "NMI:", "Uhhuh")


def _nmi(session: Session, scenario: Scenario, ctx: Context, result: FaultResult,
         event: Event) -> tuple[bool, str]:
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


AFTERMATH: dict[Action, Callable[[Session, Scenario, Context, FaultResult, Event], tuple[bool, str]]] = {
    Action.RESET: _back_armed, Action.POWEROFF: _exited, Action.PAUSE: _paused, Action.SHUTDOWN: _shutdown,
    Action.NONE: _stays, Action.DEBUG: _stays, Action.INJECT_NMI: _nmi,
}
