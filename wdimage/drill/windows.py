"""The drill's expected windows: within how many seconds of a fault the hypervisor's event must come, and why.

The watchdog's own (the keepalives stop, an unclean close) come from the model and watchdog.conf's timeout and
interval. The daemon's health tests (wdimage.image.health holds their build options) turn a fault into a reboot
as watchdog 5.16 does, read from its sources (src/watchdog.c wd_action(), src/shutdown.c) and watchdog.conf(5):
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
from typing import TYPE_CHECKING

from wdimage.image.health import DEFAULT_RETRY_TIMEOUT, DEFAULT_SIGTERM_DELAY
from wdimage.models import info

if TYPE_CHECKING:
    from wdimage.drill.scenarios import Setup


@dataclasses.dataclass(frozen=True)
class Window:
    """Seconds from the fault to the expected event: [low, high], and how that was worked out."""

    low: float
    high: float
    why: str


# --- the watchdog's own ---------------------------------------------------------------------------------------

def keepalives_stop(setup: "Setup") -> Window:
    """Nobody pings any more: the last keepalive came at most one interval before the fault."""
    after = setup.fire_after
    stages = f" ({info(setup.model).stages} countdowns of {setup.timeout}s)" if info(setup.model).stages > 1 else ""
    return Window(max(after - setup.interval, 0), after,
                  f"{after}s after the last keepalive{stages}, which came every {setup.interval}s")


def unclean_close(setup: "Setup") -> Window:
    """watchdog_release(): the kernel answers an unclean close of /dev/watchdog with one last keepalive."""
    after = setup.fire_after
    return Window(after, after, f"{after}s: the kernel pings the device once when it is closed uncleanly")


def quiet_window(setup: "Setup") -> Window:
    """A control: the window in which the watchdog would have fired (the runner waits twice as long)."""
    after = setup.fire_after
    return Window(0, after, f"the watchdog would fire {after}s after the last keepalive")


# --- the daemon's health tests --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Timing:
    """The watchdog.conf values that decide how fast a failing test reboots the guest."""

    interval: int
    retry_timeout: int = DEFAULT_RETRY_TIMEOUT
    sigterm_delay: int = DEFAULT_SIGTERM_DELAY
    stages: int = 1  # countdowns of the final 1 s timeout before the reset (models.ModelInfo.stages: iTCO 2)
    shutdown_work: float = 4.0  # hwclock, swapoff, umount -a under TCG: measured, not from the sources


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


def ping_window(t: Timing) -> Window:
    """The ping test: a failing check waits up to one interval for its ping-count replies."""
    return retried_window(t, check_seconds=t.interval, test="ping")


def interface_window(t: Timing) -> Window:
    """The interface test: no rx bytes between two checks, so up to two loops to see it."""
    return retried_window(t, detect_intervals=2, test="interface")


def pidfile_window(t: Timing) -> Window:
    return retried_window(t, test="pidfile")


def binary_window(t: Timing) -> Window:
    """The test-binary test (its exit code)."""
    return retried_window(t, test="test binary")


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
           f"{fast}-{slow} kernel samples ({LOAD_FREQ}s apart), then {retried.why[len('load: '):]}")
    return Window(round(low, 1), round(high, 1), why)


def spinners_for(max_load: int) -> int:
    """Busy loops for the load fault: enough to pass max-load-1 + 1 within about 20 s."""
    return 4 * (max_load + 1)
