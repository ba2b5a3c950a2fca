"""`drill --safe` and the `proof` scenario on the scripted fake guest of test_runner: the action set to none and
restored on every path out (success, failure, an exception, a signal), the re-arm per model and init system,
--safe refusing the faults that crash, and a guest whose daemon is not running left untouched."""

import os
import signal

import pytest

from tests.unit.test_runner import Clock, FakeGuest, FakeTarget, Script, probe_output
from wdimage import cli
from wdimage.drill import checks, proof, scenarios, session, watch
from wdimage.drill import health as health_drill
from wdimage.drill.runner import DrillReport, run_scenarios
from wdimage.drill.scenarios import Setup
from wdimage.errors import ExitCode, Interrupted
from wdimage.models import MODELS, Action, Model
from wdimage.vm.guest import EventKind, ExecResult

BOOT_ID = "5c0ffee0-0000-4000-8000-000000000001"


class ProofGuest(FakeGuest):
    """A FakeGuest whose hypervisor takes watchdog-set-action (recorded), and that answers the proof's scripts."""

    def __init__(self, clock, script, capabilities, *, fail_restore=False, boot_id_after=BOOT_ID,
                 interrupt_during=None, stopped_after=False, freeze_fails=False, signal_on_set=False):
        super().__init__(clock, script, capabilities)
        self.actions: list[str] = []
        self.fail_restore = fail_restore
        self.boot_id_after = boot_id_after
        self.interrupt_during = interrupt_during  # a script whose run raises Interrupted(SIGTERM)
        self.stopped_after = stopped_after  # the daemon still in state T after the thaw
        self.freeze_fails = freeze_fails  # kill -STOP fails (the daemon just went away)
        self.signal_on_set = signal_on_set  # a real SIGTERM to this process while the action is being changed

    def set_watchdog_action(self, action: Action) -> None:
        if self.fail_restore and self.actions:
            raise ConnectionError("the connection to the hypervisor is gone")
        if self.signal_on_set and not self.actions:
            os.kill(os.getpid(), signal.SIGTERM)
        self.actions.append(str(action))

    def set_action_command(self, action: Action) -> str:
        return f"virsh qemu-monitor-command fake '{{\"action\": \"{action}\"}}'"

    def run(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        if script == self.interrupt_during:
            raise Interrupted(signal.SIGTERM)
        if script == scenarios.FREEZE_SH:
            super().run(script, *args, timeout=timeout)
            if self.freeze_fails:
                return ExecResult(3, f"{BOOT_ID}\n812.5\n", "sh: kill: No such process\n")
            return ExecResult(0, f"{BOOT_ID}\n812.5\n", "")
        if script == proof.AFTER_SH:
            super().run(script, *args, timeout=timeout)
            state = "T" if self.stopped_after else "S"
            return ExecResult(0, f"### boot\n{self.boot_id_after}\n{self.clock.now:.1f}\n### holders\n"
                                 f"301 watchdog /dev/watchdog {state} 90000\n", "")
        return super().run(script, *args, timeout=timeout)


class ProofTarget(FakeTarget):
    def __init__(self, clock, script, **guest_options):
        super().__init__(clock, script)
        self.guest_options = guest_options

    def boot(self):
        self.clock.sleep(20)
        guest = ProofGuest(self.clock, self.scripts[0], self.capabilities, **self.guest_options)
        self.guests.append(guest)
        return guest


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    for module in (session, watch, checks, scenarios, health_drill, proof):
        monkeypatch.setattr(module, "time", clock)
    return clock


def drill(target, faults=("proof",), model=Model.I6300ESB, action=Action.RESET, timeout=15):
    report = DrillReport(target=target.describe(), setup=Setup("fake", model, action, timeout), faults_requested=[])
    run_scenarios(target, report, list(faults))
    return report


def fired_none(seconds: float = 13.0):
    return [(seconds, EventKind.WATCHDOG, "none", None)]


def guest_of(target) -> ProofGuest:
    (guest,) = target.guests
    return guest


# --- the proof ---------------------------------------------------------------------------------------------

def test_the_proof_passes_and_restores_the_action(clock):
    target = ProofTarget(clock, Script(after_fault=fired_none(13.2)))
    report = drill(target)
    (result,) = report.faults
    assert result.passed and report.passed, result.detail
    guest = guest_of(target)
    assert guest.actions == ["none", "reset"]  # none for the proof, the original back
    assert (result.action, result.seconds_to_reset, result.outcome) == ("none", 13.2, "proof")
    assert result.ratio == pytest.approx(13.2 / 15)  # its seconds against the window, like every scenario
    assert result.figures["boot_id_unchanged"] is True and result.figures["action_restored"] is True
    assert "protected again" in result.detail and "nothing fired for 25s" in result.detail
    # frozen with the daemon's pid; thawed and, the i6300esb being left disabled by QEMU, restarted
    assert guest.commands.index(scenarios.FREEZE_SH) < guest.commands.index(proof.THAW_SH)
    assert result.figures["rearm"] == scenarios.RESTART_DAEMON["systemd"]
    assert result.figures["frozen_pid"] == "273"
    assert guest.state == "running" and len(target.guests) == 1  # one boot: the proof restarted nothing


@pytest.mark.parametrize("model, rearm", [(Model.I6300ESB, True), (Model.IB700, False), (Model.ITCO, False)])
def test_the_re_arm_follows_the_models_column(model, rearm):
    assert MODELS[model].reopen_after_fire is rearm
    probe = checks.Probe(checks.evaluate_checks(checks.parse_sections(probe_output(True)), Model.I6300ESB, 15),
                         None, 5, "273")
    expected = scenarios.RESTART_DAEMON["systemd"] if rearm else ""
    assert scenarios.rearm_command(Setup("x", model, Action.RESET, 10), probe) == expected


def test_the_restart_command_is_the_init_systems_entry():
    text = probe_output(True).replace("systemd: active", "openrc: * status: started")
    probe = checks.Probe(checks.evaluate_checks(checks.parse_sections(text), Model.I6300ESB, 15), None, 5, "273")
    assert scenarios.init_system(probe) == "openrc"
    setup = Setup("x", Model.I6300ESB, Action.RESET, 15)
    assert scenarios.rearm_command(setup, probe) == "rc-service watchdog restart"


def test_no_fire_fails_and_still_restores(clock):
    target = ProofTarget(clock, Script())
    (result,) = drill(target).faults
    assert not result.passed and "no WATCHDOG event within 25s of the freeze" in result.detail
    guest = guest_of(target)
    assert guest.actions == ["none", "reset"]
    assert proof.THAW_SH in guest.commands  # the host thawed it on the way out


def test_a_freeze_that_fails_fails_the_proof_and_restores(clock):
    target = ProofTarget(clock, Script(after_fault=fired_none()), freeze_fails=True)
    (result,) = drill(target).faults
    assert not result.passed and "could not freeze the daemon (pid 273): exit 3" in result.detail
    assert guest_of(target).actions == ["none", "reset"]


def test_a_reset_during_the_proof_fails_it(clock):
    target = ProofTarget(clock, Script(after_fault=[(12, EventKind.RESET, None, "guest-reset")]))
    (result,) = drill(target).faults
    assert not result.passed and "where only WATCHDOG none may come" in result.detail
    assert guest_of(target).actions == ["none", "reset"]


def test_an_exception_restores_the_action(clock, monkeypatch):
    def broken(self, kinds, deadline):
        raise RuntimeError("something unexpected")

    target = ProofTarget(clock, Script(after_fault=fired_none()))
    monkeypatch.setattr(ProofGuest, "wait_event", broken)
    with pytest.raises(RuntimeError, match="something unexpected"):
        drill(target)
    guest = guest_of(target)
    assert guest.actions == ["none", "reset"] and proof.THAW_SH in guest.commands


@pytest.mark.parametrize("during", ["thaw", "checks"])
def test_a_signal_restores_the_action_and_is_passed_on(clock, during):
    script = {"thaw": proof.THAW_SH, "checks": proof.AFTER_SH}[during]
    target = ProofTarget(clock, Script(after_fault=fired_none()), interrupt_during=script)
    with pytest.raises(Interrupted) as raised:
        drill(target)
    assert raised.value.exit_code == 143
    assert guest_of(target).actions == ["none", "reset"]
    assert guest_of(target).closed  # the runner let go of the guest on the way out


def test_a_real_sigterm_while_the_action_is_changed_restores_it(clock):
    """wdimage's own handlers (SIGTERM raises Interrupted): the signal, arriving inside watchdog-set-action, is
    held until the change is made, then raised inside the proof, whose way out restores the action."""
    saved = {s: signal.getsignal(s) for s in cli.TERMINATING_SIGNALS}
    cli.install_signal_handlers()
    try:
        target = ProofTarget(clock, Script(after_fault=fired_none()), signal_on_set=True)
        with pytest.raises(Interrupted) as raised:
            drill(target)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert raised.value.signum == signal.SIGTERM
    guest = guest_of(target)
    assert guest.actions == ["none", "reset"] and scenarios.FREEZE_SH not in guest.commands


def test_a_restore_that_fails_fails_the_proof_and_prints_the_command(clock, capsys):
    target = ProofTarget(clock, Script(after_fault=fired_none()), fail_restore=True)
    report = drill(target)
    (result,) = report.faults
    assert not result.passed and not report.passed and report.exit_code == ExitCode.FAILED
    assert result.figures["action_restored"] is False
    command = "virsh qemu-monitor-command fake '{\"action\": \"reset\"}'"
    assert f"restore it with: {command}" in result.detail
    assert command in capsys.readouterr().err  # printed at once, whatever -q says


def test_a_changed_boot_id_fails_the_proof(clock):
    target = ProofTarget(clock, Script(after_fault=fired_none()), boot_id_after="another-boot")
    (result,) = drill(target).faults
    assert not result.passed and "boot id changed" in result.detail
    assert result.figures["boot_id_unchanged"] is False


def test_a_daemon_still_stopped_afterwards_fails(clock):
    target = ProofTarget(clock, Script(after_fault=fired_none()), stopped_after=True)
    (result,) = drill(target).faults
    assert not result.passed and "state T" in result.detail


def test_a_daemon_that_is_not_running_fails_with_the_diagnosis_and_touches_nothing(clock):
    target = ProofTarget(clock, Script(armed=False))
    report = drill(target)
    assert not report.passed and report.faults == []
    holder = next(c for c in report.checks if c.name == "holder")
    assert not holder.passed and holder.fix  # the audit's diagnosis: the failed check and its fix
    guest = guest_of(target)
    assert guest.actions == [] and scenarios.FREEZE_SH not in guest.commands and guest.spawned == []


def test_a_backend_that_cannot_set_the_action_skips_without_freezing(clock):
    target = FakeTarget(clock, Script(after_fault=fired_none()))
    (result,) = drill(target).faults
    assert result.skipped and "cannot change the watchdog's action" in result.skipped
    assert scenarios.FREEZE_SH not in target.guests[0].commands


# --- the fires that do not reset: the trap is said where the drill reports them ---------------------------------

@pytest.mark.parametrize("model, noted", [(Model.I6300ESB, True), (Model.IB700, False), (Model.ITCO, False)])
def test_the_trap_note_follows_the_models_column(model, noted):
    assert bool(proof.trap_note(model)) is noted


@pytest.mark.parametrize("action", [Action.NONE, Action.DEBUG])
def test_a_fire_that_does_not_reset_notes_the_trap(clock, action):
    target = FakeTarget(clock, Script(after_fault=[(14, EventKind.WATCHDOG, str(action), None)]))
    report = DrillReport(target="x", setup=Setup("fake", Model.I6300ESB, action, 15), faults_requested=[])
    run_scenarios(target, report, ["hang"])
    assert "QEMU leaves the i6300esb disabled" in report.faults[0].detail


def test_a_guest_out_of_reach_is_thawed_by_itself_after_the_fire(clock, monkeypatch):
    """The thaw fails (the agent is gone) before the fire: the restore waits for the fire, so that the original
    action (reset) is not carried out on the frozen daemon's guest."""
    target = ProofTarget(clock, Script(after_fault=fired_none(13)))

    def thaw_fails(ctx):
        raise ConnectionError("the guest agent is gone")

    monkeypatch.setattr(proof, "_thaw", thaw_fails)
    monkeypatch.setattr(proof, "_wait_fire", lambda ctx, result, fault_at: None)  # the host gave up early
    (result,) = drill(target).faults
    assert not result.passed and "the guest thaws and re-arms it itself" in result.detail
    assert "waited for the fire before restoring the action: watchdog none" in result.detail
    assert guest_of(target).actions == ["none", "reset"]


# --- --safe -------------------------------------------------------------------------------------------------

def test_safe_is_the_proof_alone_and_refuses_what_crashes():
    assert scenarios.safe_faults(None) == ["proof"]
    assert scenarios.safe_faults(["healthy", "proof"]) == ["healthy", "proof"]
    for fault in ("panic", "stop", "pause", "all"):
        with pytest.raises(ValueError, match=f"--safe .* not --fault {fault}"):
            scenarios.safe_faults(["proof", fault])
    assert scenarios.SCENARIOS["proof"].harmless and not scenarios.SCENARIOS["proof"].crashes_kernel


@pytest.mark.parametrize("where", [["/nonexistent-build"], ["--libvirt", "dom"]])
def test_safe_with_a_crashing_fault_exits_2_naming_the_option(capsys, where):
    code = cli.main(["drill", *where, "--safe", "--fault", "panic"])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--safe" in err and "--fault panic" in err


def test_safe_needs_no_yes_crash_it(monkeypatch):
    from wdimage.drill import libvirt as libvirt_drill

    libvirt_drill.check_options("dom", None, scenarios.safe_faults(None), yes_crash_it=False)  # no exit 2
    with pytest.raises(Exception, match="--yes-crash-it"):
        libvirt_drill.check_options("dom", None, ["panic"], yes_crash_it=False)


def test_the_restore_commands_are_exact():
    from wdimage.vm import libvirt_guest

    assert libvirt_guest.monitor_command(Action.RESET) == \
        '{"execute": "watchdog-set-action", "arguments": {"action": "reset"}}'
    assert scenarios.SCENARIOS["proof"].needs == frozenset()  # no capability: it runs on every backend


def test_the_reports_show_the_proofs_seconds_against_the_window(clock):
    from wdimage.drill import report as drill_report

    report = drill(ProofTarget(clock, Script(after_fault=fired_none(13.2))))
    (fault,) = drill_report.report_json(report)["faults"]
    assert (fault["fault"], fault["outcome"], fault["seconds_to_reset"]) == ("proof", "proof", 13.2)
    assert fault["expected_window"] == [10, 15] and fault["ratio_to_window"] == pytest.approx(0.88)
    assert fault["figures"]["action_restored"] is True and fault["figures"]["boot_id_unchanged"] is True
    assert "PASS  proof: WATCHDOG none 13.2s after the freeze (expected 10-15s" in drill_report.render_text(report)
    junit = drill_report.report_junit(report)
    assert 'name="fault proof"' in junit and 'time="13.2"' in junit
