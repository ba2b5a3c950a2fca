"""The watchdog daemon's own health tests, build side: the options that enable them, validated as watchdog 5.16
(Debian bookworm) parses them, the watchdog.conf lines and manifest record they become, and the files that go
into the image for them. How fast each test turns a fault into a reboot is the drill's (wdimage.drill.windows).
"""

import dataclasses
import ipaddress
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
