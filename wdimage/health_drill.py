"""The drill's health faults and quiet controls, written against wdimage.guest.Guest only: how each one is
injected, what the image's manifest must have configured for it, the window it is expected in, and the
reason the daemon logged, read back after the reboot.

The faults break what a health test watches, never the daemon itself: the daemon's own soft reboot is what
is proven (health.py explains its timing); the hardware timer is only its last step.
"""

import dataclasses
import re
import time

from wdimage import health
from wdimage.errors import usage_error
from wdimage.guest import Event, EventKind, Guest
from wdimage.models import Model

# Which manifest `health` key (and build option) each fault needs.
NEEDS = {
    "net": ("ping", "--ping"),
    "load": ("max_load_1", "--max-load"),
    "memory": ("min_memory", "--min-memory"),
    "service": ("pidfiles", "--pidfile"),
    "test": ("test_binary", "--test-binary (with --test-break, or --health-example)"),
}
STAGES = {Model.I6300ESB: 2, Model.ITCO: 2, Model.IB700: 1}  # hardware timer expiries before the reset
REBOOT_KINDS = {EventKind.WATCHDOG, EventKind.RESET, EventKind.SHUTDOWN, EventKind.EXITED}

LOAD_SH = 'n=$1; i=0; while [ "$i" -lt "$n" ]; do (while :; do :; done) & i=$((i + 1)); done'
LOADAVG_SH = "cut -d' ' -f1 /proc/loadavg"
# Anonymous memory in 32 MiB pieces (tail keeps an unterminated line in memory) until free + buffers + cache
# is half the daemon's minimum; pieces keep a single allocation small enough for the OOM killer to stay away.
MEMORY_SH = r"""
min_kb=$(( $1 * 4 ))
avail=$(awk '/^(MemFree|Buffers|Cached):/ { s += $2 } END { print s }' /proc/meminfo)
need=$(( avail - min_kb / 2 ))
while [ "$need" -gt 0 ]; do head -c 32m /dev/zero | tail > /dev/null & need=$(( need - 32768 )); done
"""
SERVICE_SH = 'kill -KILL "$(cat "$1")"'
BREAK_SH = 'sh -c "$1"'
# What the daemon logged in the boot before this one (persistent journal).
REASON_SH = ("journalctl -b -1 -t watchdog -o cat --no-pager 2>/dev/null | grep -E "
             "'shutting down the system|Retry timed-out|repair binary|Repair count exceeded' | tail -n 6")
SHUTDOWN_RE = re.compile(r"shutting down the system because of error (\d+) = '([^']*)'")
RETRY_RE = re.compile(r"Retry timed-out at (\d+) seconds for (\S+)")


def require(fault: str, record: dict | None, manifest_path: str = "manifest.json") -> None:
    """A fault whose test the image does not configure: exit 2 naming the build option that enables it."""
    key, option = NEEDS[fault]
    if not record or not record.get(key):
        raise usage_error(f"--fault {fault}: {manifest_path} has no {key.replace('_', '-')} health test",
                          hint=f"build the image with {option}")
    if fault == "test" and not (record.get("break") or {}).get("test"):
        raise usage_error(f"--fault test: {manifest_path} records no way to make the test binary fail",
                          hint="build with --test-break COMMAND (or --health-example)")


def timing(record: dict, interval: int, model: Model) -> health.Timing:
    return health.Timing(interval=interval, retry_timeout=record.get("retry_timeout", health.DEFAULT_RETRY_TIMEOUT),
                         sigterm_delay=record.get("sigterm_delay", health.DEFAULT_SIGTERM_DELAY),
                         stages=STAGES[Model(model)])


@dataclasses.dataclass
class HealthOutcome:
    fault: str
    expected: str  # REBOOT or QUIET
    window: health.Window
    passed: bool = False
    seconds: float | None = None  # fault -> the first reboot event
    path: str = ""  # how the guest went down: the daemon's soft reboot, or the hardware timer alone
    event: str = ""
    reason: str = ""  # the daemon's own words, read back after the reboot
    detail: str = ""

    def to_dict(self) -> dict:
        return {"fault": self.fault, "expected": self.expected, "passed": self.passed, "seconds": self.seconds,
                "window": [self.window.low, self.window.high], "window_reasoning": self.window.reasoning,
                "ratio_to_upper": round(self.seconds / self.window.high, 3) if self.seconds else None,
                "path": self.path, "event": self.event, "reason": self.reason, "detail": self.detail}


def inject(guest: Guest, fault: str, record: dict, t: health.Timing, *, unrepairable: bool = True
           ) -> health.Window:
    """Break what the fault's test watches; return the window the reset is expected in."""
    if fault == "net":
        guest.set_link(False)
        return health.window("net", t)
    if fault == "load":
        start = float(guest.run(LOADAVG_SH, timeout=30).stdout.strip() or 0)
        spinners = health.spinners_for(record["max_load_1"])
        guest.spawn(LOAD_SH, str(spinners))
        return health.load_window(t, record["max_load_1"], spinners, start)
    if fault == "memory":
        guest.spawn(MEMORY_SH, str(record["min_memory"]))
        low, high = health.soft_reboot_seconds(t)  # not retried: the first check under the limit
        return health.Window(low, 30 + t.interval + high, f"memory: allocated within 30s, seen within one "
                                                          f"{t.interval}s loop, not retried, then the soft reboot")
    if fault == "service":
        result = guest.run(SERVICE_SH, record["pidfiles"][0], timeout=30)
        if result.exitcode != 0:
            raise RuntimeError(f"could not kill the process of {record['pidfiles'][0]}: {result.stderr.strip()}")
        return health.window("service", t)
    if fault == "test":
        breaks = record["break"]
        command = breaks.get("test_unrepairable") if unrepairable and record.get("repair_binary") else breaks["test"]
        if unrepairable and record.get("repair_binary") and not command:
            raise usage_error("--fault test: the manifest records no unrepairable break for the repair binary")
        guest.run(BREAK_SH, command, timeout=30)
        return health.window("test", t)
    raise ValueError(fault)


def watch(guest: Guest, fault: str, window: health.Window, fault_at: float, expected: str) -> HealthOutcome:
    """Wait for the reset (REBOOT) or make sure none comes for twice the window (QUIET)."""
    outcome = HealthOutcome(fault, expected, window)
    limit = 1.1 * window.high + 5 if expected == "REBOOT" else health.quiet_seconds(window)
    deadline = time.monotonic() + fault_at + limit - time.time()
    event = guest.wait_event(REBOOT_KINDS, deadline)
    if expected == "QUIET":
        outcome.passed = event is None
        outcome.detail = (f"no reset for {limit:.0f}s (twice the window's {window.high:.0f}s)" if event is None
                          else f"{event} {event.time - fault_at:.1f}s after the fault")
        return outcome
    if event is None:
        outcome.detail = f"no reset within {limit:.0f}s; QEMU status: {guest.status()}"
        return outcome
    outcome.seconds = round(event.time - fault_at, 2)
    outcome.event = str(event)
    outcome.passed = outcome.seconds <= 1.1 * window.high
    return outcome


def read_reason(guest: Guest, outcome: HealthOutcome, first: Event | None = None) -> None:
    """After the guest is back: what the daemon logged before it went down, and so the path it took."""
    text = guest.run(REASON_SH, timeout=60).stdout
    shutdown = SHUTDOWN_RE.search(text)
    retry = RETRY_RE.search(text)
    if shutdown:
        outcome.reason = f"error {shutdown.group(1)} = '{shutdown.group(2)}'"
        if retry:
            outcome.reason += f" after retrying {retry.group(2)} for {retry.group(1)}s"
        outcome.path = ("the daemon's soft reboot, ended by the hardware timer set to 1s"
                        if outcome.event.startswith(("WATCHDOG", "watchdog")) else "the daemon's soft reboot")
    else:
        outcome.path = "the hardware timer alone (the daemon logged no shutdown)"
        outcome.passed = False
        outcome.detail = (outcome.detail + "; " if outcome.detail else "") + "no shutdown line in the journal"
