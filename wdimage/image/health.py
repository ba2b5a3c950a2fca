"""The watchdog daemon's own health tests: the build options that enable them, validated as watchdog 5.16
(Debian bookworm) parses them, what goes into the image for them, and the window in which each test turns a
fault into a reboot.

What the daemon does, read from its sources (src/watchdog.c wd_action(), src/shutdown.c) and watchdog.conf(5):
- Every `interval` seconds it pings the device, then runs each test in turn.
- Every failure but an unconditional reboot/reset request or overheating (ping: ENETUNREACH, interface,
  pidfile: ESRCH, a test binary's exit code, and in 5.16 also `max-load-1`: EMAXLOAD and `min-memory`: ENOMEM,
  on their own timers "<load-average>" and "<free-memory>"; measured: "Retry timed-out at 15 seconds for
  <load-average>") is retried: the first failure starts a timer, and a later failing check more than `retry-timeout` seconds after
  it (whole seconds of CLOCK_MONOTONIC) runs the repair binary, if any, with the error number and the test's
  name. The repair's exit 0 cancels the reboot (at most `repair-maximum` times in a row, default 1); anything
  else shuts down. Test-binary exit codes 245..255 and 12, 23, 24 are the daemon's own (see watchdog(8)).
- The soft reboot (do_orderly_shutdown): SIGTERM all, 2 x 1 s; 1 s for the log; SIGTERM, `sigterm-delay` - 1 s,
  SIGKILL; hwclock, swapoff, umount; then the hardware timer set to 1 s does the reset (so QEMU reports a
  WATCHDOG event about 1 s, or two stages, later), reboot(2) only if that fails.
- It logs "Retry timed-out at N seconds for NAME", "repair binary ... returned N", and
  "shutting down the system because of error N = 'TEXT'" (syslog, i.e. the journal).
"""

import dataclasses
import ipaddress
import math
import re
from pathlib import Path

from wdimage.errors import usage_error

# watchdog 5.16's defaults (watchdog.conf(5), the shipped /etc/watchdog.conf) and its sanity limits
# (check_parameters() in src/watchdog.c; wdimage never passes --force).
DEFAULT_RETRY_TIMEOUT = 60
DEFAULT_REPAIR_MAXIMUM = 1
DEFAULT_SIGTERM_DELAY = 5
MIN_LOAD = 2  # MINLOAD: a smaller max-load-1 needs --force
# QEMU user-mode networking (-netdev user,restrict=on): only these answer ICMP echo (DESIGN.md, measured).
USER_NET_ANSWERS = ("10.0.2.2", "10.0.2.3")

IPV4_RE = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
INTERFACE_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}")  # IFNAMSIZ - 1; no ':' aliases (watchdog.conf(5))
PIDFILE_RE = re.compile(r"/(?:[A-Za-z0-9._+-]+/)*[A-Za-z0-9._+-]+")
BINARY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
BREAK_RE = re.compile(r"[ -~]{1,300}")  # one printable line; it reaches the guest as an argument, never as script text

# In the guest.
GUEST_DIR = "/usr/local/lib/wdimage/health"
EXAMPLE_DIR = Path(__file__).resolve().parent / "health_example"
EXAMPLE_PIDFILE = "/run/wdimage-example.pid"
EXAMPLE_TEST = "wdimage-example-test"
EXAMPLE_REPAIR = "wdimage-example-repair"
EXAMPLE_SERVICE = "wdimage-example-service"
EXAMPLE_BREAK = "rm -f /run/wdimage-example/healthy"  # the example repair puts it back
EXAMPLE_BREAK_UNREPAIRABLE = "touch /run/wdimage-example/no-repair; rm -f /run/wdimage-example/healthy"


@dataclasses.dataclass(frozen=True)
class HealthSettings:
    """The daemon's health tests as the user asked for them, validated."""

    ping: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    max_load_1: int | None = None
    min_memory: int | None = None  # pages (4 KiB)
    pidfiles: tuple[str, ...] = ()
    test_binary: Path | None = None  # on the host; installed as GUEST_DIR/<name>
    repair_binary: Path | None = None
    retry_timeout: int | None = None  # None: the daemon's default
    test_break: str | None = None  # a command that makes the test binary fail (the drill's `test` fault)
    example: bool = False  # wdimage's example service, test and repair binaries

    @property
    def network_tests(self) -> bool:
        return bool(self.ping or self.interfaces)

    @property
    def any(self) -> bool:
        return bool(self.network_tests or self.max_load_1 or self.min_memory or self.pidfiles
                    or self.test_binary or self.repair_binary)

    def guest_path(self, binary: Path | None) -> str | None:
        return f"{GUEST_DIR}/{binary.name}" if binary else None

    def binaries(self) -> dict[str, Path]:
        """name in GUEST_DIR -> host file, for everything the image gets."""
        files = {b.name: b for b in (self.test_binary, self.repair_binary) if b}
        if self.example:
            files[EXAMPLE_SERVICE] = EXAMPLE_DIR / EXAMPLE_SERVICE
        return files


def make_health(*, ping=(), interfaces=(), max_load_1=None, min_memory=None, pidfiles=(), test_binary=None,
                repair_binary=None, retry_timeout=None, test_break=None, example=False,
                timeout: int = 15) -> HealthSettings:
    """Validate the health-test options (exit 2 naming the option and the reason) as the daemon would parse
    them, and refuse combinations that would reboot a healthy guest."""
    for target in ping:
        _check_ping(target)
    for name in interfaces:
        if not INTERFACE_RE.fullmatch(name):
            raise usage_error(f"--interface {name!r}: expected a network interface name (at most 15 letters, "
                              "digits, '.', '_', '-'; the daemon checks physical interfaces, not ':' aliases)")
    if interfaces and not ping:
        raise usage_error(f"--interface {interfaces[0]}: an idle link receives nothing, and the daemon reboots a "
                          "guest whose interface received nothing in an interval",
                          hint=f"add --ping {USER_NET_ANSWERS[0]}: its echo replies are the traffic the test sees")
    if max_load_1 is not None and not MIN_LOAD <= max_load_1 <= 10000:
        raise usage_error(f"--max-load {max_load_1}: expected {MIN_LOAD}..10000 (the daemon refuses a 1-minute "
                          f"load limit under {MIN_LOAD} without --force: it would reboot a busy healthy guest)")
    if min_memory is not None and not 1 <= min_memory <= 1 << 30:
        raise usage_error(f"--min-memory {min_memory}: expected a number of 4 KiB pages, 1..{1 << 30}")
    for path in pidfiles:
        if not PIDFILE_RE.fullmatch(path) or "/../" in f"{path}/" or "/./" in f"{path}/":
            raise usage_error(f"--pidfile {path!r}: expected an absolute path in the guest "
                              "(letters, digits, '.', '_', '+', '-', '/')")
    test = _binary("--test-binary", test_binary)
    repair = _binary("--repair-binary", repair_binary)
    if test and repair and test.name == repair.name:
        raise usage_error(f"--repair-binary {repair_binary}: has the same name as --test-binary; both are "
                          f"installed in {GUEST_DIR}", hint="rename one of them")
    retry_max = max(120, 15 * timeout)  # check_parameters(): max_timeout
    if retry_timeout is not None and not 0 <= retry_timeout <= retry_max:
        raise usage_error(f"--retry-timeout {retry_timeout}: the daemon accepts 0..{retry_max} seconds "
                          f"with watchdog-timeout {timeout}")
    if test_break is not None:
        if not (test or example):
            raise usage_error("--test-break: needs --test-binary (the command breaks what the test watches)")
        if not BREAK_RE.fullmatch(test_break):
            raise usage_error(f"--test-break {test_break!r}: expected one printable line, at most 300 characters")
    if example:
        pidfiles = tuple(dict.fromkeys((*pidfiles, EXAMPLE_PIDFILE)))
        test = test or EXAMPLE_DIR / EXAMPLE_TEST
        repair = repair or EXAMPLE_DIR / EXAMPLE_REPAIR
    return HealthSettings(tuple(ping), tuple(interfaces), max_load_1, min_memory, tuple(pidfiles), test, repair,
                          retry_timeout, test_break, example)


def _check_ping(target: str) -> None:
    if not IPV4_RE.fullmatch(target):
        try:
            ipaddress.ip_address(target)
            why = "the daemon pings IPv4 only"
        except ValueError:
            why = "the daemon takes an IPv4 address, not a host name (a name makes it exit at start-up)"
        raise usage_error(f"--ping {target!r}: {why}")
    if target not in USER_NET_ANSWERS:
        raise usage_error(f"--ping {target}: unreachable from the guest's network, so the daemon would reboot a "
                          "healthy guest: QEMU user-mode networking (-netdev user,restrict=on) answers ping only "
                          f"from {' and '.join(USER_NET_ANSWERS)}",
                          hint=f"--ping {USER_NET_ANSWERS[0]} (the gateway)")


def _binary(option: str, value) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise usage_error(f"{option} {value}: no such file")
    if not BINARY_NAME_RE.fullmatch(path.name):
        raise usage_error(f"{option} {value}: the file name may only contain letters, digits, '.', '_', '+', '-'")
    head = path.read_bytes()[:4]
    if not (head.startswith(b"#!") or head == b"\x7fELF"):
        raise usage_error(f"{option} {value}: not a script with a #! line nor an ELF binary; the daemon execs it")
    return path.absolute()


# --- what the image records ---------------------------------------------------------------------------------

def conf_values(health: HealthSettings) -> dict:
    """The watchdog.conf lines for these tests, in the template's terms."""
    return {
        "ping": health.ping, "interfaces": health.interfaces, "max_load_1": health.max_load_1,
        "min_memory": health.min_memory, "pidfiles": health.pidfiles,
        "test_binary": health.guest_path(health.test_binary),
        "repair_binary": health.guest_path(health.repair_binary),
        "retry_timeout": health.retry_timeout,
    }


def manifest_record(health: HealthSettings) -> dict:
    """manifest.json's `health`: what is configured, and how the drill breaks each watched thing."""
    test = health.guest_path(health.test_binary)
    breaks = {}
    if health.example:
        breaks = {"test": EXAMPLE_BREAK, "test_unrepairable": EXAMPLE_BREAK_UNREPAIRABLE}
    if health.test_break:
        breaks["test"] = health.test_break
    return {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in conf_values(health).items()},
        "retry_timeout": health.retry_timeout if health.retry_timeout is not None else DEFAULT_RETRY_TIMEOUT,
        "repair_maximum": DEFAULT_REPAIR_MAXIMUM, "sigterm_delay": DEFAULT_SIGTERM_DELAY,
        "example": health.example, "break": breaks, "test_binary": test,
    }


# --- the expected windows -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Timing:
    """The watchdog.conf values that decide how fast a failing test reboots the guest."""

    interval: int
    retry_timeout: int = DEFAULT_RETRY_TIMEOUT
    sigterm_delay: int = DEFAULT_SIGTERM_DELAY
    stages: int = 1  # countdowns of the final 1 s timeout before the reset (models.ModelInfo.stages: iTCO 2)
    shutdown_work: float = 4.0  # hwclock, swapoff, umount -a under TCG: measured, not from the sources


@dataclasses.dataclass(frozen=True)
class Window:
    low: float
    high: float
    reasoning: str

    def contains(self, seconds: float) -> bool:
        return self.low <= seconds <= self.high


def soft_reboot_seconds(t: Timing) -> tuple[float, float]:
    """From the daemon's decision to QEMU's reset: do_orderly_shutdown() then the 1 s hardware timer."""
    fixed = 2 + 1 + t.sigterm_delay  # SIGTERM x2 with 1 s each; 1 s for the log; SIGTERM, delay - 1, SIGKILL
    return fixed + t.stages - 0.5, fixed + t.shutdown_work + t.stages + 1


def retried_window(t: Timing, *, check_seconds: float = 0.0, detect_intervals: int = 1, test: str = "") -> Window:
    """A repairable failure (ping, interface, pidfile, test binary): seen at the test's next check, then it
    must still fail at a check more than retry-timeout whole seconds later; a failing check may itself take
    `check_seconds` (a ping waits up to one interval for replies)."""
    period = t.interval + check_seconds  # one loop while the test fails
    shut_low, shut_high = soft_reboot_seconds(t)
    detect_high = detect_intervals * period
    if t.retry_timeout == 0:
        retry_low, retry_high = 0.0, 0.0
    else:  # (int)(now - first) > retry_timeout, in whole seconds, checked once per loop
        retry_low, retry_high = float(t.retry_timeout), t.retry_timeout + 1 + period
    low = retry_low + shut_low  # a failing check can also fail at once (ping: no route once the link is down)
    high = detect_high + retry_high + shut_high
    why = (f"{test}: seen within {detect_high:.0f}s ({detect_intervals} x a {period:.0f}s loop), retried for "
           f"more than retry-timeout {t.retry_timeout}s, then the soft reboot {shut_low:.0f}-{shut_high:.0f}s "
           f"(sigterm-delay {t.sigterm_delay}s, the hardware timer set to 1s)")
    return Window(round(low, 1), round(high, 1), why)


def unretried_window(t: Timing, test: str, before: float = 0.0, why_before: str = "") -> Window:
    """A failure the daemon does not retry (5.16's wd_action: ENOMEM, like EREBOOT, ERESET and ETOOHOT, is
    "not repairable"): seen at the next check, then the soft reboot at once. `before`: up to how long the
    fault itself may take to make the test fail."""
    shut_low, shut_high = soft_reboot_seconds(t)
    high = before + t.interval + shut_high
    why = (f"{test}: {why_before + ', ' if why_before else ''}seen within {t.interval}s, not retried (the daemon "
           f"does not repair it), then the soft reboot {shut_low:.0f}-{shut_high:.0f}s (sigterm-delay "
           f"{t.sigterm_delay}s, the hardware timer set to 1s)")
    return Window(round(shut_low, 1), round(high, 1), why)


# The kernel's load average (kernel/sched/loadavg.c): fixed point, FSHIFT 11, sampled every LOAD_FREQ.
FSHIFT, FIXED_1, EXP_1, LOAD_FREQ = 11, 1 << 11, 1884, 5.004


def load_samples_to_reach(limit: float, runnable: int, start: float) -> int:
    """Kernel load samples until the 1-minute average reaches `limit` with `runnable` tasks, from `start`."""
    load = int(start * FIXED_1)
    active = runnable * FIXED_1
    for n in range(1, 10000):
        newload = load * EXP_1 + active * (FIXED_1 - EXP_1)
        if active >= load:
            newload += FIXED_1 - 1
        load = newload // FIXED_1
        if load / FIXED_1 >= limit:
            return n
    raise ValueError(f"{runnable} runnable tasks never bring the load to {limit}")


def load_window(t: Timing, max_load: int, spinners: int, start_load: float, extra_tasks: int = 2) -> Window:
    """`spinners` busy loops from a load of `start_load`: the first kernel sample at or above max-load-1
    (the daemon compares integer parts, "higher than": max-load + 1 bounds the slow side), then retried like
    any test (5.16), then the soft reboot."""
    fast = load_samples_to_reach(max_load, spinners + extra_tasks, start_load)
    slow = load_samples_to_reach(max_load + 1, spinners, start_load)
    retried = retried_window(t, test="load")
    low = (fast - 1) * LOAD_FREQ + retried.low
    high = slow * LOAD_FREQ + retried.high
    why = (f"load: {spinners} busy loops from load {start_load:.2f} pass max-load-1 {max_load} after "
           f"{fast}-{slow} kernel samples ({LOAD_FREQ}s apart), then {retried.reasoning[len('load: '):]}")
    return Window(round(low, 1), round(high, 1), why)


def spinners_for(max_load: int) -> int:
    """Busy loops for the load fault: enough to pass max-load-1 + 1 within about 20 s."""
    return 4 * (max_load + 1)


def window(test: str, t: Timing) -> Window:
    """The expected fault -> reset window of a retried test: net (ping), interface, service (pidfile), test."""
    if test == "net":  # the failing ping check waits up to one interval for its ping-count replies
        return retried_window(t, check_seconds=t.interval, test="ping")
    if test == "interface":  # no rx bytes between two checks: up to two loops to see it
        return retried_window(t, detect_intervals=2, test="interface")
    if test in ("service", "test"):
        return retried_window(t, test="pidfile" if test == "service" else "test binary")
    raise ValueError(f"no retried window for {test!r}")


def quiet_seconds(w: Window) -> float:
    """How long a control (or a repaired test) must stay without a reset: twice the window's upper bound."""
    return math.ceil(2 * w.high)


# --- what the build hands to diskimage-builder ----------------------------------------------------------------

def input_files(health: HealthSettings) -> dict[str, bytes]:
    """`health/NAME` -> content, for wdimage.image.build.write_inputs: the binaries the image gets in GUEST_DIR."""
    return {f"health/{name}": path.read_bytes() for name, path in health.binaries().items()}


def dib_environment(health: HealthSettings, inputs: dict) -> list[tuple[str, str]]:
    """The wdimage-watchdog element's health variables (elements/wdimage-watchdog/README.rst)."""
    env = [("DIB_WATCHDOG_NETWORK_TESTS", "1" if health.network_tests else "0"),
           ("DIB_WATCHDOG_HEALTH_EXAMPLE", "1" if health.example else "0")]
    binaries = [path for name, path in inputs.items() if name.startswith("health/")]
    if binaries:
        env.append(("DIB_WATCHDOG_HEALTH_DIR", str(binaries[0].parent)))
    return env
