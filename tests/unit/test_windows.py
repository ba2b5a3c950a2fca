"""The drill's expected windows of the daemon's health tests (wdimage.drill.windows), worked out from watchdog
5.16's sources: its retries, its soft reboot, and the kernel's load average."""

import pytest

from wdimage.drill import windows
from wdimage.drill.windows import Timing


def test_soft_reboot_follows_the_daemons_shutdown_sequence():
    # 2 x (SIGTERM + 1 s), 1 s for the log, SIGTERM + (sigterm-delay - 1) s + SIGKILL, then the 1 s timer x stages
    low, high = windows.soft_reboot_seconds(Timing(interval=5, sigterm_delay=5, stages=2, shutdown_work=4))
    assert low == 8 + 2 - 0.5
    assert high == 8 + 4 + 2 + 1
    one_stage = windows.soft_reboot_seconds(Timing(interval=5, stages=1))
    assert one_stage[0] == low - 1


def test_retried_window_pidfile():
    t = Timing(interval=5, retry_timeout=10, sigterm_delay=5, stages=2, shutdown_work=4)
    w = windows.pidfile_window(t)
    # low: no detection delay + more than 10 s of retry + 9.5 s of shutdown
    assert w.low == 10 + 9.5
    # high: one 5 s loop to see it, 10 + 1 (whole seconds) + one more loop, then 15 s of shutdown
    assert w.high == 5 + 10 + 1 + 5 + 15
    assert "retry-timeout 10s" in w.why


def test_ping_window_includes_the_wait_for_replies():
    t = Timing(interval=5, retry_timeout=10)
    ping, pidfile = windows.ping_window(t), windows.pidfile_window(t)
    assert ping.low == pidfile.low  # a failing ping can fail at once (no route once the link is down)
    assert ping.high == pidfile.high + 2 * 5  # and each loop is one interval longer, seen and re-checked


def test_retry_timeout_zero_reboots_at_the_first_failure():
    w = windows.binary_window(Timing(interval=2, retry_timeout=0, shutdown_work=4))
    low, high = windows.soft_reboot_seconds(Timing(interval=2, retry_timeout=0, shutdown_work=4))
    assert (w.low, w.high) == (low, 2 + high)


def test_interface_needs_two_checks_to_see_silence():
    t = Timing(interval=5, retry_timeout=10)
    assert windows.interface_window(t).high == windows.pidfile_window(t).high + 5


def test_kernel_load_average_samples():
    # From 0 with 36 runnable tasks, the 1-minute average passes 9 after 4 samples:
    # 36 * (1 - e^(-5n/60)) >= 9  <=>  n >= 3.45
    assert windows.load_samples_to_reach(9, 36, 0.0) == 4
    assert windows.load_samples_to_reach(9, 36, 8.5) == 1  # already close
    with pytest.raises(ValueError):
        windows.load_samples_to_reach(9, 8, 0.0)  # 8 tasks never make a load of 9


def test_load_window_brackets_both_readings_of_the_limit():
    t = Timing(interval=5, shutdown_work=4)
    spinners = windows.spinners_for(8)
    assert spinners == 36
    w = windows.load_window(t, 8, spinners, start_load=0.5)
    fast = windows.load_samples_to_reach(8, spinners + 2, 0.5)
    slow = windows.load_samples_to_reach(9, spinners, 0.5)
    assert fast <= slow
    # 5.16 retries the load test too (its "<load-average>" timer): retry-timeout, default 60 s, on top
    retried = windows.retried_window(t)
    assert w.low == round((fast - 1) * windows.LOAD_FREQ + 60 + windows.soft_reboot_seconds(t)[0], 1)
    assert w.high == round(slow * windows.LOAD_FREQ + retried.high, 1)
    assert w.low < w.high


def test_an_unretried_failure_reboots_without_the_retry_timeout():
    """watchdog 5.16 does not retry ENOMEM (the memory test): its window has no retry-timeout in it, while
    a repairable failure's does."""
    t = windows.Timing(interval=1, retry_timeout=10, sigterm_delay=5)
    shut_low, shut_high = windows.soft_reboot_seconds(t)
    memory = windows.unretried_window(t, "memory", 30, "allocated within 30s")
    assert (memory.low, memory.high) == (round(shut_low, 1), round(30 + 1 + shut_high, 1))
    assert "not retried" in memory.why and memory.why.startswith("memory: allocated within 30s")
    assert windows.pidfile_window(t).low == shut_low + 10
