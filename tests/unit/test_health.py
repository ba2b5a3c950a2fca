"""The daemon's health tests: every refused option (exit 2 naming it), what an accepted one puts into
watchdog.conf, the manifest and DIB's environment, and the expected fault -> reset windows."""

import json

import pytest

from wdimage import cli
from wdimage.image import build, dib, health
from wdimage.image.health import Timing
from wdimage.image.manifest import Breaks, health_record


def _build(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["build", "debian", "--dry-run", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, says", [
    (("--ping", "gw.example"), "--ping 'gw.example': the daemon takes an IPv4 address, not a host name"),
    (("--ping", "::1"), "--ping '::1': the daemon pings IPv4 only"),
    (("--ping", "10.0.2.256"), "--ping '10.0.2.256'"),
    (("--ping", "10.0.2.02"), "--ping '10.0.2.02'"),
    (("--ping", "10.0.2.2\n"), "--ping"),
    (("--ping", "192.168.1.1"), "--ping 192.168.1.1: unreachable from the guest's network"),
    (("--ping", "10.0.2.15"), "answers ping only from 10.0.2.2 and 10.0.2.3"),
    (("--interface", "ens2"), "--interface ens2: an idle link receives nothing"),
    (("--ping", "10.0.2.2", "--interface", "eth0:1"), "--interface 'eth0:1'"),
    (("--ping", "10.0.2.2", "--interface", "a-very-long-interface"), "at most 15"),
    (("--max-load", "1"), "--max-load 1: expected 2..10000"),
    (("--min-memory", "0"), "--min-memory 0"),
    (("--pidfile", "run/x.pid"), "--pidfile 'run/x.pid': expected an absolute path"),
    (("--pidfile", "/run/../etc/x.pid"), "--pidfile '/run/../etc/x.pid'"),
    (("--pidfile", "/run/x y.pid"), "--pidfile '/run/x y.pid'"),
    (("--test-binary", "/nonexistent/test"), "--test-binary /nonexistent/test: no such file"),
    (("--retry-timeout", "-1"), "--retry-timeout -1: the daemon accepts 0..225 seconds"),
    (("--retry-timeout", "226"), "--retry-timeout 226"),
    (("--test-break", "rm -f /x"), "--test-break: needs --test-binary"),
])
def test_refused_options_exit_2_naming_the_option(capsys, args, says):
    code, err = _build(capsys, *args)
    assert code == 2
    assert says in err


def test_a_test_binary_must_be_something_the_daemon_can_exec(capsys, tmp_path):
    text = tmp_path / "check.txt"
    text.write_text("echo hi\n")
    code, err = _build(capsys, "--test-binary", str(text))
    assert code == 2 and "not a script with a #! line" in err
    spaced = tmp_path / "my check"
    spaced.write_text("#!/bin/sh\n")
    code, err = _build(capsys, "--test-binary", str(spaced))
    assert code == 2 and "file name may only contain" in err


def test_test_and_repair_binaries_need_distinct_names(capsys, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "check").write_text("#!/bin/sh\nexit 0\n")
    code, err = _build(capsys, "--test-binary", str(tmp_path / "a/check"), "--repair-binary", str(tmp_path / "b/check"))
    assert code == 2 and "same name as --test-binary" in err


def test_test_break_must_be_one_printable_line(capsys, tmp_path):
    test = tmp_path / "check"
    test.write_text("#!/bin/sh\n")
    code, err = _build(capsys, "--test-binary", str(test), "--test-break", "rm -f /a\nreboot")
    assert code == 2 and "--test-break" in err


def test_retry_timeout_limit_follows_the_watchdog_timeout(capsys):
    # check_parameters(): max(120, 15 x watchdog-timeout)
    assert _build(capsys, "--timeout", "5", "--retry-timeout", "120")[0] == 0
    code, err = _build(capsys, "--timeout", "5", "--retry-timeout", "121")
    assert code == 2 and "0..120 seconds with watchdog-timeout 5" in err


def _settings(**health_options):
    return build.make_settings("debian", ping=("10.0.2.2",), max_load_1=8, timeout=15,
                               health_options=health_options)


def test_accepted_health_tests_reach_watchdog_conf():
    conf = build.watchdog_conf(_settings(min_memory=16384, pidfiles=("/run/a.pid",), retry_timeout=10,
                                         example=True))
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert lines[5:] == [
        "admin =", "retry-timeout = 10", "ping = 10.0.2.2", "max-load-1 = 8", "min-memory = 16384",
        "pidfile = /run/a.pid", "pidfile = /run/wdimage-example.pid",
        "test-binary = /usr/local/lib/wdimage/health/wdimage-example-test",
        "repair-binary = /usr/local/lib/wdimage/health/wdimage-example-repair"]


def test_without_health_tests_the_daemon_keeps_its_defaults():
    conf = build.watchdog_conf(build.make_settings("debian"))
    for key in ("retry-timeout", "ping", "pidfile", "test-binary", "repair-binary", "min-memory"):
        assert f"\n{key} =" not in conf


def test_manifest_records_tests_and_how_to_break_them():
    record = health_record(_settings(example=True).health).to_json()
    assert record["ping"] == ["10.0.2.2"] and record["max_load_1"] == 8
    assert record["retry_timeout"] == 60  # the daemon's default, stated
    assert record["pidfiles"] == ["/run/wdimage-example.pid"]
    assert record["break"]["test"] == "rm -f /run/wdimage-example/healthy"
    assert "no-repair" in record["break"]["test_unrepairable"]
    json.dumps(record)  # JSON as it stands


def test_users_own_test_binary_with_its_break_command(tmp_path):
    test = tmp_path / "check-app"
    test.write_text("#!/bin/sh\npgrep app\n")
    settings = build.make_settings("debian", health_options=dict(test_binary=str(test),
                                                                 test_break="systemctl stop app"))
    record = health_record(settings.health)
    assert record.breaks == Breaks(test="systemctl stop app") and record.repair_binary is None
    record = record.to_json()
    assert record["test_binary"] == "/usr/local/lib/wdimage/health/check-app"
    assert record["break"] == {"test": "systemctl stop app"}
    assert record["repair_binary"] is None


def test_binaries_are_handed_to_dib_executable(tmp_path):
    settings = _settings(example=True)
    inputs = build.write_inputs(settings, dib.Layout.DIRECT, root=tmp_path)
    names = sorted(p.name for k, p in inputs.items() if k.startswith("health/"))
    assert names == ["wdimage-example-repair", "wdimage-example-service", "wdimage-example-test"]
    assert all(p.stat().st_mode & 0o111 for k, p in inputs.items() if k.startswith("health/"))
    env = dict(build.dib_environment(settings, inputs))
    assert env["DIB_WATCHDOG_NETWORK_TESTS"] == "1" and env["DIB_WATCHDOG_HEALTH_EXAMPLE"] == "1"
    assert env["DIB_WATCHDOG_HEALTH_DIR"] == str(inputs["health/wdimage-example-test"].parent)


def test_without_binaries_dib_gets_no_health_dir(tmp_path):
    settings = build.make_settings("debian")
    env = dict(build.dib_environment(settings, build.write_inputs(settings, dib.Layout.DIRECT, root=tmp_path)))
    assert "DIB_WATCHDOG_HEALTH_DIR" not in env and env["DIB_WATCHDOG_NETWORK_TESTS"] == "0"


# --- windows --------------------------------------------------------------------------------------------------

def test_soft_reboot_follows_the_daemons_shutdown_sequence():
    # 2 x (SIGTERM + 1 s), 1 s for the log, SIGTERM + (sigterm-delay - 1) s + SIGKILL, then the 1 s timer x stages
    low, high = health.soft_reboot_seconds(Timing(interval=5, sigterm_delay=5, stages=2, shutdown_work=4))
    assert low == 8 + 2 - 0.5
    assert high == 8 + 4 + 2 + 1
    one_stage = health.soft_reboot_seconds(Timing(interval=5, stages=1))
    assert one_stage[0] == low - 1


def test_retried_window_pidfile():
    t = Timing(interval=5, retry_timeout=10, sigterm_delay=5, stages=2, shutdown_work=4)
    w = health.window("service", t)
    # low: no detection delay + more than 10 s of retry + 9.5 s of shutdown
    assert w.low == 10 + 9.5
    # high: one 5 s loop to see it, 10 + 1 (whole seconds) + one more loop, then 15 s of shutdown
    assert w.high == 5 + 10 + 1 + 5 + 15
    assert "retry-timeout 10s" in w.reasoning


def test_ping_window_includes_the_wait_for_replies():
    t = Timing(interval=5, retry_timeout=10)
    ping, pidfile = health.window("net", t), health.window("service", t)
    assert ping.low == pidfile.low  # a failing ping can fail at once (no route once the link is down)
    assert ping.high == pidfile.high + 2 * 5  # and each loop is one interval longer, seen and re-checked


def test_retry_timeout_zero_reboots_at_the_first_failure():
    w = health.window("test", Timing(interval=2, retry_timeout=0, shutdown_work=4))
    low, high = health.soft_reboot_seconds(Timing(interval=2, retry_timeout=0, shutdown_work=4))
    assert (w.low, w.high) == (low, 2 + high)


def test_interface_needs_two_checks_to_see_silence():
    t = Timing(interval=5, retry_timeout=10)
    assert health.window("interface", t).high == health.window("service", t).high + 5


def test_unknown_window_is_an_error():
    with pytest.raises(ValueError):
        health.window("load", Timing(interval=5))


def test_kernel_load_average_samples():
    # From 0 with 36 runnable tasks, the 1-minute average passes 9 after 4 samples:
    # 36 * (1 - e^(-5n/60)) >= 9  <=>  n >= 3.45
    assert health.load_samples_to_reach(9, 36, 0.0) == 4
    assert health.load_samples_to_reach(9, 36, 8.5) == 1  # already close
    with pytest.raises(ValueError):
        health.load_samples_to_reach(9, 8, 0.0)  # 8 tasks never make a load of 9


def test_load_window_brackets_both_readings_of_the_limit():
    t = Timing(interval=5, shutdown_work=4)
    spinners = health.spinners_for(8)
    assert spinners == 36
    w = health.load_window(t, 8, spinners, start_load=0.5)
    fast = health.load_samples_to_reach(8, spinners + 2, 0.5)
    slow = health.load_samples_to_reach(9, spinners, 0.5)
    assert fast <= slow
    # 5.16 retries the load test too (its "<load-average>" timer): retry-timeout, default 60 s, on top
    retried = health.retried_window(t)
    assert w.low == round((fast - 1) * health.LOAD_FREQ + 60 + health.soft_reboot_seconds(t)[0], 1)
    assert w.high == round(slow * health.LOAD_FREQ + retried.high, 1)
    assert w.contains((w.low + w.high) / 2) and not w.contains(w.high + 0.1)


def test_quiet_controls_wait_twice_the_window():
    assert health.quiet_seconds(health.Window(10, 30.2, "")) == 61


def test_an_unretried_failure_reboots_without_the_retry_timeout():
    """watchdog 5.16 does not retry ENOMEM (the memory test): its window has no retry-timeout in it, while
    a repairable failure's does."""
    t = health.Timing(interval=1, retry_timeout=10, sigterm_delay=5)
    shut_low, shut_high = health.soft_reboot_seconds(t)
    memory = health.unretried_window(t, "memory", 30, "allocated within 30s")
    assert (memory.low, memory.high) == (round(shut_low, 1), round(30 + 1 + shut_high, 1))
    assert "not retried" in memory.reasoning and memory.reasoning.startswith("memory: allocated within 30s")
    assert health.window("service", t).low == shut_low + 10
