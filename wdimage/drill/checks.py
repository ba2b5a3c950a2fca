"""The readiness probe: what the seed article's comment thread checks by hand, in one guest-exec.
The script only reads: `wdimage audit` runs it on other people's guests (wdimage.vm.libvirt_guest's read-only view
runs nothing else).

Driver in dmesg, module loaded, /dev/watchdog present, service running, the `watchdog-device` line active, who
holds the device, a kernel that does not reboot itself on panic, no crash kernel waiting to take the panic, and
the device's timeout. Each check says what was seen and, when it failed, the concrete fix.
"""

import dataclasses
import re
import time

from wdimage.models import Model, info
from wdimage.vm.guest import Guest

# Who holds /dev/watchdog*: "PID COMM TARGET STATE" lines. Under TCG every program the guest starts costs tens of
# milliseconds (cat 80 ms, ls 130 ms, systemctl 150-190 ms, measured in the 1-vCPU test guest), a shell builtin
# about one: one `find`, and `read` instead of cat.
HOLDERS_SH = r"""
holders() {
  find /proc/[0-9]*/fd -lname '/dev/watchdog*' 2>/dev/null | while read -r fd; do
    pid=${fd#/proc/}; pid=${pid%%/*}
    { read -r stat < "/proc/$pid/stat" && read -r comm < "/proc/$pid/comm"; } 2>/dev/null || continue
    set -- ${stat##*) }
    echo "$pid $comm $(readlink "$fd") $1 ${20}"
  done
}
"""

# One script, one guest-exec: every check's raw material in sections. $1 is the driver's module name. Files are
# read with the shell's own `read` (show), dmesg runs once: 1.4 s instead of 3.2 s in that guest, the same output.
GUEST_PROBE = HOLDERS_SH + r"""
show() { while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done < "$1"; } 2>/dev/null
module=$1
messages=$(dmesg 2>&1)
echo '### driver'; printf '%s\n' "$messages" | grep -i -F -e "$module" | grep -v -F 'Modules linked in:' | tail -n 4
echo '### module'
while read -r name rest; do [ "$name" = "$module" ] && echo "$name $rest"; done < /proc/modules
[ -d "/sys/module/$module" ] && echo "present in /sys/module/$module"
echo '### device'; ls -l /dev/watchdog 2>&1
echo '### service'
if [ -d /run/systemd/system ]; then echo "systemd: $(systemctl is-active watchdog.service 2>&1)"
elif command -v rc-service >/dev/null; then echo "openrc: $(rc-service watchdog status 2>&1)"
else echo "no systemd or OpenRC"; fi
echo '### config'; grep -n -e 'watchdog-device' /etc/watchdog.conf 2>&1
echo '### holders'; holders
read -r cmdline < /proc/cmdline
echo '### cmdline'; echo "$cmdline"
echo '### panic'; show /proc/sys/kernel/panic
echo '### timeout'; show /sys/class/watchdog/watchdog0/timeout
echo '### interval'; grep -E '^[[:space:]]*interval[[:space:]]*=' /etc/watchdog.conf
read -r up _ < /proc/uptime
echo '### clock'; echo "$up $(getconf CLK_TCK)"
echo '### armed-at'; show /run/wdimage/armed-at
echo '### armed-by'; show /run/wdimage/armed-by
echo '### boot'; printf '%s\n' "$messages" | grep -E 'Run /init as init process|systemd\[1\]: (systemd .* running in system mode|Running in initrd)|dracut: Switching root|watchdog did not stop'
echo '### kexec'; show /sys/kernel/kexec_crash_loaded
echo '### kernel'; show /proc/sys/kernel/osrelease
echo '### identity'; for d in /sys/class/watchdog/watchdog*; do [ -e "$d/identity" ] && read -r v < "$d/identity" && echo "${d##*/}: $v"; done
echo '### blacklist'
grep -rsnE "^[[:space:]]*(blacklist|install)[[:space:]]+$module([[:space:]]|$)" \
  /etc/modprobe.d /run/modprobe.d /usr/lib/modprobe.d /lib/modprobe.d
for p in $cmdline; do
  case $p in module_blacklist=*|modprobe.blacklist=*) echo "/proc/cmdline: $p";; esac
done
echo '### runtime-watchdog'; [ -d /run/systemd/system ] && systemctl show -p RuntimeWatchdogUSec --value 2>/dev/null
echo '### nowayout'
for d in /sys/class/watchdog/watchdog*; do [ -e "$d/nowayout" ] && read -r v < "$d/nowayout" && echo "${d##*/}: $v"; done
echo '### conf-timeout'; grep -E '^[[:space:]]*watchdog-timeout[[:space:]]*=' /etc/watchdog.conf 2>/dev/null
"""

ACTIVE_DEVICE_LINE = re.compile(r"^\s*watchdog-device\s*=\s*/dev/watchdog\s*$")
DRIVER_TROUBLE = re.compile(r"cannot|fail|error|unable|not found", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    title: str
    passed: bool
    seen: str
    fix: str = ""  # what to change when the check failed

    def with_fix(self, module: str, model: str) -> "Check":
        """The check, with the concrete fix filled in when it failed."""
        if self.passed or self.name not in FIXES:
            return self
        return dataclasses.replace(self, fix=FIXES[self.name].replace("MODULE", module).replace("MODEL", model))


# The concrete fix for each failed check, as the seed's comment thread would have needed it.
FIXES = {
    "driver": "load the driver (modprobe MODULE) and read dmesg for why it did not bind; the hypervisor needs the "
              "watchdog device (QEMU -device MODEL, or <watchdog model=...> in the libvirt domain)",
    "module": "modprobe MODULE, and list it in /etc/modules-load.d/ so that it loads at every boot",
    "device": "/dev/watchdog appears when a watchdog driver binds: load the module, check the device in the VM",
    "service": "enable and start the daemon: systemctl enable --now watchdog (OpenRC: rc-update add watchdog "
               "default; rc-service watchdog start)",
    "config": "uncomment `watchdog-device = /dev/watchdog` in /etc/watchdog.conf (Debian ships it commented out) "
              "and restart the daemon",
    "holder": "the daemon must hold /dev/watchdog: set watchdog-device in /etc/watchdog.conf, stop whatever "
              "else holds it (wd_keepalive, systemd's RuntimeWatchdogSec), restart the daemon",
    "panic": "remove panic=N from the kernel command line and set kernel.panic=0, or the kernel reboots itself "
             "and the watchdog is never tested",
    "identity": "another watchdog driver took /dev/watchdog first: blacklist it (modprobe.d) so that only "
                "MODULE drives the device, or choose that model",
    "kexec": "a crash kernel is loaded (kdump): a panic boots it instead of hanging; disable kdump for the drill "
             "(systemctl disable --now kdump) or drill the kill/hang faults only",
    "timeout": "set watchdog-timeout in /etc/watchdog.conf to the expected value and restart the daemon",
}


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


def _daemon_started(sections: dict[str, str]) -> tuple[Holder, float, float] | None:
    """The daemon holding /dev/watchdog, the guest's uptime when it started and the uptime now; None where
    nobody holds it or the clocks are unreadable."""
    daemon = next((h for h in parse_holders(sections.get("holders", "")) if h.is_daemon), None)
    try:
        uptime, ticks_per_second = sections.get("clock", "").split()
        return (daemon, daemon.start_ticks / int(ticks_per_second), float(uptime)) if daemon else None
    except (ValueError, ZeroDivisionError):
        return None


def _armed_stamp(sections: dict[str, str]) -> float | None:
    """The uptime the first keepalive armed the device at (/run/wdimage/armed-at), if the image wrote it."""
    try:
        return float(sections.get("armed-at", "").strip())
    except ValueError:
        return None


def daemon_age(sections: dict[str, str]) -> float | None:
    """Seconds the device had been armed when the probe ran, from the guest's own clocks: since the daemon
    holding it started, or earlier, since the image's early keepalive armed it (its uptime stamp in
    /run/wdimage/armed-at, written by the initramfs or elements/wdimage-watchdog/install.d/77-wdimage-watchdog-health), while
    the daemon holds it."""
    started = _daemon_started(sections)
    if started is None:
        return None
    _, at, uptime = started
    stamp = _armed_stamp(sections)
    return max(0.0, uptime - (at if stamp is None else min(at, stamp)))


def evaluate_checks(sections: dict[str, str], model: Model, timeout: int) -> list[Check]:
    """Each check passed or failed, with what was seen in the guest."""
    get = sections.get
    module = info(model).module
    driver = get("driver", "")
    modules = get("module", "")
    holders = parse_holders(get("holders", ""))
    config = get("config", "")
    service = get("service", "")
    checks = [
        _driver_check(driver, model),
        Check("module", f"{module} module loaded", bool(modules),
              modules.splitlines()[0] if modules else f"{module} not in /proc/modules nor /sys/module"),
        Check("device", "/dev/watchdog present", get("device", "").startswith("c"),
              get("device", "") or "no output"),
        Check("service", "watchdog service active",
              service in ("systemd: active",) or service.startswith("openrc:") and "started" in service,
              service or "no output"),
        Check("config", "watchdog-device = /dev/watchdog active in /etc/watchdog.conf",
              any(ACTIVE_DEVICE_LINE.fullmatch(line.split(":", 1)[-1]) for line in config.splitlines()),
              config.replace("\n", " | ") or "no watchdog-device line in /etc/watchdog.conf"),
        Check("holder", "the daemon holds /dev/watchdog", any(h.is_daemon for h in holders),
              "; ".join(map(str, holders)) or "no process holds /dev/watchdog"),
        _panic_check(get("cmdline", ""), get("panic", "")),
        _identity_check(get("identity", ""), model),
        _kexec_check(get("kexec", "")),
        _timeout_check(get("timeout", ""), timeout),
    ]
    return [_at_the_line(c.with_fix(module, str(model))) for c in checks]


COMMENTED_DEVICE_LINE = re.compile(r"(\d+):\s*#\s*watchdog-device\s*=\s*/dev/watchdog\s*$")


def _at_the_line(check: Check) -> Check:
    """The seed's bug, pointed at: which line of /etc/watchdog.conf to uncomment, and the command that does it."""
    if check.name != "config" or check.passed:
        return check
    lines = [m.group(1) for part in check.seen.split(" | ") if (m := COMMENTED_DEVICE_LINE.fullmatch(part.strip()))]
    if not lines:
        return check
    return dataclasses.replace(check, fix=(
        f"uncomment `watchdog-device = /dev/watchdog` on line {lines[0]} of /etc/watchdog.conf (Debian ships it "
        f"commented out): sed -i '{lines[0]}s/^[[:space:]]*#[[:space:]]*//' /etc/watchdog.conf, then restart the daemon "
        f"(systemctl restart watchdog; OpenRC: rc-service watchdog restart)"))


def _identity_check(seen: str, model: Model) -> Check:
    """/dev/watchdog is watchdog0: on q35 beside the built-in iTCO, it must be the model's own device."""
    expected = info(model).identity
    title = f"/dev/watchdog is the {model} device ({expected})"
    devices = dict(line.split(": ", 1) for line in seen.splitlines() if ": " in line)
    if "watchdog0" not in devices:
        return Check("identity", title, True, "no /sys/class/watchdog/watchdog0/identity (not verified)")
    shown = "; ".join(f"{name}: {ident}" for name, ident in sorted(devices.items()))
    return Check("identity", title, devices["watchdog0"] == expected, shown)


def _kexec_check(loaded: str) -> Check:
    title = "no crash kernel loaded (a panic must hang the guest, not boot kdump)"
    if loaded.strip() not in ("0", "1"):
        return Check("kexec", title, True, "no /sys/kernel/kexec_crash_loaded (kexec not built in)")
    return Check("kexec", title, loaded.strip() == "0", f"kexec_crash_loaded={loaded.strip()}")


def _panic_check(cmdline: str, panic: str) -> Check:
    """A kernel that reboots itself on panic would mask the watchdog: panic= must be 0."""
    params = [p for p in cmdline.split() if p.startswith("panic=")]
    offending = [p for p in params if p != "panic=0"]
    if panic.strip() != "0":
        offending.append(f"/proc/sys/kernel/panic={panic.strip() or '?'}")
    seen = ", ".join(offending) if offending else f"kernel.panic=0{', ' + params[-1] if params else ''}"
    return Check("panic", "the kernel does not reboot itself on panic", not offending, seen)


def _driver_check(driver: str, model: Model) -> Check:
    """The driver's line in dmesg, and none of its failures; a driver that prints only its failures (info(model)
    .logs_bind False, as diag288_wdt) passes on silence, and the identity check says whether it bound."""
    module = info(model).module
    if driver:
        return Check("driver", f"{module} driver in the kernel log", not DRIVER_TROUBLE.search(driver),
                     driver.splitlines()[-1])
    if not info(model).logs_bind:
        return Check("driver", f"no {module} failure in the kernel log", True,
                     f"no line mentioning {module} in dmesg ({module} prints only its failures)")
    return Check("driver", f"{module} driver in the kernel log", False, f"no line mentioning {module} in dmesg")


def _timeout_check(seen: str, timeout: int) -> Check:
    title = f"device timeout is the configured {timeout}s (watchdog-timeout)"
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
    kernel: str = ""  # uname -r in the guest
    boot: "BootTimeline | None" = None

    @property
    def armed(self) -> bool:
        return all(c.passed for c in self.checks)


def run_checks(guest: Guest, model: Model, timeout: int) -> Probe:
    result = guest.run(GUEST_PROBE, info(model).module, timeout=60)
    sections = parse_sections(result.stdout)
    age = daemon_age(sections)
    started = _daemon_started(sections)
    daemon = started[0] if started else None
    return Probe(evaluate_checks(sections, model, timeout), None if age is None else time.monotonic() - age,
                 ping_interval(sections), daemon.pid if daemon else None, sections.get("kernel", ""),
                 boot_timeline(sections))


@dataclasses.dataclass(frozen=True)
class BootTimeline:
    """Where a boot's seconds went, in the guest kernel's uptime (seconds since its clock started)."""
    armed_by: str = ""  # who armed the device first: "initramfs", "wdimage-keepalive" or "" (no stamp)
    armed: float | None = None  # /run/wdimage/armed-at
    init: float | None = None  # the kernel ran the initramfs's /init
    real_root: float | None = None  # systemd started in the real root (not logged by other inits)
    daemon: float | None = None  # the daemon that holds /dev/watchdog now started
    handovers: int = 0  # keepalives that let go of the device still armed (the kernel: "watchdog did not stop!")

    def as_dict(self) -> dict[str, float | str | None]:
        return dataclasses.asdict(self)


# The boot's log lines, one row each: (pattern, what the line says). initramfs-tools and dracut's shell init run
# no systemd before the real root; dracut's systemd initrd runs one, whose banner is followed by "Running in
# initrd" and is not the real root's; dracut's shell init says when it switches to the real root.
BOOT_LINES = (
    (re.compile(r"Run /init as init process"), "init"),
    (re.compile(r"systemd\[1\]: systemd .* running in system mode"), "systemd"),
    (re.compile(r"systemd\[1\]: Running in initrd"), "systemd-in-initrd"),
    (re.compile(r"dracut: Switching root"), "real_root"),
)
STAMPED_LINE = re.compile(r"^\[\s*(\d+\.\d+)\]\s*(.*)$")


def boot_timeline(sections: dict[str, str]) -> BootTimeline:
    """From the stamps the image writes (/run/wdimage/armed-at, armed-by), dmesg, and the daemon's start."""
    by = sections.get("armed-by", "").strip()
    stamps: dict[str, float] = {}
    systemds: list[tuple[float, bool]] = []  # each systemd that started: (uptime, in the initrd)
    handovers = 0
    for line in sections.get("boot", "").splitlines():
        handovers += "watchdog did not stop!" in line
        match = STAMPED_LINE.match(line.strip())
        kind = next((k for pattern, k in BOOT_LINES if match and pattern.search(match.group(2))), None)
        if kind == "systemd":
            systemds.append((float(match.group(1)), False))
        elif kind == "systemd-in-initrd" and systemds:
            systemds[-1] = (systemds[-1][0], True)
        elif kind is not None:
            stamps.setdefault(kind, float(match.group(1)))
    real_root = next((at for at, in_initrd in systemds if not in_initrd), None)
    if real_root is not None:
        stamps.setdefault("real_root", real_root)
    started = _daemon_started(sections)
    armed = _armed_stamp(sections)
    if armed is None:
        by = ""
    return BootTimeline(by if re.fullmatch(r"[a-z-]{1,40}", by) else "", armed, stamps.get("init"),
                        stamps.get("real_root"), started[1] if started else None, handovers)


# --- what the field shows goes wrong (wdimage audit; the drill keeps its own list above) -------------------------
FIELD_FIXES = {
    "blacklist": "MODULE is blacklisted, so it never loads (Ubuntu's blacklist-watchdog.conf lists the watchdog "
                 "drivers): delete that line (SEEN), add MODULE to /etc/modules-load.d/watchdog.conf, reboot or "
                 "modprobe MODULE, restart the daemon",
    "other-holder": "/dev/watchdog has a single opener and SEEN holds it, not the watchdog daemon: stop it "
                    "(wd_keepalive: systemctl disable --now wd_keepalive) and restart the daemon",
    "runtime-watchdog": "systemd's RuntimeWatchdogSec is on (SEEN): PID 1 opens the device itself and the "
                        "daemon cannot; set RuntimeWatchdogSec=off (and RebootWatchdogSec=off) in "
                        "/etc/systemd/system.conf, systemctl daemon-reexec, systemctl restart watchdog; or let "
                        "systemd alone feed it and disable the daemon",
    "acted-on": "the daemon feeds another device than the MODEL the domain acts on (SEEN): blacklist the other "
                "driver (e.g. echo 'blacklist iTCO_wdt' > /etc/modprobe.d/wdimage-watchdog.conf) so that MODULE "
                "is /dev/watchdog, or point watchdog-device at MODULE's /dev/watchdogN; restart the daemon",
    "timeout-range": "set watchdog-timeout in /etc/watchdog.conf within what MODULE accepts (SEEN) and restart "
                     "the daemon; the driver keeps its own default for a value it refuses",
    "nowayout": "nowayout is set (SEEN): once opened the device cannot be stopped, so stopping or restarting "
                "the daemon (an upgrade) lets it expire and reset the guest; if that is not intended, "
                "load MODULE with nowayout=0 (options MODULE nowayout=0 in /etc/modprobe.d/)",
}

DAEMON_DEFAULT_TIMEOUT = 60  # watchdog(8): watchdog-timeout when watchdog.conf does not set it


def configured_timeout(sections: dict[str, str]) -> tuple[int, bool]:
    """watchdog.conf's watchdog-timeout, and whether it is set there (else the daemon's default)."""
    match = re.search(r"=\s*(\d+)", sections.get("conf-timeout", ""))
    return (int(match.group(1)), True) if match else (DAEMON_DEFAULT_TIMEOUT, False)


def _device_of(target: str) -> str:
    """/dev/watchdog -> watchdog0 (the legacy node is the first device); /dev/watchdog3 -> watchdog3."""
    name = target.rsplit("/", 1)[-1]
    return "watchdog0" if name == "watchdog" else name


def _per_device(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def evaluate_field_checks(sections: dict[str, str], model: Model) -> list[Check]:
    """The field's failures, beyond the drill's checklist: each passed or failed with what was seen and its fix."""
    about = info(model)
    holders = parse_holders(sections.get("holders", ""))
    daemon = next((h for h in holders if h.comm == "watchdog"), None)
    held = _device_of(daemon.target) if daemon else "watchdog0"
    identities = _per_device(sections.get("identity", ""))
    blacklist = sections.get("blacklist", "")
    others = [h for h in holders if h.comm not in ("watchdog",)]
    runtime = sections.get("runtime-watchdog", "").strip()
    timeout, set_there = configured_timeout(sections)
    low, high = about.timeout_range
    nowayout = _per_device(sections.get("nowayout", "")).get(held, "")
    checks = [
        Check("blacklist", f"{about.module} is not blacklisted", not blacklist,
              blacklist.replace("\n", "; ") or "no blacklist or install line for it in modprobe.d or /proc/cmdline"),
        Check("other-holder", "no other process holds a watchdog device", not others,
              "; ".join(map(str, others)) or "none"),
        Check("runtime-watchdog", "systemd's RuntimeWatchdogSec is off", runtime in ("", "0", "0s"),
              f"RuntimeWatchdogUSec={runtime}" if runtime else "off (or no systemd)"),
        Check("acted-on", f"the daemon feeds the domain's {model} ({about.identity})",
              daemon is None or identities.get(held, about.identity) == about.identity,
              f"{daemon.target} is {held}: {identities.get(held, 'identity not exposed')}" if daemon
              else "no daemon holds a device (see the holder check)"),
        Check("timeout-range", f"watchdog-timeout within {about.module}'s {low}..{high}s", low <= timeout <= high,
              f"watchdog-timeout {timeout}s{'' if set_there else ' (not set: the daemon default)'}; "
              f"{about.module} accepts {low}..{high}s"),
        Check("nowayout", "nowayout is off (the daemon can stop the device)", nowayout.strip() != "1",
              f"{held}: nowayout={nowayout.strip()}" if nowayout.strip() else "not exposed"),
    ]
    return [c if c.passed else dataclasses.replace(c, fix=FIELD_FIXES[c.name].replace("MODULE", about.module)
                                                   .replace("MODEL", str(model)).replace("SEEN", c.seen))
            for c in checks]
