"""The drill's runner end to end on a scripted guest: a fake Target/Guest (wdimage.vm.guest's interface) that
answers the readiness probe with recorded GUEST_PROBE output and delivers the hypervisor's events at scripted
seconds after the fault, on a virtual clock (the drill's sleeps and waits move it; nothing really waits).

Each outcome (fire, reboot, quiet) and each action's aftermath is asserted through run_scenarios, its failures too.
"""

import dataclasses

import pytest

from tests.unit.test_drill import HEALTHY_PROBE
from wdimage import log
from wdimage.drill import checks, runner, scenarios, session, watch
from wdimage.drill import health as health_drill
from wdimage.drill.runner import DrillReport, run_scenarios
from wdimage.drill.scenarios import Setup
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import build
from wdimage.image.manifest import HealthRecord, health_record
from wdimage.models import Action, Model
from wdimage.vm.guest import Capability, Event, EventKind, ExecResult, Guest, Target

WALL = 1_800_000_000.0  # the wall clock's lead over the monotonic one
RUN_SECONDS = 0.5  # what each command in the guest costs on the virtual clock


class Clock:
    """time.monotonic/time/sleep for the drill's modules: time passes only when the drill sleeps or waits."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + WALL

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Script:
    """What the guest does: the hypervisor's events after the fault (seconds after it, kind, action, reason),
    its state after a WATCHDOG event, whether it comes back armed after a reset, what it logs."""

    after_fault: list[tuple[float, EventKind, str | None, str | None]] = dataclasses.field(default_factory=list)
    armed: bool = True  # the readiness probe at boot
    back_after_reset: bool = True  # the guest agent answers again after a reset
    armed_after_reset: bool = True
    status_after_watchdog: str = "running"  # QEMU's run state once the WATCHDOG event came
    journal: str = ""  # the daemon's log lines of the previous boot
    console: str = ""
    driver: str = ""  # a different dmesg line for the driver (e.g. nowayout=1)
    queued_jobs: str = ""  # start jobs that keep `systemctl is-system-running --wait` from returning


def probe_output(armed: bool, driver: str = "") -> str:
    text = HEALTHY_PROBE
    if not armed:  # nobody holds /dev/watchdog: the holder check fails
        text = text.replace("### holders\n273 watchdog /dev/watchdog S 1314\n", "### holders\n")
    if driver:
        text = text.replace("[    7.940062] i6300ESB timer 0000:00:03.0: initialized. heartbeat=30 sec (nowayout=0)",
                            driver)
    return text


class FakeGuest(Guest):
    kind = "fake"

    def __init__(self, clock: Clock, script: Script, capabilities: frozenset[Capability]):
        self.clock, self.script, self.capabilities = clock, script, capabilities
        self.started_at = clock.monotonic()
        self.pending: list[Event] = []  # scheduled, not yet arrived
        self.seen: list[Event] = []
        self.state = "running"
        self.reset = False  # a reset happened: the next probe answers for the rebooted guest
        self.spawned: list[tuple[str, ...]] = []
        self.commands: list[str] = []
        self.links: list[bool] = []
        self.paused_at = 0.0
        self.paused_for: list[float] = []
        self.migrations = 0
        self.faults = 0
        self.closed = False

    def describe(self) -> str:
        return "a scripted guest"

    # --- events on the virtual clock ------------------------------------------------------------------------
    def _arrive(self) -> None:
        for event in sorted((e for e in self.pending if e.time <= self.clock.time()), key=lambda e: e.time):
            self.pending.remove(event)
            self.seen.append(event)
            if event.kind is EventKind.WATCHDOG:
                self.state = self.script.status_after_watchdog
            if event.kind is EventKind.RESET or event.kind is EventKind.WATCHDOG and event.action == "reset":
                self.reset, self.state = True, "running"
            if event.kind is EventKind.EXITED:
                self.state = "exited"

    def clear_events(self) -> None:
        """The runner calls this right before the injection: the script's events are timed from here."""
        self._arrive()
        self.seen.clear()
        self.faults += 1
        for seconds, kind, action, reason in self.script.after_fault:
            self.pending.append(Event(kind, self.clock.time() + seconds, action=action, reason=reason, raw=str(kind)))

    def wait_event(self, kinds: set[EventKind], deadline: float) -> Event | None:
        while True:
            self._arrive()
            for i, event in enumerate(self.seen):
                if event.kind in kinds:
                    return self.seen.pop(i)
            due = [e.time - WALL for e in self.pending if e.time - WALL <= deadline]
            if not due:
                self.clock.now = max(self.clock.now, deadline)
                return None
            self.clock.now = max(self.clock.now, min(due))

    def events(self) -> list[Event]:
        self._arrive()
        return list(self.seen)

    def status(self) -> str:
        self._arrive()
        return self.state

    # --- the guest agent ------------------------------------------------------------------------------------
    def wait_agent(self, timeout: float) -> None:
        self._arrive()
        if self.reset and not self.script.back_after_reset:
            self.clock.sleep(timeout)
            raise TimeoutError(f"the guest agent did not answer within {timeout:.0f}s")
        self.clock.sleep(2)

    def run(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        self.clock.sleep(RUN_SECONDS)
        self.commands.append(script)
        if script == checks.GUEST_PROBE:
            armed = self.script.armed_after_reset if self.reset else self.script.armed
            return ExecResult(0, probe_output(armed, self.script.driver), "")
        if "is-system-running" in script:
            if self.script.queued_jobs:
                self.clock.sleep(timeout)
                raise TimeoutError(f"no answer within {timeout:.0f}s")
            return ExecResult(0, "running\n", "")
        if "list-jobs" in script:
            return ExecResult(0, self.script.queued_jobs, "")
        if script == health_drill.REASON_SH:
            return ExecResult(0, self.script.journal, "")
        if script == scenarios.AFTER_FAULT_PROBE:
            return ExecResult(0, "### holders\n### units\nwatchdog.service inactive\n", "")
        return ExecResult(0, "", "")

    def spawn(self, script: str, *args: str) -> None:
        self.spawned.append((script, *args))

    # --- from the host ------------------------------------------------------------------------------------
    def pause(self) -> None:
        self.state, self.paused_at = "paused", self.clock.now

    def resume(self) -> None:
        self.paused_for.append(self.clock.now - self.paused_at)
        self.state = "running"

    def set_link(self, up: bool) -> None:
        self.links.append(up)

    def migrate(self) -> dict:
        self.clock.sleep(1.5)
        self.migrations += 1
        return {"seconds": 1.5, "downtime_ms": 30}

    def console_tail(self, lines: int = 40) -> str:
        return self.script.console

    def close(self) -> None:
        self.closed = True


class FakeTarget(Target):
    """Boots a FakeGuest per boot(), each following the next script (the last one repeats)."""

    def __init__(self, clock: Clock, *scripts: Script, capabilities=frozenset(Capability)):
        self.clock, self.scripts, self.capabilities = clock, list(scripts), capabilities
        self.guests: list[FakeGuest] = []

    def describe(self) -> str:
        return "a scripted target"

    def boot(self) -> FakeGuest:
        script = self.scripts[min(len(self.guests), len(self.scripts) - 1)]
        self.clock.sleep(20)  # a boot takes time, on the virtual clock too
        guest = FakeGuest(self.clock, script, self.capabilities)
        self.guests.append(guest)
        return guest


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    for module in (session, watch, checks, scenarios, health_drill):
        monkeypatch.setattr(module, "time", clock)
    return clock


HEALTH_RECORD = health_record(build.make_settings(
    "debian", ping=("10.0.2.2",), health_options=dict(retry_timeout=10, example=True)).health)


def drill(target: FakeTarget, faults: list[str], action: Action = Action.RESET, record: HealthRecord | None = None):
    """run_scenarios on the target for an i6300esb guest with a 15 s timeout (the recorded probe's)."""
    setup = Setup("fake", Model.I6300ESB, action, 15, health=record)
    report = DrillReport(target=target.describe(), setup=setup, faults_requested=[])
    run_scenarios(target, report, faults)
    return report


def fired(seconds: float, action: str, *then: tuple[float, EventKind, str | None, str | None]):
    return [(seconds, EventKind.WATCHDOG, action, None), *then]


# --- boot and readiness -----------------------------------------------------------------------------------------

def test_a_guest_that_is_not_armed_runs_no_scenario(clock):
    target = FakeTarget(clock, Script(armed=False))
    report = drill(target, ["panic"])
    assert report.faults == [] and not report.passed
    assert not next(c for c in report.checks if c.name == "holder").passed
    assert report.boot_to_armed_seconds is None and report.boot_to_agent_seconds == pytest.approx(2)
    assert target.guests[0].faults == 0 and target.guests[0].closed
    # the checks were retried for CHECK_RETRY_SECONDS before they counted as failed
    probes = target.guests[0].commands.count(checks.GUEST_PROBE)
    assert probes > 3


def test_a_boot_that_does_not_settle_is_checked_anyway_and_names_its_queued_jobs(clock, capsys, monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    jobs = "101 systemd-journal-flush.service start running\n2   multi-user.target     start waiting\n"
    report = drill(FakeTarget(clock, Script(queued_jobs=jobs, after_fault=fired(12, "reset"))), ["panic"])
    assert all(c.passed for c in report.checks)
    err = capsys.readouterr().err
    assert (f"did not settle within {session.BOOT_SETTLE_TIMEOUT}s; checking anyway (start jobs still queued: "
            "101 systemd-journal-flush.service start running; 2 multi-user.target start waiting)") in err


def test_the_daemons_interval_from_the_probe_sets_the_windows(clock):
    report = drill(FakeTarget(clock, Script(after_fault=fired(12, "reset"))), ["panic"])
    assert report.setup.interval == 5  # interval = 5 in the recorded probe
    assert (report.faults[0].window.low, report.faults[0].window.high) == (10, 15)


# --- fire --------------------------------------------------------------------------------------------------------

def test_panic_fires_resets_and_comes_back_armed(clock):
    target = FakeTarget(clock, Script(after_fault=fired(12.5, "reset", (12.6, EventKind.RESET, None, "watchdog"))))
    report = drill(target, ["panic"])
    (result,) = report.faults
    assert result.passed and report.passed, result.detail
    assert (result.action, result.seconds_to_reset, result.path) == ("reset", 12.5, "watchdog")
    assert result.rebooted_armed is True and result.seconds_back_armed is not None
    assert "back and armed" in result.detail
    assert target.guests[0].spawned == [(scenarios.PANIC_SH,)]
    assert len(target.guests) == 1  # the reset guest, armed again, is kept


def test_fire_reset_but_not_armed_afterwards_fails(clock):
    target = FakeTarget(clock, Script(after_fault=fired(14, "reset"), armed_after_reset=False))
    (result,) = drill(target, ["panic"]).faults
    assert not result.passed and result.rebooted_armed is False
    assert "came back but not armed" in result.detail and "holds /dev/watchdog" in result.detail


def test_fire_reset_but_the_guest_never_comes_back_fails(clock):
    target = FakeTarget(clock, Script(after_fault=fired(14, "reset"), back_after_reset=False))
    (result,) = drill(target, ["panic"]).faults
    assert not result.passed and result.rebooted_armed is False
    assert "the guest did not come back" in result.detail


def test_no_watchdog_event_within_the_window_fails(clock):
    target = FakeTarget(clock, Script(after_fault=fired(40, "reset")))  # after 15 + MARGIN_SECONDS
    (result,) = drill(target, ["hang"]).faults
    assert not result.passed and result.action is None and result.seconds_to_reset is None
    assert "no WATCHDOG event within 25s of the fault" in result.detail
    assert [e.kind for e in target.guests[0].pending] == [EventKind.WATCHDOG]  # it gave up before the late event


def test_a_reset_without_the_watchdog_is_not_a_fire(clock):
    target = FakeTarget(clock, Script(after_fault=[(3, EventKind.RESET, None, "guest-reset")]))
    (result,) = drill(target, ["kill"]).faults
    assert not result.passed
    assert "no WATCHDOG event" in result.detail and "the guest reset itself, not through the watchdog" in result.detail


def test_the_wrong_action_fails(clock):
    target = FakeTarget(clock, Script(after_fault=fired(13, "poweroff", (14, EventKind.EXITED, None, None))))
    (result,) = drill(target, ["panic"], action=Action.RESET).faults
    assert not result.passed and result.action == "poweroff"
    assert "expected action reset" in result.detail


def test_a_late_fire_inside_the_margin_passes_but_the_ratio_shows_it(clock):
    target = FakeTarget(clock, Script(after_fault=fired(24, "reset")))
    (result,) = drill(target, ["panic"]).faults
    assert result.passed and result.ratio == pytest.approx(24 / 15)


# --- each action's aftermath -----------------------------------------------------------------------------------

@pytest.mark.parametrize("then, passed, said", [
    ([(14, EventKind.EXITED, None, None)], True, "QEMU then: exited"),
    ([], False, "expected the guest to power off"),
])
def test_poweroff_must_end_the_process(clock, then, passed, said):
    target = FakeTarget(clock, Script(after_fault=fired(13, "poweroff", *then), status_after_watchdog="shutdown"))
    report = drill(target, ["panic", "kill"], action=Action.POWEROFF)
    assert report.faults[0].passed is passed and said in report.faults[0].detail
    assert len(target.guests) == 2  # the powered-off guest is not reused: a fresh boot for the next scenario


@pytest.mark.parametrize("status, passed", [("watchdog", True), ("paused", True), ("running", False)])
def test_pause_must_leave_the_guest_paused(clock, status, passed):
    target = FakeTarget(clock, Script(after_fault=fired(13, "pause"), status_after_watchdog=status))
    (result,) = drill(target, ["panic"], action=Action.PAUSE).faults
    assert result.passed is passed and f"QEMU then: {status}" in result.detail


@pytest.mark.parametrize("fault, obeys, passed, said", [
    ("panic", False, True, "the crashed guest cannot obey it and stays down"),
    ("panic", True, False, "the guest obeyed"),  # a crashed kernel cannot have obeyed
    ("kill", True, True, "the guest obeyed"),  # the kernel is alive after kill: it shuts down
    ("kill", False, False, "the live guest did not shut down"),
    ("migrate-panic", False, True, "cannot obey"),
])
def test_shutdown_is_obeyed_by_a_live_kernel_only(clock, fault, obeys, passed, said):
    then = [(16, EventKind.SHUTDOWN, None, "guest-shutdown")] if obeys else []
    target = FakeTarget(clock, Script(after_fault=fired(15, "shutdown", *then)))
    (result,) = drill(target, [fault], action=Action.SHUTDOWN).faults
    assert scenarios.SCENARIOS[fault].crashes_kernel is (fault != "kill")
    assert result.passed is passed and said in result.detail, result.detail


@pytest.mark.parametrize("action", [Action.NONE, Action.DEBUG])
@pytest.mark.parametrize("status, passed", [("running", True), ("shutdown", False)])
def test_none_and_debug_only_report_the_event(clock, action, status, passed):
    target = FakeTarget(clock, Script(after_fault=fired(14, str(action)), status_after_watchdog=status))
    report = drill(target, ["hang", "kill"], action=action)
    assert report.faults[0].passed is passed and "event only" in report.faults[0].detail
    assert len(target.guests) == 2  # a hung guest is never reused


@pytest.mark.parametrize("console, passed, said", [
    ("[  31.2] Uhhuh. NMI received for unknown reason 30 on CPU 0.\n", True, "Uhhuh. NMI received"),
    ("[  31.2] nothing of interest\n", False, "no NMI message on the guest's console"),
])
def test_inject_nmi_is_seen_on_the_console(clock, console, passed, said):
    target = FakeTarget(clock, Script(after_fault=fired(14, "inject-nmi"), console=console))
    (result,) = drill(target, ["hang"], action=Action.INJECT_NMI).faults
    assert result.passed is passed and said in result.detail


# --- reboot: the daemon's health tests ----------------------------------------------------------------------------

JOURNAL = ("Retry timed-out at 11 seconds for 10.0.2.2\n"
           "shutting down the system because of error 101 = 'Network is unreachable'\n")


def test_net_the_daemon_reboots_and_logged_why(clock):
    window = scenarios.SCENARIOS["net"].window(Setup("x", Model.I6300ESB, Action.RESET, 15, 5, HEALTH_RECORD))
    seconds = window.high - 1
    target = FakeTarget(clock, Script(after_fault=[(seconds, EventKind.RESET, None, "guest-reset")], journal=JOURNAL))
    (result,) = drill(target, ["net"], record=HEALTH_RECORD).faults
    assert result.passed, result.detail
    assert (result.path, result.seconds_to_reset, result.rebooted_armed) == ("soft-reboot", seconds, True)
    assert result.reason == "error 101 = 'Network is unreachable', after 10.0.2.2 kept failing for 11s"
    assert "ended by reboot(2)" in result.detail
    assert target.guests[0].links == [False, True]  # cut, then restored right after the reboot event


def test_reboot_ended_by_the_hardware_timer(clock):
    target = FakeTarget(clock, Script(after_fault=fired(30, "reset"), journal=JOURNAL))
    (result,) = drill(target, ["net"], record=HEALTH_RECORD).faults
    assert result.passed and result.path == "soft-reboot" and "the hardware timer set to 1s" in result.detail


def test_a_reboot_the_daemon_did_not_log_is_not_its_doing(clock):
    target = FakeTarget(clock, Script(after_fault=[(30, EventKind.RESET, None, "guest-reset")], journal=""))
    (result,) = drill(target, ["service"], record=HEALTH_RECORD).faults
    assert not result.passed and "not the daemon's doing" in result.detail
    assert target.guests[0].commands.count(health_drill.REASON_SH) == 1


def test_no_reboot_within_the_window_fails(clock):
    (result,) = drill(FakeTarget(clock, Script()), ["test"], record=HEALTH_RECORD).faults
    assert not result.passed and result.seconds_to_reset is None
    high = result.window.high
    assert f"no reboot within {high + scenarios.MARGIN_SECONDS:.0f}s of the fault" in result.detail


def test_a_shutdown_where_a_reboot_was_due_fails(clock):
    target = FakeTarget(clock, Script(after_fault=[(30, EventKind.SHUTDOWN, None, "guest-shutdown")]))
    (result,) = drill(target, ["net"], record=HEALTH_RECORD).faults
    assert not result.passed and result.rebooted_armed is False and "the guest did not reboot" in result.detail


# --- quiet: the controls ---------------------------------------------------------------------------------------

def test_healthy_waits_twice_the_window_and_stays_armed(clock):
    target = FakeTarget(clock, Script())
    report = drill(target, ["healthy", "hang"])
    healthy = report.faults[0]
    assert healthy.passed and "still armed afterwards" in healthy.detail
    assert "no WATCHDOG or RESET for 30s (twice 15s" in healthy.detail
    assert len(target.guests) == 1 and target.guests[0].faults == 2  # the armed guest served the next scenario


def test_a_quiet_control_lasts_twice_the_window(clock, monkeypatch):
    waited = []
    real = FakeGuest.wait_event

    def wait_event(self, kinds, deadline):
        waited.append(deadline - self.clock.now)
        return real(self, kinds, deadline)

    monkeypatch.setattr(FakeGuest, "wait_event", wait_event)
    (result,) = drill(FakeTarget(clock, Script()), ["healthy"], record=HEALTH_RECORD).faults
    assert result.passed
    assert waited == [2 * result.window.high]  # the slowest health test's window, twice
    assert result.window.high > 15


@pytest.mark.parametrize("kind", [EventKind.WATCHDOG, EventKind.RESET, EventKind.SHUTDOWN, EventKind.EXITED])
def test_an_event_during_a_control_fails_it(clock, kind):
    target = FakeTarget(clock, Script(after_fault=[(5, kind, "reset" if kind is EventKind.WATCHDOG else None, None)]))
    report = drill(target, ["healthy", "panic"])
    healthy = report.faults[0]
    assert not healthy.passed and "where nothing may happen" in healthy.detail
    assert len(target.guests) == 2  # a failed control gives the next scenario a fresh guest


def test_stop_restarts_the_daemon_after_the_quiet_wait(clock):
    target = FakeTarget(clock, Script())
    (result,) = drill(target, ["stop"]).faults
    assert result.passed and result.outcome == "quiet"
    commands = target.guests[0].commands
    assert commands.index(scenarios.STOP_DAEMON_SH) < commands.index(scenarios.START_DAEMON_SH)


def test_stop_with_nowayout_must_fire_instead(clock):
    driver = "[    7.9] i6300ESB timer 0000:00:03.0: initialized. heartbeat=30 sec (nowayout=1)"
    (result,) = drill(FakeTarget(clock, Script(driver=driver)), ["stop"]).faults
    assert result.outcome == "fire" and not result.passed and "no WATCHDOG event" in result.detail
    assert "nowayout=1" in result.detail
    (result,) = drill(FakeTarget(clock, Script(driver=driver, after_fault=fired(15, "reset"))), ["stop"]).faults
    assert result.outcome == "fire" and result.passed


def test_pause_control_pauses_for_twice_the_timeout(clock):
    target = FakeTarget(clock, Script())
    (result,) = drill(target, ["pause"]).faults
    assert result.passed and target.guests[0].paused_for == [30]


def test_a_scenario_the_backend_cannot_run_is_skipped(clock):
    target = FakeTarget(clock, Script(), capabilities=frozenset())
    report = drill(target, ["pause", "healthy"])
    pause = report.faults[0]
    assert pause.passed and "cannot pause" in pause.skipped
    assert target.guests[0].faults == 1  # only healthy ran


# --- what a person watching sees ----------------------------------------------------------------------------------

def test_the_drill_counts_its_scenarios_and_says_what_it_waits_for(clock, capsys, monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    after = fired(12.5, "reset", (12.6, EventKind.RESET, None, "watchdog"))
    report = drill(FakeTarget(clock, Script(after_fault=after)), ["panic", "kill"])
    assert report.passed, [f.detail for f in report.faults]
    err = capsys.readouterr().err
    assert "‣ [1/2] 'panic'" in err and "‣ [2/2] 'kill'" in err
    limit = 15 + scenarios.MARGIN_SECONDS
    assert f"… waiting for the WATCHDOG event (expected 10-15s after the fault) (at most {limit:.0f}s)" in err
    assert f"… waiting for the guest to boot and its agent to answer (at most {session.AGENT_TIMEOUT}s)" in err


@pytest.mark.parametrize("value, expected", [("", None), ("1", 1), ("16", 16)])
def test_wdimage_drill_cpus_sets_the_guests_vcpus(monkeypatch, value, expected):
    monkeypatch.setenv("WDIMAGE_DRILL_CPUS", value)
    assert runner.drill_cpus() == expected


@pytest.mark.parametrize("value", ["0", "01", "100", "2 ", "two", "-1"])
def test_a_bad_wdimage_drill_cpus_exits_2_naming_it(monkeypatch, value):
    monkeypatch.setenv("WDIMAGE_DRILL_CPUS", value)
    with pytest.raises(WdimageError) as raised:
        runner.drill_cpus()
    assert raised.value.code == ExitCode.USAGE and f"WDIMAGE_DRILL_CPUS={value!r}" in raised.value.message
