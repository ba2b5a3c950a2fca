"""The drill's health-test scenarios (rows of wdimage.drill.scenarios.SCENARIOS): how each breaks what a daemon
health test watches, what the image's manifest must configure for it (HealthTest), its expected window from the
manifest's record, and the reason the daemon logged, read back after the reboot.

The faults break what a test watches, never the daemon: what is proven is the daemon's own soft reboot
(wdimage.drill.windows explains its timing), whose last step is the hardware timer set to 1 s.
Functions here take the scenario table's Context/Setup (duck-typed: guest, setup, notes; health, interval, model);
setup.health is the manifest's HealthRecord (wdimage.image.manifest), None when the build recorded none.
"""

import dataclasses
import math
import re
import time

from wdimage import log
from wdimage.drill import windows
from wdimage.drill.windows import Window
from wdimage.image.manifest import HealthRecord
from wdimage.models import info


@dataclasses.dataclass(frozen=True)
class HealthTest:
    """The daemon health test a scenario drills: the manifest `health` key that configures it, the build option
    that sets it, and, for a fault that breaks the test binary, what to build with when the manifest records no
    way to break it."""

    key: str
    option: str
    without_break: str = ""

LOAD_SETTLED = 2.0  # the load window assumes the fault starts from a 1-minute load at most this
LOAD_SETTLE_SECONDS = 90
# Busy loops at SCHED_IDLE (nice 19 where chrt is missing): the load average counts every runnable task
# whatever its policy, while the guest agent and the daemon keep the CPU (measured: 36 loops at nice 0
# starved the agent for over a minute under TCG, and the reboot came after the window). One shell at that
# policy forks them all (its children inherit it): an exec per loop took over 10 s under TCG (measured).
LOAD_SH = ('n=$1; if command -v chrt >/dev/null 2>&1; then idle="chrt --idle 0"; else idle="nice -n 19"; fi; '
           'exec $idle sh -c \'i=0; while [ "$i" -lt "$1" ]; do (while :; do :; done) & i=$((i + 1)); done; wait\' '
           'sh "$n"')
LOADAVG_SH = "cut -d' ' -f1 /proc/loadavg"
# Anonymous memory until what the daemon counts as free (watchdog 5.16: MemFree + Buffers + Cached) is 7/8 of
# its minimum: one perl process (perl-base is essential on Debian) takes up to 16 MiB at a time and reads
# /proc/meminfo again after each piece, so page cache given back along the way is taken too. Not lower: the
# kernel keeps its own reserve free (min_free_kbytes, raised for transparent huge pages: 44 MB in a 1 GiB
# guest, measured), and below that the OOM killer ends the allocation before the daemon sees it (measured).
# Pipes of 64 MiB (head | tail) kept the CPU so busy that the load test failed first (error 253, measured).
MEMORY_PL = r"""
my $target = $ARGV[0] * 4 * 7 / 8;  # kB: 7/8 of min-memory's pages
my @held;
sub counted {
    open(my $f, "<", "/proc/meminfo") or die "/proc/meminfo: $!";
    my $kb = 0;
    while (<$f>) { $kb += $1 if /^(?:MemFree|Buffers|Cached):\s+(\d+)/; }
    return $kb;
}
while ((my $kb = counted()) > $target) {
    my $piece = $kb - $target < 16384 ? $kb - $target : 16384;
    $held[@held] = "\1" x ($piece * 1024);  # from the temporary: no second copy
}
print "held ", scalar(@held), " pieces, counted ", counted(), " kB\n";
sleep 100000;
"""
# The kernel's reserve: the zones' min watermarks (pages), in kB.
RESERVE_SH = "awk '$1 == \"min\" { s += $2 } END { print s * 4 }' /proc/zoneinfo"
RESERVE_MARGIN_KB = 16384  # page cache the guest keeps running on, above the reserve
MEMORY_SH = 'exec perl -e "$1" "$2"'
MEMORY_SECONDS = 30  # allowance for the allocation itself under TCG (about 50 pieces in a 1 GiB guest)
SERVICE_SH = 'pid=$(cat "$1") && kill -KILL "$pid" && echo "$pid"'
BREAK_SH = 'sh -c "$1"'
WATCHED_BACK_SH = "[ -e /run/wdimage-example/healthy ] && echo back || echo missing"
# What the daemon logged in the boot before this one (the image keeps a persistent journal).
REASON_SH = ("journalctl -b -1 -t watchdog -o cat --no-pager 2>/dev/null | grep -E "
             "'shutting down the system|Retry timed-out|repair binary|Repair count exceeded' | tail -n 6")
SHUTDOWN_RE = re.compile(r"shutting down the system because of error (\d+) = '([^']*)'")
RETRY_RE = re.compile(r"Retry timed-out at (\d+) seconds for (\S+)")


def missing(test: HealthTest, setup) -> str | None:
    """None when the image configures the test, else the build option that would."""
    record = setup.health or HealthRecord()
    if not getattr(record, test.key):
        return f"build the image with {test.option}"
    if test.without_break and not (record.breaks.test and record.test_binary):
        return test.without_break
    return None


def timing(setup) -> windows.Timing:
    record = setup.health or HealthRecord()
    return windows.Timing(interval=setup.interval, retry_timeout=record.retry_timeout,
                          sigterm_delay=record.sigterm_delay, stages=info(setup.model).stages)


# --- the scenarios' windows -----------------------------------------------------------------------------------

def window_net(setup) -> Window:
    return windows.ping_window(timing(setup))


def window_load(setup) -> Window:
    max_load = setup.health.max_load_1
    return windows.load_window(timing(setup), max_load, windows.spinners_for(max_load), LOAD_SETTLED)


def window_memory(setup) -> Window:
    return windows.unretried_window(timing(setup), "memory", MEMORY_SECONDS, f"allocated within {MEMORY_SECONDS}s")


def window_service(setup) -> Window:
    return windows.pidfile_window(timing(setup))


def window_test(setup) -> Window:
    """The test binary's; the repaired control waits on the same one."""
    return windows.binary_window(timing(setup))


# --- inject functions ---------------------------------------------------------------------------------------

def cut_link(ctx) -> None:
    ctx.guest.set_link(False)
    ctx.notes.append("link cut from the host (QMP set_link off)")


def restore_link(ctx) -> None:
    ctx.guest.set_link(True)


def load(ctx) -> None:
    """Busy loops past max-load-1, once the load has settled to what the window assumes."""
    deadline = time.monotonic() + LOAD_SETTLE_SECONDS
    start = float(ctx.guest.run(LOADAVG_SH, timeout=30).stdout.strip() or 0)
    if start > LOAD_SETTLED:
        with log.waiting(f"the guest's 1-minute load ({start:.2f}) to fall under {LOAD_SETTLED}",
                         at_most=LOAD_SETTLE_SECONDS):
            while start > LOAD_SETTLED and time.monotonic() < deadline:
                time.sleep(5)
                start = float(ctx.guest.run(LOADAVG_SH, timeout=30).stdout.strip() or 0)
    spinners = windows.spinners_for(ctx.setup.health.max_load_1)
    ctx.guest.spawn(LOAD_SH, str(spinners))
    ctx.notes.append(f"{spinners} busy loops from a 1-minute load of {start:.2f}")


def fill_memory(ctx) -> None:
    pages = ctx.setup.health.min_memory
    reserve = int(ctx.guest.run(RESERVE_SH, timeout=30).stdout.strip() or 0)
    target = pages * 4 * 7 // 8
    if target < reserve + RESERVE_MARGIN_KB:
        floor = math.ceil((reserve + RESERVE_MARGIN_KB) * 8 / 7 / 4)  # pages whose 7/8 clear it
        raise RuntimeError(f"min-memory {pages} pages cannot be drilled in this guest: below {target} kB free, "
                           f"the kernel's own reserve ({reserve} kB, min_free_kbytes) is near and the OOM killer "
                           f"would end the allocation before the daemon sees it; build with --min-memory "
                           f"{floor} or more to drill it")
    ctx.guest.spawn(MEMORY_SH, MEMORY_PL, str(pages))
    ctx.notes.append(f"anonymous memory (perl) until free + buffers + cache is {target} kB, 7/8 of min-memory "
                     f"{pages} pages (the kernel's reserve: {reserve} kB)")


def kill_service(ctx) -> None:
    pidfile = ctx.setup.health.pidfiles[0]
    result = ctx.guest.run(SERVICE_SH, pidfile, timeout=30)
    if result.exitcode != 0:
        raise RuntimeError(f"could not kill the process in {pidfile}: {result.stderr.strip()}")
    ctx.notes.append(f"SIGKILL to pid {result.stdout.strip()} of {pidfile}")


def break_test(ctx) -> None:
    """Make the test binary fail so that its repair fails too (where the build recorded how), or plainly."""
    breaks = ctx.setup.health.breaks
    command = breaks.test_unrepairable or breaks.test
    ctx.guest.run(BREAK_SH, command, timeout=30)
    ctx.notes.append(f"broke the test: {command}")


def break_test_repairably(ctx) -> None:
    command = ctx.setup.health.breaks.test
    ctx.guest.run(BREAK_SH, command, timeout=30)
    ctx.notes.append(f"broke the test: {command}")


def repaired(ctx) -> str | None:
    """After the quiet wait: the repair binary must have put back what the example test watches (else the
    quiet proves nothing: a test that never ran would be quiet too). Returns what went wrong, if anything."""
    if not (ctx.setup.health and ctx.setup.health.example):
        return None
    said = ctx.guest.run(WATCHED_BACK_SH, timeout=30).stdout.strip()
    if said != "back":
        return "the repair binary did not put /run/wdimage-example/healthy back"
    ctx.notes.append("the repair binary put /run/wdimage-example/healthy back")
    return None


# --- after the reboot -----------------------------------------------------------------------------------------

def parse_reason(text: str) -> str | None:
    """The daemon's last words before its soft reboot, from its journal lines; None if it logged no shutdown."""
    shutdown = SHUTDOWN_RE.search(text)
    if not shutdown:
        return None
    reason = f"error {shutdown.group(1)} = '{shutdown.group(2)}'"
    retries = list(RETRY_RE.finditer(text, 0, shutdown.start()))  # the last one before the shutdown
    retry = retries[-1] if retries else None
    if retry:
        reason += f", after {retry.group(2)} kept failing for {retry.group(1)}s"
    return reason


def read_reason(guest) -> str | None:
    return parse_reason(guest.run(REASON_SH, timeout=60).stdout)
