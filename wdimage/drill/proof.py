"""The `proof` scenario's watcher: a running guest's watchdog shown to fire, without restarting the guest.

1. The hypervisor's action is set to none (Guest.set_watchdog_action) for the moment; the original is the one
   the setup knows (the build's manifest, or the libvirt domain's <watchdog>).
2. The daemon holding /dev/watchdog is frozen (scenarios.freeze: SIGSTOP, and a guest-side sleeper that thaws it
   and re-arms by itself later, should this host side die).
3. The WATCHDOG event with action none must come within the window: the proof, its seconds against the window.
4. The daemon is thawed and, where the model needs it (models.ModelInfo.reopen_after_fire: i6300esb), restarted
   so that it re-opens the device: a thawed daemon alone feeds a device that QEMU left disabled.
5. Protected again: the daemon holds the device, running, and nothing fires for one window (still under action
   none, so that a guest the re-arm failed is not reset by our check).
6. The original action is restored on every path out: success, failure, an exception, SIGINT/SIGTERM (the
   Interrupted exception of wdimage.cli passes through the `finally`; signals that arrive during the clean-up are
   held until it is done). If it cannot be restored, the proof fails and the exact command that restores it is
   printed (on stderr at once, and in the report).
"""

import sys
import time

from wdimage import log
from wdimage.drill.checks import HOLDERS_SH, parse_holders, parse_sections
from wdimage.drill.scenarios import Context, Scenario, proof_limit
from wdimage.drill.session import CHECK_RETRY_SECONDS, Session
from wdimage.errors import Interrupted
from wdimage.models import Action, info
from wdimage.run import signals_deferred
from wdimage.vm.guest import EventKind
from wdimage.vm.jsonstream import ProtocolError

# $1 the daemon's pid, $2 the re-arm command ('' for none).
THAW_SH = 'kill -CONT "$1" 2>/dev/null; [ -z "$2" ] || sh -c "$2"'
AFTER_SH = HOLDERS_SH + "echo '### boot'; cat /proc/sys/kernel/random/boot_id; cut -d' ' -f1 /proc/uptime\n" \
                        "echo '### holders'; holders\n"
THAW_TIMEOUT = 60  # a systemd stop and start under TCG
GUEST_TROUBLE = (TimeoutError, ConnectionError, ProtocolError, OSError)


def trap_note(model: str) -> str:
    """After any fire that did not reset the guest (none, debug, pause then resume), where the model needs it."""
    if not info(model).reopen_after_fire:
        return ""
    return (f"note: after this fire QEMU leaves the {model} disabled: the daemon feeds a dead device, and nothing "
            f"in the guest can tell, until it re-opens /dev/watchdog (restart the daemon)")


def _deadline(wall: float) -> float:
    return time.monotonic() + wall - time.time()


def watch_proof(session: Session, scenario: Scenario, ctx: Context, result) -> None:
    """The whole proof (see the module's text); fills `result` (a watch.FaultResult)."""
    guest, original = ctx.guest, ctx.setup.action
    pid = ctx.probe.daemon_pid
    if pid is None:  # run_scenario only gets here armed; should the probe say otherwise, touch nothing
        result.detail = "no watchdog daemon holds /dev/watchdog: nothing to prove, nothing was changed"
        return
    with signals_deferred() as noted:  # a signal now is raised once the change is made, inside the `try`
        guest.set_watchdog_action(Action.NONE)  # Unsupported: the scenario is skipped, nothing changed
    frozen, restored = False, False
    fault_at = time.time()
    try:
        if noted:
            raise Interrupted(noted[0])
        log.info(f"watchdog action: none for the proof (was {original})")
        if guest.set_action_note:
            ctx.notes.append(guest.set_action_note)
        guest.clear_events()
        fault_at = time.time()
        frozen = True  # from here the daemon may be stopped (a freeze cut short too): thawed on the way out
        try:
            scenario.inject(ctx)
        except RuntimeError as e:
            result.detail = str(e)
            return
        _wait_fire(ctx, result, fault_at)
        if result.seconds_to_reset is None:
            return
        _thaw(ctx)
        frozen = False
        _protected_again(session, ctx, result)
    finally:
        with signals_deferred() as noted:
            try:
                if frozen:
                    _thaw_on_the_way_out(ctx, result, fault_at)
            finally:
                restored = _restore(ctx, original)
        result.passed = result.passed and restored
        ctx.figures["action_restored"] = restored
        if noted:
            raise Interrupted(noted[0])


def _wait_fire(ctx: Context, result, fault_at: float) -> None:
    guest, limit = ctx.guest, proof_limit(ctx.setup)
    event = guest.wait_event({EventKind.WATCHDOG, EventKind.RESET, EventKind.SHUTDOWN, EventKind.EXITED},
                             _deadline(fault_at + limit))
    if event is None:
        result.detail = f"no WATCHDOG event within {limit:.0f}s of the freeze; status: {guest.status()}"
        return
    seconds = round(event.time - fault_at, 2)
    if event.kind is not EventKind.WATCHDOG or event.action != Action.NONE:
        result.detail = f"{event} {seconds:.1f}s after the freeze, where only WATCHDOG none may come"
        return
    result.action, result.seconds_to_reset, result.path = str(event.action), seconds, "watchdog"
    window = result.window
    result.detail = (f"WATCHDOG none {seconds:.1f}s after the freeze (expected {window.low:.0f}-{window.high:.0f}s: "
                     f"{window.why}); the guest ran on ({guest.status()})")


def _thaw(ctx: Context) -> None:
    if "frozen_pid" not in ctx.figures:  # the freeze did not get as far as the guest
        return
    rearm = ctx.figures.get("rearm", "")
    said = ctx.guest.run(THAW_SH, ctx.figures["frozen_pid"], rearm, timeout=THAW_TIMEOUT)
    ctx.notes.append(f"thawed the daemon{'; re-armed: ' + rearm if rearm else ''} (exit {said.exitcode})")


def _thaw_on_the_way_out(ctx: Context, result, fault_at: float) -> None:
    """After a failure, an exception or a signal, the daemon still frozen: thaw (and re-arm) it. If the guest
    cannot be reached and the watchdog has not fired yet, wait for the fire first (at most the proof's limit):
    restoring the original action while the daemon is frozen would let the watchdog carry it out (reset the
    guest); after the fire the device stays quiet until the guest's own thaw re-arms it."""
    result.passed = False
    try:
        _thaw(ctx)
        return
    except GUEST_TROUBLE as e:
        ctx.notes.append(f"could not thaw the daemon ({e or type(e).__name__}): the guest thaws and re-arms it "
                         f"itself {ctx.figures.get('thaw_after')}s after the freeze")
    if result.seconds_to_reset is None:
        try:
            event = ctx.guest.wait_event({EventKind.WATCHDOG}, _deadline(fault_at + proof_limit(ctx.setup)))
        except GUEST_TROUBLE:
            event = None
        ctx.notes.append(f"waited for the fire before restoring the action: {event or 'none came'}")


def _protected_again(session: Session, ctx: Context, result) -> None:
    """The daemon holds the device and runs; nothing fires for one window; the same boot."""
    guest, setup = ctx.guest, ctx.setup
    probe = session.poll_checks(CHECK_RETRY_SECONDS)  # the restarted daemon takes a moment
    if not probe.armed:
        result.detail += "; not armed afterwards: " + "; ".join(f"{c.title}: {c.seen}" for c in probe.checks
                                                                if not c.passed)
        return
    quiet = proof_limit(setup)
    event = guest.wait_event({EventKind.WATCHDOG, EventKind.RESET, EventKind.SHUTDOWN, EventKind.EXITED},
                             time.monotonic() + quiet)
    if event is not None:
        result.detail += f"; after the re-arm {event} came, where nothing may fire"
        return
    sections = parse_sections(guest.run(AFTER_SH, timeout=30).stdout)
    daemon = next((h for h in parse_holders(sections.get("holders", "")) if h.is_daemon), None)
    boot = sections.get("boot", "").split()
    if daemon is None or daemon.state == "T":
        result.detail += f"; afterwards: {daemon or 'no daemon holds /dev/watchdog'}"
        return
    ctx.figures["boot_id_unchanged"] = bool(boot) and boot[0] == ctx.figures.get("boot_id")
    if len(boot) > 1:
        ctx.figures["uptime_after"] = float(boot[1])
    if not ctx.figures["boot_id_unchanged"]:
        result.detail += "; the guest's boot id changed: it restarted"
        return
    result.passed = True
    result.detail += (f"; protected again: {daemon}, nothing fired for {quiet:.0f}s; same boot, uptime "
                      f"{ctx.figures['uptime_before']:.0f}s -> {ctx.figures.get('uptime_after', 0):.0f}s")


def _restore(ctx: Context, original: Action) -> bool:
    """The original action back; False (and the command that does it, on stderr and in the report) if not."""
    try:
        ctx.guest.set_watchdog_action(original)
    except Exception as e:  # noqa: BLE001 (whatever it was, the person must get the command)
        command = ctx.guest.set_action_command(original)
        said = (f"COULD NOT restore the watchdog action {original} ({e or type(e).__name__}): the watchdog "
                f"action is still none; restore it with: {command}")
        ctx.notes.append(said)
        print(f"wdimage: {said}", file=sys.stderr, flush=True)  # not log.info: -q must not hide it
        return False
    log.info(f"watchdog action: {original} restored")
    ctx.notes.append(f"action {original} restored")
    return True
