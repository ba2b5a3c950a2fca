"""The drill: boot a built image under QEMU, check that the watchdog is armed, crash the guest, prove the reset.

The work returns a DrillReport; render_text() and report_json() print it, apart from the work.
"""

import dataclasses
import enum
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from wdimage import log
from wdimage.errors import ExitCode, WdimageError, usage_error
from wdimage.jsonfile import read_json_object
from wdimage.launch import LaunchSpec
from wdimage.models import Action, Model, info
from wdimage.qemu import ExecResult, Guest, GuestAgent, ProtocolError, choose_accel, create_overlay, event_time, private_dir

AGENT_TIMEOUT = 240  # seconds from QEMU start (or a reset) to an answering guest agent; TCG on a busy host
BOOT_SETTLE_TIMEOUT = 120  # seconds for systemd to finish starting units once the agent answers
CHECK_RETRY_SECONDS = 10  # how long failing checks are retried (a daemon still starting) before they count
CHECK_RETRY_WITHOUT_SYSTEMD = 60  # OpenRC has no "boot finished" to wait for: poll the checks longer
MARGIN_SECONDS = 10  # past the configured timeout: i6300esb resets at second-stage expiry; TCG clocks drift


class Fault(enum.StrEnum):
    PANIC = "panic"  # SysRq crash: the kernel dies and nobody pings the device
    KILL = "kill"  # SIGKILL to the daemon: the device is never closed cleanly (no magic close)
    HANG = "hang"  # SIGSTOP to the daemon: it holds the device and stops pinging it


FAULT_CHOICES = [*Fault, "all"]


def faults_for(choice: str) -> list[Fault]:
    return list(Fault) if choice == "all" else [Fault(choice)]


# --- the build output ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BuildOutput:
    """What the drill needs from a `wdimage build` output directory's manifest.json."""

    directory: Path
    name: str
    distro: str
    release: str
    model: Model
    action: Action
    timeout: int
    image: Path
    kernel: Path | None  # direct kernel boot when set
    initrd: Path | None
    kernel_cmdline: str | None


def load_build(directory: Path) -> BuildOutput:
    """Read and validate DIR/manifest.json; a usage error (exit 2) names the file and the key at fault."""
    manifest_path = directory / "manifest.json"
    if not directory.is_dir():
        raise usage_error(f"{directory}: not a directory", hint="give the output directory of 'wdimage build'")
    manifest = read_json_object(manifest_path, hint="give the output directory of 'wdimage build'")

    def field(key: str, kind: type, required: bool = True):
        value = manifest.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise usage_error(f"{manifest_path}: key {key!r}: expected {kind.__name__}, found {value!r}")
        return value

    def choice(key: str, enum_type):
        value = field(key, str)
        try:
            return enum_type(value)
        except ValueError:
            raise usage_error(f"{manifest_path}: key {key!r}: {value!r} is not one of "
                              f"{', '.join(enum_type)}") from None

    model = choice("model", Model)
    timeout = field("timeout", int)
    low, high = info(model).timeout_range
    if not low <= timeout <= high:
        raise usage_error(f"{manifest_path}: key 'timeout': {timeout} is outside {model}'s range {low}..{high}")
    if not manifest.get("agent"):
        raise usage_error(f"{manifest_path}: key 'agent': the image has no QEMU guest agent; the drill needs it")
    boot = field("boot", str)
    if boot not in ("direct", "disk"):
        raise usage_error(f"{manifest_path}: key 'boot': {boot!r} is not 'direct' or 'disk'")
    files = field("files", dict)
    direct = boot == "direct"
    return BuildOutput(
        directory=directory, name=field("name", str), distro=field("distro", str),
        release=str(manifest.get("release", "")), model=model, action=choice("action", Action), timeout=timeout,
        image=_member(manifest_path, files, "image", True),
        kernel=_member(manifest_path, files, "kernel", direct) if direct else None,
        initrd=_member(manifest_path, files, "initrd", False) if direct else None,
        kernel_cmdline=field("kernel_cmdline", str, required=direct),
    )


def _member(manifest_path: Path, files: dict, key: str, required: bool) -> Path | None:
    """A file named in the manifest: a plain name inside the output directory, and present."""
    name = files.get(key)
    if name is None and not required:
        return None
    where = f"{manifest_path}: key 'files.{key}'"
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise usage_error(f"{where}: expected a file name inside the output directory, found {name!r}")
    path = manifest_path.parent / name
    if not path.is_file():
        raise usage_error(f"{where}: {path}: no such file")
    return path


# --- readiness checks ---------------------------------------------------------------------------------------

# Who holds /dev/watchdog*: "PID COMM TARGET STATE" lines. One `find` instead of a readlink per fd: under TCG
# every process the guest starts costs tens of milliseconds.
HOLDERS_SH = r"""
holders() {
  find /proc/[0-9]*/fd -lname '/dev/watchdog*' 2>/dev/null | while read -r fd; do
    pid=${fd#/proc/}; pid=${pid%%/*}; stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    set -- ${stat##*) }
    echo "$pid $(cat "/proc/$pid/comm") $(readlink "$fd") $1 ${20}"
  done
}
"""

# One script, one guest-exec: every check's raw material in sections. $1 is the driver's module name.
GUEST_PROBE = HOLDERS_SH + r"""
module=$1
echo '### driver'; dmesg 2>&1 | grep -i -F -e "$module" | tail -n 4
echo '### module'; grep -E "^$module " /proc/modules; [ -d "/sys/module/$module" ] && echo "present in /sys/module/$module"
echo '### device'; ls -l /dev/watchdog 2>&1
echo '### service'
if [ -d /run/systemd/system ]; then echo "systemd: $(systemctl is-active watchdog.service 2>&1)"
elif command -v rc-service >/dev/null; then echo "openrc: $(rc-service watchdog status 2>&1)"
else echo "no systemd or OpenRC"; fi
echo '### config'; grep -n -e 'watchdog-device' /etc/watchdog.conf 2>&1
echo '### holders'; holders
echo '### cmdline'; cat /proc/cmdline
echo '### panic'; cat /proc/sys/kernel/panic
echo '### timeout'; cat /sys/class/watchdog/watchdog0/timeout 2>&1
echo '### interval'; grep -E '^[[:space:]]*interval[[:space:]]*=' /etc/watchdog.conf
echo '### clock'; echo "$(cut -d' ' -f1 /proc/uptime) $(getconf CLK_TCK)"
"""

ACTIVE_DEVICE_LINE = re.compile(r"^\s*watchdog-device\s*=\s*/dev/watchdog\s*$")
DRIVER_TROUBLE = re.compile(r"cannot|fail|error|unable|not found", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    title: str
    passed: bool
    seen: str


def parse_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


@dataclasses.dataclass(frozen=True)
class Holder:
    """A process with /dev/watchdog* open."""

    pid: str
    comm: str
    target: str
    state: str  # R, S, T (stopped), ...
    start_ticks: int  # when it started, in clock ticks since the guest booted

    def __str__(self) -> str:
        return f"{self.comm} (pid {self.pid}, state {self.state}) holds {self.target}"

    @property
    def is_daemon(self) -> bool:
        return self.comm == "watchdog" and self.target == "/dev/watchdog"


def parse_holders(text: str) -> list[Holder]:
    holders = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[4].isdigit():
            holders.append(Holder(parts[0], parts[1], parts[2], parts[3], int(parts[4])))
    return holders


def daemon_age(sections: dict[str, str]) -> float | None:
    """Seconds the device-holding daemon had been running when the probe ran, from the guest's own clocks."""
    daemons = [h for h in parse_holders(sections.get("holders", "")) if h.is_daemon]
    try:
        uptime, ticks_per_second = sections.get("clock", "").split()
        return max(0.0, float(uptime) - daemons[0].start_ticks / int(ticks_per_second)) if daemons else None
    except ValueError:
        return None


def evaluate_checks(sections: dict[str, str], model: Model, timeout: int) -> list[Check]:
    """Each check passed or failed, with what was seen in the guest."""
    get = sections.get
    module = info(model).module
    driver = get("driver", "")
    modules = get("module", "")
    holders = parse_holders(get("holders", ""))
    config = get("config", "")
    service = get("service", "")
    return [
        Check("driver", f"{module} driver in the kernel log", bool(driver) and not DRIVER_TROUBLE.search(driver),
              driver.splitlines()[-1] if driver else f"no line mentioning {module} in dmesg"),
        Check("module", f"{module} module loaded", bool(modules),
              modules.splitlines()[0] if modules else f"{module} not in /proc/modules nor /sys/module"),
        Check("device", "/dev/watchdog present", get("device", "").startswith("c"),
              get("device", "") or "no output"),
        Check("service", "watchdog service active",
              service in ("systemd: active",) or service.startswith("openrc:") and "started" in service,
              service or "no output"),
        Check("config", "watchdog-device = /dev/watchdog active in /etc/watchdog.conf",
              any(ACTIVE_DEVICE_LINE.match(line.split(":", 1)[-1]) for line in config.splitlines()),
              config.replace("\n", " | ") or "no watchdog-device line in /etc/watchdog.conf"),
        Check("holder", "the daemon holds /dev/watchdog", any(h.is_daemon for h in holders),
              "; ".join(map(str, holders)) or "no process holds /dev/watchdog"),
        _panic_check(get("cmdline", ""), get("panic", "")),
        _timeout_check(get("timeout", ""), timeout),
    ]


def _panic_check(cmdline: str, panic: str) -> Check:
    """A kernel that reboots itself on panic would mask the watchdog: panic= must be 0."""
    params = [p for p in cmdline.split() if p.startswith("panic=")]
    offending = [p for p in params if p != "panic=0"]
    if panic.strip() != "0":
        offending.append(f"/proc/sys/kernel/panic={panic.strip() or '?'}")
    seen = ", ".join(offending) if offending else f"kernel.panic=0{', ' + params[-1] if params else ''}"
    return Check("panic", "the kernel does not reboot itself on panic", not offending, seen)


def _timeout_check(seen: str, timeout: int) -> Check:
    title = f"device timeout is the manifest's {timeout}s"
    if not seen.strip().isdigit():
        return Check("timeout", title, True, "not exposed in /sys/class/watchdog/watchdog0 (not verified)")
    return Check("timeout", title, int(seen) == timeout, f"{seen.strip()}s")


def ping_interval(sections: dict[str, str]) -> int:
    """The daemon's `interval` (seconds between keepalives; the watchdog daemon's default is 1)."""
    match = re.search(r"=\s*(\d+)", sections.get("interval", ""))
    return int(match.group(1)) if match else 1


@dataclasses.dataclass(frozen=True)
class Probe:
    checks: list[Check]
    daemon_started: float | None  # time.monotonic() when the daemon holding the device started
    interval: int
    daemon_pid: str | None  # the daemon holding /dev/watchdog, the target of the kill and hang faults


def run_checks(agent: GuestAgent, model: Model, timeout: int) -> Probe:
    result = agent.shell(GUEST_PROBE, info(model).module, timeout=60)
    sections = parse_sections(result.stdout)
    age = daemon_age(sections)
    daemon = next((h for h in parse_holders(sections.get("holders", "")) if h.is_daemon), None)
    return Probe(evaluate_checks(sections, model, timeout), None if age is None else time.monotonic() - age,
                 ping_interval(sections), daemon.pid if daemon else None)


# --- results ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FaultResult:
    fault: Fault
    passed: bool
    action: str | None  # the QMP WATCHDOG event's action; None when no event came
    seconds_to_reset: float | None  # fault to WATCHDOG event, by QEMU's event timestamp
    rebooted_armed: bool | None  # None where the action is not a reset
    seconds_back_armed: float | None = None  # WATCHDOG event to checks passing again
    detail: str = ""  # what happened, in words


@dataclasses.dataclass
class DrillReport:
    build: BuildOutput
    faults_requested: list[Fault]
    accel: str = "tcg"
    accel_reason: str = ""
    boot_to_agent_seconds: float | None = None
    boot_to_armed_seconds: float | None = None
    checks: list[Check] = dataclasses.field(default_factory=list)
    faults: list[FaultResult] = dataclasses.field(default_factory=list)
    diagnostics: Path | None = None  # the kept private dir (console logs) after a failure
    error: str = ""  # why the drill stopped early, if it did

    @property
    def passed(self) -> bool:
        return (not self.error and bool(self.checks) and all(c.passed for c in self.checks)
                and len(self.faults) == len(self.faults_requested) and all(f.passed for f in self.faults))

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.FAILED


# --- the drill ----------------------------------------------------------------------------------------------

class _Session:
    """One guest at a time, each booted on a fresh overlay; a guest that came back armed serves the next fault."""

    def __init__(self, build: BuildOutput, workdir: Path, accel: str):
        self.build = build
        self.workdir = workdir
        self.accel = accel
        self.boots = 0
        self.guest: Guest | None = None
        self.agent: GuestAgent | None = None
        self.probe: Probe | None = None  # the current guest's last readiness probe (it is armed)

    def boot(self) -> Guest:
        self.close()
        self.probe = None
        self.boots += 1
        n = self.boots
        overlay = self.workdir / f"boot{n}.qcow2"
        create_overlay(self.build.image, overlay)
        spec = launch_spec(self.build, overlay, self.accel, self.workdir, f"boot{n}")
        self.guest = Guest(spec, self.workdir / f"boot{n}-qemu.log")
        self.guest.start()
        return self.guest

    def connect_agent(self, timeout: float) -> GuestAgent:
        if self.agent is not None:
            self.agent.close()  # the channel takes one client; a reset guest needs a fresh sync anyway
            self.agent = None
        self.agent = self.guest.agent(timeout)
        return self.agent

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.guest is not None:
            self.guest.stop()
            self.guest = None


def launch_spec(build: BuildOutput, image: Path, accel: str, workdir: Path, tag: str) -> LaunchSpec:
    return LaunchSpec(
        model=build.model, action=build.action, image=image, kernel=build.kernel, initrd=build.initrd,
        cmdline=build.kernel_cmdline, accel=accel, qmp_socket=workdir / f"{tag}-qmp.sock",
        qga_socket=workdir / f"{tag}-qga.sock", serial=f"file:{workdir / f'{tag}-console.log'}",
    )


def run_drill(build: BuildOutput, faults: Sequence[Fault], prepare: Sequence[str] = ()) -> DrillReport:
    """Boot, check, then inject each fault and time the watchdog's answer.

    `prepare`: shell commands run in the guest once its boot settled, before the first checks (tests use it
    to break an image in its overlay, e.g. comment the device line out again).
    """
    report = DrillReport(build=build, faults_requested=list(faults))
    workdir = private_dir()
    session = _Session(build, workdir, "tcg")
    try:
        probe = launch_spec(build, build.image, "kvm", workdir, "probe")
        report.accel, report.accel_reason = choose_accel(probe, workdir)
        session.accel = report.accel
        log.info(f"accelerator: {report.accel} ({report.accel_reason})")
        _first_boot(session, report, prepare)
        if all(c.passed for c in report.checks):
            for fault in faults:
                report.faults.append(_drill_fault(session, report, fault))
    except WdimageError as e:  # QEMU or qemu-img refused, or a protocol broke
        report.error = e.message
    except (TimeoutError, ConnectionError) as e:
        report.error = str(e) or type(e).__name__
    finally:
        session.close()
        if report.passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report.diagnostics = workdir
    return report


def _first_boot(session: _Session, report: DrillReport, prepare: Sequence[str]) -> None:
    with log.step(f"Booting {report.build.name} ({report.accel}) and checking that the watchdog is armed"):
        guest = session.boot()
        checks, to_agent, to_armed = _wait_armed(session, guest.started_at, prepare)
        report.checks = checks
        report.boot_to_agent_seconds = to_agent
        report.boot_to_armed_seconds = to_armed if all(c.passed for c in checks) else None
        for check in checks:
            log.info(f"{'ok' if check.passed else 'FAILED'}: {check.title}: {check.seen}")


def _wait_armed(session: _Session, since: float, prepare: Sequence[str] = ()) -> tuple[list[Check], float, float]:
    """Checks once the guest agent answers and the boot settled: (checks, seconds to agent, seconds to armed),
    the seconds counted from `since` (a time.monotonic()).

    Failing checks are retried for a few seconds (a daemon still starting), then count as failed.
    """
    agent = session.connect_agent(AGENT_TIMEOUT)
    to_agent = time.monotonic() - since
    log.info(f"guest agent answered after {to_agent:.1f}s")
    retry = CHECK_RETRY_SECONDS
    try:  # systemd: wait for the start jobs (the watchdog unit runs after multi-user.target)
        settle = agent.shell("if [ -d /run/systemd/system ]; then systemctl is-system-running --wait; "
                             "else echo no-systemd; fi", timeout=BOOT_SETTLE_TIMEOUT)
        if settle.stdout.strip() == "no-systemd":
            retry = CHECK_RETRY_WITHOUT_SYSTEMD  # OpenRC: nothing to wait on; the checks themselves are polled
    except TimeoutError:
        log.info(f"the guest's boot did not settle within {BOOT_SETTLE_TIMEOUT}s; checking anyway")
    for command in prepare:
        _log_exec(command, agent.shell(command, timeout=60))
    deadline = time.monotonic() + retry
    while True:
        probe = run_checks(agent, session.build.model, session.build.timeout)
        if all(c.passed for c in probe.checks) or time.monotonic() > deadline:
            session.probe = probe
            # Armed when the daemon holding the device started (guest clocks), not when we happened to look.
            armed = probe.daemon_started if probe.daemon_started is not None else time.monotonic()
            return probe.checks, to_agent, max(armed - since, 0.0)
        time.sleep(1)


def _log_exec(command: str, result: ExecResult) -> None:
    output = (result.stdout + result.stderr).strip()
    log.info(f"guest$ {command} -> exit {result.exitcode}{': ' + output if output else ''}")


FAULT_SCRIPTS = {
    # Writes to /proc/sysrq-trigger are allowed whatever kernel.sysrq says; enable it anyway if it is 0.
    Fault.PANIC: "[ \"$(cat /proc/sys/kernel/sysrq)\" != 0 ] || echo 1 > /proc/sys/kernel/sysrq; "
                 "echo c > /proc/sysrq-trigger",
    Fault.KILL: 'kill -KILL "$1"',
    Fault.HANG: 'kill -STOP "$1"',
}

# After kill/hang: who holds the device now, and what the init system made of it.
AFTER_FAULT_PROBE = HOLDERS_SH + r"""
echo '### holders'; holders
echo '### units'
if [ -d /run/systemd/system ]; then
  for unit in watchdog.service wd_keepalive.service; do echo "$unit $(systemctl is-active "$unit")"; done
  echo "watchdog.service has $(systemctl show -p Restart -p OnFailure watchdog.service | tr '\n' ' ')"
fi
"""


def describe_after_fault(text: str) -> str:
    sections = parse_sections(text)
    holders = parse_holders(sections.get("holders", ""))
    units = ", ".join(line.strip() for line in sections.get("units", "").splitlines() if line.strip())
    said = "; ".join(map(str, holders)) or "nobody holds /dev/watchdog"
    return f"{said}{'; ' + units if units else ''}"


def _drill_fault(session: _Session, report: DrillReport, fault: Fault) -> FaultResult:
    build = report.build
    with log.step(f"Fault '{fault}': waiting up to {build.timeout + MARGIN_SECONDS}s for the watchdog"):
        if session.guest is None or not session.guest.alive():
            guest = session.boot()
            checks, _, _ = _wait_armed(session, guest.started_at)
            if not all(c.passed for c in checks):
                failed = ", ".join(c.title for c in checks if not c.passed)
                return FaultResult(fault, False, None, None, None, detail=f"not armed before the fault: {failed}")
        result = _inject_and_watch(session, build, fault)
        log.info(f"{'ok' if result.passed else 'FAILED'}: {result.detail}")
        if not result.rebooted_armed:
            session.close()  # the next fault gets a fresh boot
        return result


def _inject_and_watch(session: _Session, build: BuildOutput, fault: Fault) -> FaultResult:
    guest, agent = session.guest, session.agent
    guest.qmp.execute("query-status")  # reads pending events first: only this fault's events count
    guest.qmp.events.clear()
    args = []
    if fault is not Fault.PANIC:  # the daemon that the readiness probe just found holding the device
        if session.probe.daemon_pid is None:
            return FaultResult(fault, False, None, None, None, detail="no watchdog daemon holds /dev/watchdog")
        args = [session.probe.daemon_pid]
    fault_at = time.time()
    try:
        agent.spawn(["/bin/sh", "-c", FAULT_SCRIPTS[fault], "sh", *args], capture=False)
    except (TimeoutError, ConnectionError):
        if fault is not Fault.PANIC:
            raise  # a panic may take the agent down before it answers; nothing else should
    after = ""
    if fault is not Fault.PANIC:
        time.sleep(3)
        after = describe_after_fault(agent.shell(AFTER_FAULT_PROBE, timeout=20).stdout)
        log.info(f"3s after the fault: {after}")
    window = build.timeout + MARGIN_SECONDS
    event = guest.qmp.wait_event({"WATCHDOG"}, time.monotonic() + fault_at + window - time.time())
    if event is None:
        return _no_event(guest, fault, window, after)
    action = event.get("data", {}).get("action")
    seconds = round(event_time(event) - fault_at, 2)
    result = FaultResult(fault, action == build.action and seconds <= window, action, seconds, None)
    result.detail = (f"WATCHDOG {action} {seconds:.1f}s after the fault ({seconds / build.timeout:.2f} x the "
                     f"{build.timeout}s timeout; {_expected_window(fault, build.timeout, session.probe.interval)})")
    if after:
        result.detail += f"; 3s after the fault: {after}"
    if action != build.action:
        result.detail += f"; expected action {build.action}"
    if action == Action.RESET:
        _watch_comeback(session, result, event_time(event))
    else:
        result.detail += f"; QEMU then: {guest.status()}"
    return result


def _expected_window(fault: Fault, timeout: int, interval: int) -> str:
    if fault is Fault.KILL:  # watchdog_release(): an unclean close is answered with one last ping
        return f"expected {timeout}s: the kernel pings the device once when it is closed uncleanly"
    return f"expected {max(timeout - interval, 0)}-{timeout}s with a keepalive every {interval}s"


def _no_event(guest: Guest, fault: Fault, window: int, after: str) -> FaultResult:
    others = sorted({e["event"] for e in guest.qmp.events}) if guest.qmp else []
    detail = f"no WATCHDOG event within {window}s of the fault; QEMU status: {guest.status()}"
    if others:
        detail += f"; other events: {', '.join(others)}"
        if "RESET" in others:
            detail += " (the guest reset itself, not through the watchdog)"
    if after:
        detail += f"; 3s after the fault: {after}"
    return FaultResult(fault, False, None, None, None, detail=detail)


def _watch_comeback(session: _Session, result: FaultResult, reset_wall: float) -> None:
    """After a watchdog reset QEMU reboots the guest in the same process: it must come back armed."""
    since = time.monotonic() - (time.time() - reset_wall)
    try:
        checks, _, to_armed = _wait_armed(session, since)
    except (TimeoutError, ConnectionError, ProtocolError) as e:
        result.rebooted_armed, result.passed = False, False
        result.detail += f"; the guest did not come back: {e}"
        return
    result.rebooted_armed = all(c.passed for c in checks)
    result.passed = result.passed and result.rebooted_armed
    if result.rebooted_armed:
        result.seconds_back_armed = round(to_armed, 1)
        result.detail += f"; back and armed {to_armed:.1f}s after the reset"
    else:
        failed = "; ".join(f"{c.title}: {c.seen}" for c in checks if not c.passed)
        result.detail += f"; came back but not armed: {failed}"


# --- rendering ----------------------------------------------------------------------------------------------

def report_json(report: DrillReport) -> dict:
    build = report.build
    return {
        "schema": 1,
        "directory": str(build.directory), "name": build.name, "distro": build.distro, "release": build.release,
        "model": str(build.model), "action": str(build.action), "timeout": build.timeout,
        "accel": report.accel, "accel_reason": report.accel_reason,
        "boot_to_agent_seconds": _round(report.boot_to_agent_seconds),
        "boot_to_armed_seconds": _round(report.boot_to_armed_seconds),
        "checks": [dataclasses.asdict(c) for c in report.checks],
        "faults": [
            {"fault": str(f.fault), "passed": f.passed, "action": f.action, "seconds_to_reset": f.seconds_to_reset,
             "ratio_to_timeout": _round(f.seconds_to_reset / build.timeout if f.seconds_to_reset else None, 3),
             "rebooted_armed": f.rebooted_armed, "seconds_back_armed": f.seconds_back_armed, "detail": f.detail}
            for f in report.faults
        ],
        "passed": report.passed,
        "error": report.error or None,
        "diagnostics": str(report.diagnostics) if report.diagnostics else None,
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def render_text(report: DrillReport) -> str:
    build = report.build
    lines = [f"Drill of {build.directory} ({build.distro} {build.release}, {build.model}, "
             f"action {build.action}, timeout {build.timeout}s) under {report.accel.upper()}",
             f"  accelerator: {report.accel_reason}"]
    if report.boot_to_armed_seconds is not None:
        lines.append(f"  boot to armed: {report.boot_to_armed_seconds:.1f}s "
                     f"(guest agent after {report.boot_to_agent_seconds:.1f}s)")
    if report.checks:
        lines.append("Checks:")
        lines += [f"  {'PASS' if c.passed else 'FAIL'}  {c.title}: {c.seen}" for c in report.checks]
    if report.faults:
        lines.append("Faults:")
        lines += [f"  {'PASS' if f.passed else 'FAIL'}  {f.fault}: {f.detail}" for f in report.faults]
    skipped = [str(f) for f in report.faults_requested[len(report.faults):]]
    if skipped:
        lines.append(f"Not run: {', '.join(skipped)} (the guest was not armed)")
    if report.error:
        lines.append(f"Stopped: {report.error}")
    if report.diagnostics:
        lines.append(f"Console logs and QEMU output kept in {report.diagnostics}")
    lines.append(f"Result: {'PASSED' if report.passed else 'FAILED'}")
    return "\n".join(lines)
