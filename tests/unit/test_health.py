"""The daemon's health tests: every refused option (exit 2 naming it), what an accepted one puts into
watchdog.conf, the manifest and DIB's environment, and the expected fault -> reset windows."""

import json

import pytest

from wdimage import cli
from wdimage.image import build, dib
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
