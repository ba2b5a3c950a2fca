"""The drill's own logic without QEMU: manifest validation, check evaluation, report rendering, CLI options."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.drill import report as drill_report
from wdimage.drill import runner as drill
from wdimage.drill import scenarios
from wdimage.drill.runner import Check, DrillReport, FaultResult
from wdimage.drill.scenarios import Outcome, Setup, Window
from wdimage.errors import ExitCode, WdimageError
from wdimage.image.manifest import HealthRecord
from wdimage.models import Action, Model

# What GUEST_PROBE printed in the Debian bookworm guest of `wdimage build debian` (i6300esb, 15 s), through the
# guest agent under QEMU 7.2 (recorded 2026-11-24, TCG).
HEALTHY_PROBE = """\
### driver
[    7.940062] i6300ESB timer 0000:00:03.0: initialized. heartbeat=30 sec (nowayout=0)
### module
i6300esb 16384 1 - Live 0xffffffffc08ec000
present in /sys/module/i6300esb
### device
crw------- 1 root root 10, 130 Nov 24 20:46 /dev/watchdog
### service
systemd: active
### config
3:watchdog-device = /dev/watchdog
### holders
273 watchdog /dev/watchdog S 1314
### cmdline
root=LABEL=cloudimg-rootfs ro console=ttyS0
### panic
0
### timeout
15
### interval
interval = 5
### clock
14.17 100
### kexec
0
### kernel
6.1.0-56-amd64
### identity
watchdog0: i6300ESB timer
"""


def sections(**changes: str) -> dict[str, str]:
    parsed = drill.parse_sections(HEALTHY_PROBE)
    parsed.update(changes)
    return parsed


def checks_by_name(**changes: str) -> dict[str, Check]:
    return {c.name: c for c in drill.evaluate_checks(sections(**changes), Model.I6300ESB, 15)}


def test_healthy_guest_passes_every_check():
    checks = checks_by_name()
    assert [c.name for c in checks.values() if not c.passed] == []
    assert "heartbeat" in checks["driver"].seen
    assert checks["holder"].seen == "watchdog (pid 273, state S) holds /dev/watchdog"


def test_a_driver_that_logs_only_its_failures_passes_on_silence_but_not_on_a_failure():
    """diag288_wdt prints nothing when it binds (seen for real on the s390x image); i6300esb always prints."""
    def driver(model: Model, line: str) -> Check:
        return next(c for c in drill.evaluate_checks(sections(driver=line), model, 15) if c.name == "driver")
    silent = driver(Model.DIAG288, "")
    assert silent.passed and "prints only its failures" in silent.seen
    assert not driver(Model.DIAG288, "[ 2.1] diag288_wdt: The watchdog cannot be activated").passed
    assert not driver(Model.I6300ESB, "").passed


def test_an_oops_listing_the_module_is_not_a_driver_failure():
    """Seen for real on the s390x image after a hang's reset: an unrelated oops (chacha_s390 under TCG) lists
    every loaded module, diag288_wdt among them. The probe's driver section (its own shell line, run here) leaves
    such lines out, so the driver check still passes; a real failure line stays in."""
    script = next(line for line in drill.GUEST_PROBE.splitlines() if line.startswith("echo '### driver'"))
    oops = ("[   34.662541] illegal operation: 0001 ilc:1 [#1] SMP\n"
            "[   34.662712] Modules linked in: chacha_s390(+) libchacha virtio_blk diag288_wdt watchdog\n")
    failure = "[    2.1] diag288_wdt: The watchdog cannot be activated\n"
    for messages, passes in ((oops, True), (oops + failure, False)):
        seen = subprocess.run(["sh", "-c", f'module=$1; messages=$2; {script}', "sh", "diag288_wdt", messages],
                              capture_output=True, text=True, check=True).stdout
        assert seen.startswith("### driver\n") and "Modules linked in" not in seen, seen
        [check] = [c for c in drill.evaluate_checks(sections(driver=seen.removeprefix("### driver\n").strip()),
                                                    Model.DIAG288, 15) if c.name == "driver"]
        assert check.passed is passes, (messages, check)


def test_daemon_age_from_the_guests_clocks():
    assert drill.daemon_age(sections()) == pytest.approx(14.17 - 13.14)
    assert drill.daemon_age(sections(holders="")) is None
    assert drill.daemon_age(sections(clock="")) is None


def test_the_seeds_bug_commented_device_line_fails_config_and_holder():
    checks = checks_by_name(config="26:#watchdog-device\t\t= /dev/watchdog", holders="")
    assert not checks["config"].passed and "#watchdog-device" in checks["config"].seen
    assert not checks["holder"].passed and checks["holder"].seen == "no process holds /dev/watchdog"
    assert checks["service"].passed  # the daemon runs happily without the device: that is the trap


@pytest.mark.parametrize("line", ["watchdog-device = /dev/watchdog0", "watchdog-device = /dev/watchdog # x",
                                  "# watchdog-device = /dev/watchdog"])
def test_config_line_must_name_dev_watchdog_exactly(line):
    assert not checks_by_name(config=f"26:{line}")["config"].passed


def test_other_holders_do_not_count_as_the_daemon():
    checks = checks_by_name(holders="1 systemd /dev/watchdog0 S 1\n733 wd_keepalive /dev/watchdog S 3000")
    assert not checks["holder"].passed
    assert "wd_keepalive" in checks["holder"].seen


@pytest.mark.parametrize("change, ok", [
    ({"driver": ""}, False),
    ({"driver": "[ 3.1] i6300ESB timer: cannot register miscdev on minor=130 (err=-16)"}, False),
    ({"module": ""}, False),
    ({"module": "present in /sys/module/i6300esb"}, True),  # built into the kernel
    ({"device": "ls: cannot access '/dev/watchdog': No such file or directory"}, False),
    ({"service": "systemd: inactive"}, False),
    ({"service": "systemd: activating"}, False),
    ({"service": "openrc:  * status: started"}, True),
    ({"service": "openrc:  * status: stopped"}, False),
])
def test_each_check_fails_on_its_own_evidence(change, ok):
    name = next(iter(change))
    assert checks_by_name(**change)[name].passed is ok


@pytest.mark.parametrize("cmdline, panic, ok", [
    ("console=ttyS0 root=/dev/vda", "0", True),
    ("console=ttyS0 panic=0", "0", True),
    ("console=ttyS0 panic=10", "10", False),
    ("console=ttyS0", "-1", False),  # sysctl kernel.panic set by some unit
])
def test_a_kernel_that_reboots_itself_on_panic_is_flagged(cmdline, panic, ok):
    check = checks_by_name(cmdline=cmdline, panic=panic)["panic"]
    assert check.passed is ok
    if not ok:
        assert "panic" in check.seen


def test_timeout_mismatch_fails_and_missing_sysfs_is_said_unverified():
    assert not checks_by_name(timeout="60")["timeout"].passed
    missing = checks_by_name(timeout="cat: /sys/class/watchdog/watchdog0/timeout: No such file or directory")
    assert missing["timeout"].passed and "not verified" in missing["timeout"].seen


# --- the manifest ----------------------------------------------------------------------------------------

def write_build(tmp_path: Path, **changes) -> Path:
    out = tmp_path / "debian-i6300esb"
    out.mkdir()
    for name in ("debian-i6300esb.qcow2", "debian-i6300esb.vmlinuz", "debian-i6300esb.initrd"):
        (out / name).write_bytes(b"x")
    manifest = {
        "schema": 1, "name": "debian-i6300esb", "distro": "debian", "release": "bookworm", "model": "i6300esb",
        "action": "reset", "timeout": 15, "boot": "direct", "machine": "pc",
        "kernel_cmdline": "console=ttyS0 root=/dev/vda rw", "agent": True,
        "files": {"image": "debian-i6300esb.qcow2", "kernel": "debian-i6300esb.vmlinuz",
                  "initrd": "debian-i6300esb.initrd"},
    }
    manifest.update(changes)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_manifest_loads(tmp_path):
    build = drill.load_build(write_build(tmp_path))
    assert (build.model, build.action, build.timeout) == (Model.I6300ESB, Action.RESET, 15)
    assert build.kernel.name == "debian-i6300esb.vmlinuz" and build.initrd.is_file()


@pytest.mark.parametrize("changes, message", [
    ({"model": "i8042"}, "key 'model': 'i8042' is not one of"),
    ({"action": "explode"}, "key 'action'"),
    ({"timeout": "15"}, "key 'timeout': expected int"),
    ({"timeout": True}, "key 'timeout': expected int"),
    ({"timeout": 0}, "outside i6300esb's range"),
    ({"agent": False}, "no QEMU guest agent"),
    ({"boot": "pxe"}, "key 'boot'"),
    ({"files": {"image": "../../etc/passwd"}}, "key 'files.image'"),
    ({"files": {"image": "/etc/passwd"}}, "key 'files.image'"),
    ({"files": {"image": "missing.qcow2", "kernel": "debian-i6300esb.vmlinuz"}}, "missing.qcow2: no such file"),
    ({"files": {"image": "debian-i6300esb.qcow2"}}, "key 'files.kernel'"),
])
def test_bad_manifest_is_a_usage_error_naming_the_key(tmp_path, changes, message):
    with pytest.raises(WdimageError, match=message) as e:
        drill.load_build(write_build(tmp_path, **changes))
    assert e.value.code == ExitCode.USAGE
    assert "manifest.json" in e.value.message


def test_missing_or_broken_manifest(tmp_path):
    with pytest.raises(WdimageError, match="manifest.json: no such file"):
        drill.load_build(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(WdimageError, match="manifest.json: line 1: not valid JSON"):
        drill.load_build(tmp_path)


def test_cli_bad_directory_and_bad_fault_exit_2(tmp_path, capsys):
    assert cli.main(["drill", str(tmp_path / "nope")]) == ExitCode.USAGE
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["drill", str(tmp_path), "--fault", "meltdown"])
    assert e.value.code == 2
    assert "--fault" in capsys.readouterr().err
    out = write_build(tmp_path)
    assert cli.main(["drill", str(out), "--json", str(tmp_path / "no" / "r.json")]) == ExitCode.USAGE
    assert "--json" in capsys.readouterr().err


def test_fault_choice_all_is_every_scenario_controls_first():
    order = ["healthy", "proof", "pause", "stop", "migrate", "test-repaired", "panic", "kill", "hang", "migrate-panic",
             "net", "load", "memory", "service", "test"]
    assert scenarios.names() == order
    assert drill.FAULT_CHOICES == [*order, "all"]
    everything = Setup("x", Model.I6300ESB, Action.RESET, 15, health=scenarios_health_record())
    chosen, left_out = scenarios.select(drill.requested(["all"]), everything, frozenset(scenarios.Capability))
    assert [s.name for s in chosen] == order and left_out == []
    assert drill.requested(["hang", "panic", "hang"]) == ["hang", "panic"]
    assert drill.requested(None) == ["all"]
    chosen, _ = scenarios.select(drill.requested(["hang", "panic", "hang"]), everything, frozenset())
    assert [s.name for s in chosen] == ["hang", "panic"]


def scenarios_health_record() -> HealthRecord:
    """A manifest `health` record that configures every health test the drill has a scenario for."""
    from wdimage.image import build
    from wdimage.image.manifest import health_record
    return health_record(build.make_settings(
        "debian", ping=("10.0.2.2",), max_load_1=8, health_options=dict(min_memory=16384, example=True)).health)


def test_repeated_fault_option_and_bad_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["drill", str(tmp_path), "--fault", "panic", "--fault", "nosuch"])
    assert e.value.code == 2 and "nosuch" in capsys.readouterr().err


# --- the report ------------------------------------------------------------------------------------------

def sample_report(tmp_path: Path, kill_passed: bool = True) -> DrillReport:
    build = drill.load_build(write_build(tmp_path))
    setup = drill.setup_from_build(build)
    report = DrillReport(target=str(build.directory), setup=setup, build=build,
                         faults_requested=["panic", "kill", "hang"], accel="tcg", accel_reason="KVM probe: hung",
                         boot_to_agent_seconds=17.04, boot_to_armed_seconds=18.46,
                         checks=drill.evaluate_checks(sections(), Model.I6300ESB, 15),
                         boot=drill.BootTimeline("initramfs", armed=7.4, init=5.2, real_root=11.9, daemon=13.14,
                                                 handovers=2))
    window = Window(10, 15, "15s after the last keepalive")
    report.faults = [
        FaultResult("panic", True, "reset", 14.71, True, 21.3, "WATCHDOG reset 14.7s after the fault",
                    outcome="fire", path="watchdog", window=window),
        FaultResult("kill", kill_passed, None if not kill_passed else "reset",
                    None if not kill_passed else 14.2, None if not kill_passed else True,
                    detail="no WATCHDOG event within 25s of the fault", outcome="fire", window=window),
        FaultResult("hang", True, "reset", 14.9, True, 20.0, "WATCHDOG reset", outcome="fire", window=window),
    ]
    return report


def test_json_report_has_the_issue_fields(tmp_path):
    data = drill_report.report_json(sample_report(tmp_path))
    assert data["timeout"] == 15 and data["boot_to_armed_seconds"] == 18.5
    assert {"name", "title", "passed", "seen", "fix"} <= set(data["checks"][0])
    assert [f["fault"] for f in data["faults"]] == ["panic", "kill", "hang"]
    first = data["faults"][0]
    assert {"fault", "passed", "action", "seconds_to_reset", "rebooted_armed", "path", "expected_window"} <= set(first)
    assert first["ratio_to_timeout"] == pytest.approx(0.981, abs=1e-3)
    assert first["ratio_to_window"] == pytest.approx(0.981, abs=1e-3)
    assert first["expected_window"] == [10, 15]
    assert data["passed"] is True
    assert data["boot_timeline"] == {"armed_by": "initramfs", "armed": 7.4, "init": 5.2, "real_root": 11.9,
                                     "daemon": 13.14, "handovers": 2}
    json.dumps(data)  # serialisable as is


def test_text_report_says_where_the_boot_seconds_went(tmp_path):
    text = drill_report.render_text(sample_report(tmp_path))
    assert ("boot timeline (guest uptime): the kernel ran the initramfs 5.2s, armed by the initramfs 7.4s, "
            "the real root's init started 11.9s, the daemon took over 13.1s; 2 hand-over(s) with the device "
            "left armed") in text


def test_after_fault_description_names_the_keepalive_takeover():
    text = ("### holders\n812 wd_keepalive /dev/watchdog S 5120\n### units\n"
            "watchdog.service failed\nwd_keepalive.service active\n")
    assert scenarios.describe_after_fault(text) == ("wd_keepalive (pid 812, state S) holds /dev/watchdog; "
                                                "watchdog.service failed, wd_keepalive.service active")
    assert scenarios.describe_after_fault("### holders\n### units\n").startswith("nobody holds /dev/watchdog")


def test_one_failed_fault_fails_the_drill_and_shows_in_text(tmp_path):
    report = sample_report(tmp_path, kill_passed=False)
    assert not report.passed and report.exit_code == ExitCode.FAILED
    text = drill_report.render_text(report)
    assert "FAIL  kill: no WATCHDOG event" in text
    assert "PASS  panic" in text
    assert text.endswith("Result: FAILED")
    assert drill_report.report_json(report)["faults"][1]["rebooted_armed"] is None


def test_failed_check_means_no_faults_and_says_what_was_not_run(tmp_path):
    report = sample_report(tmp_path)
    report.checks = drill.evaluate_checks(sections(config="26:#watchdog-device = /dev/watchdog"), Model.I6300ESB, 15)
    report.faults = []
    report.boot_to_armed_seconds = None
    text = drill_report.render_text(report)
    assert "FAIL  watchdog-device = /dev/watchdog active" in text
    assert "Not run: panic, kill, hang" in text
    assert report.exit_code == ExitCode.FAILED


def test_passing_report_text(tmp_path):
    text = drill_report.render_text(sample_report(tmp_path))
    assert "boot to armed: 18.5s (guest agent after 17.0s)" in text
    assert text.endswith("Result: PASSED")


def test_json_file_is_replaced_whole(tmp_path):
    from wdimage.commands.drill import write_json

    target = tmp_path / "drill.json"
    target.write_text("old")
    write_json(target, {"passed": True})
    assert json.loads(target.read_text()) == {"passed": True}
    assert [p.name for p in tmp_path.iterdir()] == ["drill.json"]  # no temp file left behind


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (make deps)")
def test_an_image_qemu_cannot_use_fails_the_drill_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WDIMAGE_ACCEL", "tcg")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the kept diagnostics dir (unless too long a path)
    out = write_build(tmp_path)  # the "image" is one byte of garbage
    assert cli.main(["drill", str(out)]) == ExitCode.FAILED
    text = capsys.readouterr().out
    assert "Stopped: command failed" in text and "qemu-img create" in text
    assert text.endswith("Result: FAILED\n")
    kept = Path(text.split("kept in ", 1)[1].split()[0])
    assert kept.is_dir() and kept.name.startswith("wdimage-drill-") and kept.stat().st_mode & 0o777 == 0o700
    assert kept.parent.name.startswith("wdimage-run-")  # in the run's scratch scope, which keeps it
    shutil.rmtree(kept.parent)


def test_the_scratch_scope_is_passed_on_and_leaves_tempfile_alone(tmp_path, monkeypatch):
    from wdimage.commands.drill import scratch_scope
    from wdimage.vm.process import private_dir

    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    with scratch_scope() as scope:
        assert tempfile.tempdir == "/tmp" and tempfile.gettempdir() == "/tmp"
        made = private_dir(scope)
        assert made.parent == scope and made.stat().st_mode & 0o777 == 0o700
        made.rmdir()
    assert not scope.exists()  # left empty: removed
    comma = tmp_path / "a,b"
    comma.mkdir()
    fallback = private_dir(comma)  # a comma cannot be in a QEMU option value
    assert fallback.parent == Path("/tmp")
    fallback.rmdir()


@pytest.mark.parametrize("text, interval", [("interval\t\t= 5", 5), ("  interval = 10", 10), ("", 1)])
def test_keepalive_interval_with_the_daemons_default(text, interval):
    assert drill.ping_interval({"interval": text}) == interval


def test_expected_windows_per_fault_and_model():
    setup = Setup("x", Model.I6300ESB, Action.RESET, 15, interval=5)
    panic, kill = scenarios.SCENARIOS["panic"], scenarios.SCENARIOS["kill"]
    assert (panic.window(setup).low, panic.window(setup).high) == (10, 15)
    assert (kill.window(setup).low, kill.window(setup).high) == (15, 15)
    assert "pings the device once" in kill.window(setup).why
    itco = Setup("x", Model.ITCO, Action.RESET, 15, interval=5)  # the ICH9 TCO counts down twice
    assert (panic.window(itco).low, panic.window(itco).high) == (25, 30)
    assert "2 countdowns of 15s" in panic.window(itco).why


def test_a_named_scenario_the_image_cannot_run_is_refused_and_all_leaves_it_out():
    setup = Setup("x", Model.I6300ESB, Action.RESET, 15)
    row = scenarios.Scenario("needs-ping", "x", Outcome.REBOOT, scenarios.nothing, scenarios.quiet_window,
                             health_test=scenarios.HealthTest("ping", "--ping ADDR"))
    scenarios.SCENARIOS[row.name] = row
    try:
        with pytest.raises(ValueError, match="--fault needs-ping: .*--ping ADDR"):
            scenarios.select(["needs-ping"], setup, frozenset())
        chosen, left_out = scenarios.select(["all"], setup, frozenset())
        assert "needs-ping" not in [c.name for c in chosen]
        assert ("needs-ping", "build the image with --ping ADDR") in left_out
        chosen, _ = scenarios.select(["all"], Setup("x", Model.I6300ESB, Action.RESET, 15, health=HealthRecord(ping=("a",))),
                                     frozenset())
        assert "needs-ping" in [c.name for c in chosen]
    finally:
        del scenarios.SCENARIOS[row.name]


def test_failed_checks_carry_the_concrete_fix():
    checks = checks_by_name(config="26:#watchdog-device = /dev/watchdog", module="")
    assert "uncomment `watchdog-device = /dev/watchdog`" in checks["config"].fix
    assert "modprobe i6300esb" in checks["module"].fix
    assert checks["driver"].fix == ""  # passed: no fix
    text = drill_report.render_text(DrillReport(target="t", setup=Setup("x", Model.I6300ESB, Action.RESET, 15),
                                                faults_requested=[], checks=list(checks.values())))
    assert "fix: uncomment" in text


def test_a_loaded_crash_kernel_fails_the_kexec_check():
    assert not checks_by_name(kexec="1")["kexec"].passed
    assert "kdump" in checks_by_name(kexec="1")["kexec"].fix
    assert checks_by_name(kexec="0")["kexec"].passed
    assert checks_by_name(kexec="")["kexec"].passed  # no kexec in the kernel: nothing can take the panic


def test_recorded_probe_interval():
    assert drill.ping_interval(sections()) == 5


# --- JUnit ---------------------------------------------------------------------------------------------------

JUNIT_XSD = Path(__file__).resolve().parents[1] / "fixtures" / "junit" / "junit.xsd"


def validate_junit(path: Path) -> None:
    import subprocess

    result = subprocess.run(["xmllint", "--noout", "--schema", str(JUNIT_XSD), str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_junit_has_a_case_per_check_and_fault_and_validates(tmp_path):
    import xml.etree.ElementTree as ET

    report = sample_report(tmp_path, kill_passed=False)
    report.faults.append(FaultResult("migrate", True, outcome="quiet", skipped="libvirt cannot migrate"))
    report.faults_requested.append("migrate")
    path = tmp_path / "drill.xml"
    path.write_text(drill_report.report_junit(report, console_tail="Kernel panic - not syncing"))
    validate_junit(path)
    suite = ET.parse(path).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == len(report.checks) + 4
    assert cases["fault panic"].get("time") == "14.71" and cases["fault panic"].find("failure") is None
    failure = cases["fault kill"].find("failure")
    assert "no WATCHDOG event" in failure.get("message") and "Kernel panic" in failure.text
    assert cases["fault migrate"].find("skipped").get("message") == "libvirt cannot migrate"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(cases)), "1", "1")


def test_junit_of_a_drill_that_stopped_early_validates(tmp_path):
    report = sample_report(tmp_path)
    report.faults, report.error = [], "QEMU did not start: boom <&>"
    path = tmp_path / "drill.xml"
    path.write_text(drill_report.report_junit(report))
    validate_junit(path)
    assert "boom &lt;&amp;&gt;" in path.read_text()


def test_on_q35_the_daemons_device_must_be_the_models_not_the_built_in_itco():
    both = "watchdog0: i6300ESB timer\nwatchdog1: iTCO_wdt"
    assert checks_by_name(identity=both)["identity"].passed
    wrong = checks_by_name(identity="watchdog0: iTCO_wdt\nwatchdog1: i6300ESB timer")["identity"]
    assert not wrong.passed and "watchdog0: iTCO_wdt" in wrong.seen and "blacklist" in wrong.fix
    assert checks_by_name(identity="")["identity"].passed  # no sysfs identity: said unverified
