"""The drill's scenarios, one row each: how to break the guest, what must follow, and within which window.

A scenario is written against wdimage.vm.guest.Guest only, so it runs on guests that wdimage boots itself and on
libvirt domains alike. Three outcomes:
- FIRE: the hardware watchdog fires: the hypervisor's WATCHDOG event with the configured action;
- REBOOT: the watchdog daemon's own health test fails and the daemon reboots the guest (a RESET that the guest
  asked for), or, as its last resort, lets the hardware watchdog fire;
- QUIET: a control: nothing may happen (no WATCHDOG, RESET or SHUTDOWN) for twice the window in which it
  would have fired, and the guest is still armed afterwards.

Adding a fault is adding a row to SCENARIOS: an inject function, an outcome, a window function
(wdimage.drill.windows), whether it crashes the guest's kernel, and which daemon health test (the build option
that configures it) or backend capability it needs.
"""

import dataclasses
import enum
import time
from collections.abc import Callable

from wdimage import log
from wdimage.drill import health as health_drill
from wdimage.drill.checks import HOLDERS_SH, Probe, parse_holders, parse_sections
from wdimage.drill.health import HealthTest
from wdimage.drill.windows import Window, keepalives_stop, quiet_window, unclean_close
from wdimage.image.manifest import HealthRecord
from wdimage.models import Action, Model, info
from wdimage.vm.guest import Capability, Guest

MARGIN_SECONDS = 10  # past the expected window: second-stage expiry, TCG clocks drift, event delivery


class Outcome(enum.StrEnum):
    FIRE = "fire"
    REBOOT = "reboot"
    QUIET = "quiet"
    PROOF = "proof"  # the watchdog fires with the hypervisor's action set to none; the guest runs on (drill/proof.py)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What the drill expects of a guest: from a build's manifest, or read off a libvirt domain and its guest."""

    name: str
    model: Model
    action: Action
    timeout: int  # watchdog-timeout in the guest's watchdog.conf (seconds)
    interval: int = 1  # the daemon's keepalive interval (its default is 1)
    health: HealthRecord | None = None  # the daemon's health tests, as the manifest records them

    @property
    def fire_after(self) -> int:
        """Seconds from the last keepalive to the hypervisor's WATCHDOG event: the ICH9 TCO counts down twice."""
        return info(self.model).stages * self.timeout


@dataclasses.dataclass
class Context:
    """What an inject function works with: the guest, the setup, the last readiness probe, and its notes."""

    guest: Guest
    setup: Setup
    probe: Probe
    notes: list[str] = dataclasses.field(default_factory=list)  # what the injection saw, for the report
    figures: dict = dataclasses.field(default_factory=dict)  # e.g. the migration's seconds and downtime


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # for --help and the README
    outcome: Outcome
    inject: Callable[[Context], None]
    window: Callable[[Setup], Window]
    crashes_kernel: bool = False  # the guest's kernel is dead after the fault (it cannot obey an ACPI shutdown)
    harmless: bool = False  # leaves the guest entirely alone: runs on someone's libvirt domain without consent
    health_test: HealthTest | None = None  # the daemon's health test it drills, which the image must configure
    needs: frozenset[Capability] = frozenset()  # what the backend must be able to do
    # Put the guest back as it was (resume, link up, ...): after the quiet wait, or right after the reboot event.
    # A returned text says what is wrong (a control whose fault left no trace proves nothing).
    restore: Callable[[Context], str | None] | None = None
    expect: Callable[[Context], tuple[Outcome, str] | None] | None = None  # overrides `outcome` from the guest

    def missing(self, setup: Setup) -> str | None:
        """Why this image cannot run it (the build option to add); None when it can."""
        return health_drill.missing(self.health_test, setup) if self.health_test else None


# --- inject functions ---------------------------------------------------------------------------------------

# Writes to /proc/sysrq-trigger are allowed whatever kernel.sysrq says; enable it anyway if it is 0.
PANIC_SH = ('[ "$(cat /proc/sys/kernel/sysrq)" != 0 ] || echo 1 > /proc/sys/kernel/sysrq; '
            "echo c > /proc/sysrq-trigger")


def _daemon_pid(ctx: Context) -> str:
    if ctx.probe.daemon_pid is None:
        raise RuntimeError("no watchdog daemon holds /dev/watchdog")
    return ctx.probe.daemon_pid


def panic(ctx: Context) -> None:
    ctx.guest.spawn(PANIC_SH)


# After kill/hang: who holds the device now, and what the init system made of it.
AFTER_FAULT_PROBE = HOLDERS_SH + r"""
echo '### holders'; holders
echo '### units'
if [ -d /run/systemd/system ]; then
  for unit in watchdog.service wd_keepalive.service; do echo "$unit $(systemctl is-active "$unit")"; done
  echo "watchdog.service has $(systemctl show -p Restart -p OnFailure watchdog.service | tr '\n' ' ')"
fi
"""
LOOK_AFTER_SECONDS = 3  # after kill/hang: long enough for systemd to react, well before the watchdog fires


def describe_after_fault(text: str) -> str:
    sections = parse_sections(text)
    holders = parse_holders(sections.get("holders", ""))
    units = ", ".join(line.strip() for line in sections.get("units", "").splitlines() if line.strip())
    said = "; ".join(map(str, holders)) or "nobody holds /dev/watchdog"
    return f"{said}{'; ' + units if units else ''}"


def _look_after(ctx: Context) -> None:
    """Who holds the device a few seconds after the daemon was killed or stopped (a keepalive that took over
    would keep the guest from ever being reset). Only where the watchdog cannot fire before we look; a guest
    that is reset meanwhile simply goes unobserved."""
    if ctx.setup.fire_after - ctx.setup.interval <= LOOK_AFTER_SECONDS + 2:
        return
    time.sleep(LOOK_AFTER_SECONDS)
    try:
        said = describe_after_fault(ctx.guest.run(AFTER_FAULT_PROBE, timeout=5).stdout)
    except (TimeoutError, ConnectionError) as e:
        said = f"no answer ({e or type(e).__name__})"
    ctx.notes.append(f"{LOOK_AFTER_SECONDS}s after the fault: {said}")


def kill_daemon(ctx: Context) -> None:
    ctx.guest.spawn('kill -KILL "$1"', _daemon_pid(ctx))
    _look_after(ctx)


def hang_daemon(ctx: Context) -> None:
    ctx.guest.spawn('kill -STOP "$1"', _daemon_pid(ctx))
    _look_after(ctx)


STOP_DAEMON_SH = ("if [ -d /run/systemd/system ]; then systemctl stop watchdog.service; "
                  "else rc-service watchdog stop; fi")
START_DAEMON_SH = ("if [ -d /run/systemd/system ]; then systemctl start watchdog.service; "
                   "else rc-service watchdog start; fi")


def stop_daemon(ctx: Context) -> None:
    result = ctx.guest.run(STOP_DAEMON_SH, timeout=60)
    ctx.notes.append(f"stopped the daemon (exit {result.exitcode})")


def start_daemon(ctx: Context) -> None:
    ctx.guest.run(START_DAEMON_SH, timeout=60)


def nowayout(ctx: Context) -> tuple[Outcome, str] | None:
    """A driver loaded with nowayout=1 cannot be stopped: a clean stop still ends in the watchdog firing."""
    driver = next((c.seen for c in ctx.probe.checks if c.name == "driver"), "")
    if "nowayout=1" in driver:
        return Outcome.FIRE, "the driver has nowayout=1: even a clean close cannot stop it"
    return None


# --- the proof (wdimage.drill.proof watches it): the daemon frozen while the hypervisor's action is none --------

# How each init system restarts the daemon, so that it re-opens /dev/watchdog (the re-arm after a fire that
# did not reset, where models.ModelInfo.reopen_after_fire). systemd: a stop and a separate start, not
# `systemctl restart` (Debian's unit fails its own stop and its OnFailure= wd_keepalive cancels the restart's
# start half; tests/real/test_drill.py).
RESTART_DAEMON = {
    "systemd": "systemctl stop watchdog.service; systemctl start watchdog.service",
    "openrc": "rc-service watchdog restart",
}
THAW_MARGIN_SECONDS = 20  # past the proof's whole wait: the guest's own thaw never races the host's

# $1 the daemon's pid, $2 seconds until the guest thaws it by itself, $3 the re-arm command ('' for none).
# Prints the boot id and the uptime (the proof shows the guest did not restart), then freezes the daemon and
# leaves a detached sleeper (its own session, no fd of guest-exec's) that thaws and re-arms the daemon if it
# is still stopped by then: a host side that dies mid-proof cannot leave the guest unfed.
FREEZE_SH = r"""
cat /proc/sys/kernel/random/boot_id; cut -d' ' -f1 /proc/uptime
kill -STOP "$1" || exit 3
setsid sh -c '
  sleep "$2"
  [ "$(sed -n "s/^State:[[:space:]]*\([A-Z]\).*/\1/p" "/proc/$1/status" 2>/dev/null)" = T ] || exit 0
  kill -CONT "$1"
  logger -t wdimage-proof "thawed the watchdog daemon (pid $1) after $2s: the host did not" 2>/dev/null
  [ -z "$3" ] || sh -c "$3"
' wdimage-proof-thaw "$1" "$2" "$3" </dev/null >/dev/null 2>&1 &
"""


def init_system(probe: Probe) -> str | None:
    """systemd or openrc, as the readiness probe's service check saw it."""
    seen = next((c.seen for c in probe.checks if c.name == "service"), "")
    return next((name for name in RESTART_DAEMON if seen.startswith(f"{name}:")), None)


def rearm_command(setup: "Setup", probe: Probe) -> str:
    """What re-arms the device after a fire that did not reset ('' where the next keepalive does)."""
    if not info(setup.model).reopen_after_fire:
        return ""
    init = init_system(probe)
    if init is None:
        raise RuntimeError(f"{setup.model} must be re-opened after the fire, but the guest runs neither "
                           f"{' nor '.join(RESTART_DAEMON)}: no known way to restart its daemon")
    return RESTART_DAEMON[init]


def proof_limit(setup: "Setup") -> float:
    """How long the proof waits for the fire (the window and the margin every FIRE scenario gets)."""
    return keepalives_stop(setup).high + MARGIN_SECONDS


def freeze(ctx: Context) -> None:
    """SIGSTOP to the daemon that holds /dev/watchdog: it keeps it open and stops feeding it."""
    pid = _daemon_pid(ctx)
    thaw_after = int(2 * proof_limit(ctx.setup) + THAW_MARGIN_SECONDS)  # the fire's wait, then the quiet one
    rearm = rearm_command(ctx.setup, ctx.probe)
    ctx.figures.update(frozen_pid=pid, thaw_after=thaw_after, rearm=rearm)  # the thaw's, whatever happens next
    result = ctx.guest.run(FREEZE_SH, pid, str(thaw_after), rearm, timeout=30)
    lines = result.stdout.split()
    if result.exitcode != 0 or len(lines) < 2:
        raise RuntimeError(f"could not freeze the daemon (pid {pid}): exit {result.exitcode} "
                           f"{result.stderr.strip()}")
    ctx.figures.update(boot_id=lines[0], uptime_before=float(lines[1]))
    ctx.notes.append(f"froze the daemon (pid {pid}); the guest thaws it by itself after {thaw_after}s")


def pause_twice_the_window(ctx: Context) -> None:
    """Paused for twice the window in which the watchdog would fire (stages x timeout: twice the timeout,
    four times for the ICH9 TCO, which counts down twice)."""
    ctx.guest.pause()
    seconds = 2 * ctx.setup.fire_after
    ctx.notes.append(f"paused for {seconds}s")
    with log.waiting(f"{seconds}s paused (twice the window), then the resume", at_most=seconds):
        time.sleep(seconds)
    ctx.guest.resume()


def nothing(ctx: Context) -> None:
    ctx.notes.append("left alone")


def migrate(ctx: Context) -> None:
    ctx.figures["migration"] = ctx.guest.migrate()
    ctx.notes.append(f"migrated in {ctx.figures['migration']['seconds']}s "
                     f"(downtime {ctx.figures['migration'].get('downtime_ms')} ms)")


def migrate_healthy(ctx: Context) -> None:
    migrate(ctx)
    ctx.guest.wait_agent(60)  # the daemon must still be pinging on the destination: the checks run after


MIGRATE_AFTER_PANIC_SECONDS = 2


def panic_then_migrate(ctx: Context) -> None:
    panic(ctx)
    time.sleep(MIGRATE_AFTER_PANIC_SECONDS)  # mid-countdown
    migrate(ctx)


def healthy_window(setup: Setup) -> Window:
    """Left alone, neither the watchdog nor any configured health test may act: the slowest window of the health
    tests that reboot (the REBOOT rows this image can run)."""
    slowest = max((s.window(setup) for s in SCENARIOS.values()
                   if s.outcome is Outcome.REBOOT and s.health_test and s.missing(setup) is None),
                  key=lambda w: w.high, default=None)
    if slowest is None or slowest.high <= setup.fire_after:
        return quiet_window(setup)
    return Window(0, slowest.high, f"the slowest health test would have rebooted within {slowest.high:.0f}s "
                                   f"({slowest.why})")


# In the order of `--fault all`: controls first (the guest stays up), then the faults that end in a reset.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("healthy", "control: the guest left alone must not be reset (no false positives)", Outcome.QUIET,
             nothing, healthy_window, harmless=True),
    Scenario("proof", "harmless proof: the hypervisor's action set to none, the daemon frozen until the watchdog "
                      "fires; the guest runs on, re-armed and the action restored", Outcome.PROOF, freeze,
             keepalives_stop, harmless=True),
    Scenario("pause", "control: the host pauses the guest for twice the window (S x T), then resumes it",
             Outcome.QUIET, pause_twice_the_window, quiet_window, needs=frozenset({Capability.PAUSE})),
    Scenario("stop", "control: a clean stop of the daemon (magic close) disarms the watchdog", Outcome.QUIET,
             stop_daemon, quiet_window, restore=start_daemon, expect=nowayout),
    Scenario("migrate", "control: live migration of a healthy guest: no reset on the destination",
             Outcome.QUIET, migrate_healthy, quiet_window, needs=frozenset({Capability.MIGRATE})),
    Scenario("test-repaired", "control: the test binary fails and the repair binary fixes it: no reboot",
             Outcome.QUIET, health_drill.break_test_repairably, health_drill.window_test,
             health_test=HealthTest("repair_binary", "--test-binary and --repair-binary (or --health-example)",
                                    without_break="build with --test-binary and --test-break: nothing for the "
                                                  "repair binary to repair"),
             restore=health_drill.repaired),
    Scenario("panic", "SysRq crash: the kernel dies and nobody pings the device", Outcome.FIRE, panic,
             keepalives_stop, crashes_kernel=True),
    Scenario("kill", "SIGKILL to the daemon: the device is never closed cleanly", Outcome.FIRE, kill_daemon,
             unclean_close),
    Scenario("hang", "SIGSTOP to the daemon: it holds the device and stops pinging it", Outcome.FIRE,
             hang_daemon, keepalives_stop),
    Scenario("migrate-panic", "panic, then live migration mid-countdown: the destination fires in time",
             Outcome.FIRE, panic_then_migrate, keepalives_stop, crashes_kernel=True,
             needs=frozenset({Capability.MIGRATE})),
    Scenario("net", "the host cuts the guest's link: the daemon's ping test fails", Outcome.REBOOT,
             health_drill.cut_link, health_drill.window_net, health_test=HealthTest("ping", "--ping 10.0.2.2"),
             needs=frozenset({Capability.LINK}), restore=health_drill.restore_link),
    Scenario("load", "busy loops past max-load-1: the daemon's load test fails", Outcome.REBOOT,
             health_drill.load, health_drill.window_load, health_test=HealthTest("max_load_1", "--max-load N")),
    Scenario("memory", "memory filled under min-memory: the daemon's memory test fails", Outcome.REBOOT,
             health_drill.fill_memory, health_drill.window_memory,
             health_test=HealthTest("min_memory", "--min-memory PAGES")),
    Scenario("service", "SIGKILL to the process of the watched pidfile", Outcome.REBOOT,
             health_drill.kill_service, health_drill.window_service,
             health_test=HealthTest("pidfiles", "--pidfile PATH (or --health-example)")),
    Scenario("test", "the test binary fails and its repair fails too", Outcome.REBOOT,
             health_drill.break_test, health_drill.window_test,
             health_test=HealthTest("test_binary", "--test-binary FILE --test-break COMMAND (or --health-example)",
                                    without_break="build with --test-break COMMAND: the manifest records no way "
                                                  "to make the test binary fail")),
]}


def safe_faults(choices: list[str] | None) -> list[str]:
    """--safe: the proof alone by default; a scenario that crashes, stops or pauses the guest is refused."""
    if not choices:
        return ["proof"]
    risky = [name for name in choices if name == "all" or not SCENARIOS[name].harmless]
    if risky:
        raise ValueError(f"--safe runs only what leaves the guest running ({', '.join(harmless_names())}), "
                         f"not --fault {', '.join(risky)}")
    return choices


def harmless_names() -> list[str]:
    return [name for name, s in SCENARIOS.items() if s.harmless]


def names() -> list[str]:
    """The scenarios in table order, which is `--fault all`'s."""
    return list(SCENARIOS)


def select(choices: list[str], setup: Setup, capabilities: frozenset[Capability]) -> tuple[list[Scenario], list[tuple[str, str]]]:
    """The scenarios to run, in order, and those left out of `all` with the reason.

    A scenario named explicitly that the image cannot run raises ValueError naming the build option.
    """
    chosen, left_out = [], []
    for name in (names() if "all" in choices else choices):
        scenario = SCENARIOS[name]
        missing = scenario.missing(setup)
        if missing:
            if "all" not in choices:
                raise ValueError(f"--fault {name}: this image has no such test configured; {missing}")
            left_out.append((name, missing))
            continue
        chosen.append(scenario)
    return chosen, left_out
