"""The health scenarios' table rows: which build option each needs (exit 2 naming it), their windows from the
manifest's record, and the daemon's reason parsed from its real log lines (watchdog 5.16's format strings)."""

import dataclasses

import pytest

from tests.unit.test_drill import write_build
from wdimage import cli
from wdimage.drill import checks, scenarios, windows
from wdimage.drill import health as health_drill
from wdimage.drill.scenarios import Outcome, Setup
from wdimage.errors import ExitCode
from wdimage.image import build
from wdimage.image.manifest import Breaks, HealthRecord, health_record
from wdimage.models import Action, Model

EXAMPLE_RECORD = health_record(build.make_settings(
    "debian", ping=("10.0.2.2",), max_load_1=8, health_options=dict(min_memory=16384, retry_timeout=10,
                                                                    example=True)).health)


def _setup(record: HealthRecord | None = EXAMPLE_RECORD, interval: int = 5) -> Setup:
    return Setup("x", Model.I6300ESB, Action.RESET, 15, interval, record)


@pytest.mark.parametrize("fault, option", [
    ("net", "--ping"), ("load", "--max-load"), ("memory", "--min-memory"), ("service", "--pidfile"),
    ("test", "--test-binary"), ("test-repaired", "--repair-binary"),
])
def test_a_fault_the_image_does_not_configure_exits_2_naming_the_option(tmp_path, capsys, fault, option):
    out = write_build(tmp_path)
    assert cli.main(["drill", str(out), "--fault", fault]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"--fault {fault}" in err and option in err


def test_all_leaves_out_what_the_image_cannot_run_and_says_why():
    chosen, left_out = scenarios.select(["all"], _setup(None), frozenset(scenarios.Capability))
    assert {name for name, _ in left_out} == {"net", "load", "memory", "service", "test", "test-repaired"}
    assert "panic" in [s.name for s in chosen]
    chosen, left_out = scenarios.select(["all"], _setup(), frozenset(scenarios.Capability))
    assert left_out == []


def test_a_user_test_without_a_break_command_cannot_be_drilled():
    record = dataclasses.replace(EXAMPLE_RECORD, example=False, breaks=Breaks())
    why = scenarios.SCENARIOS["test"].missing(_setup(record))
    assert "--test-break" in why and "no way to make the test binary fail" in why
    why = scenarios.SCENARIOS["test-repaired"].missing(_setup(record))
    assert "--test-break" in why and "nothing for the repair binary to repair" in why
    assert scenarios.SCENARIOS["test"].missing(_setup()) is None


def test_health_rows_reboot_and_the_repaired_test_is_quiet():
    for name in ("net", "load", "memory", "service", "test"):
        assert scenarios.SCENARIOS[name].outcome is Outcome.REBOOT
    assert scenarios.SCENARIOS["test-repaired"].outcome is Outcome.QUIET
    assert scenarios.SCENARIOS["net"].restore is health_drill.restore_link  # or the rebooted guest fails again
    assert scenarios.Capability.LINK in scenarios.SCENARIOS["net"].needs


def test_windows_come_from_the_manifest_record():
    setup = _setup()
    net = scenarios.SCENARIOS["net"].window(setup)
    expected = windows.ping_window(windows.Timing(interval=5, retry_timeout=10, sigterm_delay=5, stages=1))
    assert (net.low, net.high) == (expected.low, expected.high)
    # the ICH9 TCO counts the daemon's final 1 s timeout down twice: one second more at the end
    itco = scenarios.SCENARIOS["service"].window(Setup("x", Model.ITCO, Action.RESET, 15, 5, EXAMPLE_RECORD))
    assert itco.high == scenarios.SCENARIOS["service"].window(setup).high + 1


def test_the_healthy_control_waits_out_the_slowest_health_test():
    setup = _setup()
    healthy = scenarios.SCENARIOS["healthy"].window(setup)
    slowest = max(scenarios.SCENARIOS[f].window(setup).high for f in ("net", "load", "memory", "service", "test"))
    assert healthy.high == slowest > setup.fire_after
    plain = scenarios.SCENARIOS["healthy"].window(_setup(None))
    assert plain.high == 15  # no health tests: the watchdog's own window


JOURNAL = """\
Retry timed-out at 11 seconds for /usr/local/lib/wdimage/health/wdimage-example-test
Retry timed-out at 11 seconds for 10.0.2.2
shutting down the system because of error 101 = 'Network is unreachable'
Retry timed-out at 12 seconds for /run/other.pid
"""


def test_reason_from_the_daemons_log_lines():
    assert health_drill.parse_reason(JOURNAL) == "error 101 = 'Network is unreachable', after 10.0.2.2 kept failing for 11s"
    assert health_drill.parse_reason("shutting down the system because of error 253 = 'load average too high'\n") \
        == "error 253 = 'load average too high'"
    assert health_drill.parse_reason("Retry timed-out at 11 seconds for 10.0.2.2\n") is None
    assert health_drill.parse_reason("") is None


def test_armed_since_the_early_keepalive():
    from tests.unit.test_drill import sections
    # the keepalive armed the device at 5.5 s of uptime, the daemon took it over at 13.14 s
    assert checks.daemon_age(sections(**{"armed-at": "5.50"})) == pytest.approx(14.17 - 5.50)
    assert checks.daemon_age(sections(**{"armed-at": ""})) == pytest.approx(14.17 - 13.14)
    assert checks.daemon_age(sections(**{"armed-at": "5.50"}, holders="")) is None  # nobody holds it now


def test_boot_timeline_from_the_stamps_dmesg_and_the_daemon():
    from tests.unit.test_drill import sections
    boot = ("[    5.204113] Run /init as init process\n"
            "[   11.873002] systemd[1]: systemd 252.39-1~deb12u1 running in system mode (+PAM +AUDIT)\n"
            "[   21.1] watchdog: watchdog0: watchdog did not stop!\n[   27.4] watchdog: watchdog0: watchdog did not stop!\n")
    t = checks.boot_timeline(sections(**{"armed-at": "7.41", "armed-by": "initramfs", "boot": boot}))
    assert (t.armed_by, t.armed, t.init, t.real_root) == ("initramfs", 7.41, 5.204113, 11.873002)
    assert t.daemon == pytest.approx(13.14)  # the holder's start ticks / CLK_TCK
    assert t.handovers == 2
    t = checks.boot_timeline(sections(**{"armed-at": "", "armed-by": "", "boot": ""}))
    assert (t.armed_by, t.armed, t.init, t.real_root, t.handovers) == ("", None, None, None, 0)  # no stamps
    t = checks.boot_timeline(sections(**{"armed-at": "9.5", "armed-by": "$(reboot)"}))
    assert (t.armed_by, t.armed) == ("", 9.5)  # not a name: dropped


def test_boot_timeline_reads_dracuts_lines_as_initramfs_tools_ones():
    """dracut with systemd runs a systemd in the initrd: its banner ("Running in initrd" follows it) is not the real
    root's, the next one is. dracut's shell init (no systemd in the initrd: Gentoo's OpenRC) says when it switches."""
    from tests.unit.test_drill import sections
    systemd_initrd = ("[    2.912001] Run /init as init process\n"
                      "[    3.410320] systemd[1]: systemd 252.39-1~deb12u1 running in system mode (+PAM +AUDIT)\n"
                      "[    3.498101] systemd[1]: Running in initrd.\n"
                      "[    9.731774] systemd[1]: systemd 252.39-1~deb12u1 running in system mode (+PAM +AUDIT)\n"
                      "[   11.2] watchdog: watchdog0: watchdog did not stop!\n[   15.9] watchdog: watchdog0: watchdog did not stop!\n")
    t = checks.boot_timeline(sections(**{"armed-at": "4.02", "armed-by": "initramfs", "boot": systemd_initrd}))
    assert (t.armed_by, t.armed, t.init, t.real_root, t.handovers) == ("initramfs", 4.02, 2.912001, 9.731774, 2)
    shell_init = ("[    2.1] Run /init as init process\n"
                  "[    8.6] dracut: Switching root\n[   12.0] watchdog: watchdog0: watchdog did not stop!\n")
    t = checks.boot_timeline(sections(**{"armed-at": "3.3", "armed-by": "initramfs", "boot": shell_init}))
    assert (t.init, t.real_root, t.handovers) == (2.1, 8.6, 1)
    # Only an initrd's systemd seen (the real root's banner not logged yet): no real-root stamp.
    t = checks.boot_timeline(sections(**{"armed-at": "4.0", "boot": "\n".join(systemd_initrd.splitlines()[:3])}))
    assert t.real_root is None and t.init == 2.912001


class _Guest:
    """Answers the reserve query with the 1 GiB guest's measured watermarks; records what it was asked."""

    def __init__(self):
        self.spawned = []

    def run(self, script, *args, timeout=30):
        assert "/proc/zoneinfo" in script
        return type("Result", (), {"stdout": "45052\n", "exitcode": 0})()

    def spawn(self, script, *args):
        self.spawned.append(args)


def _memory_ctx(pages):
    return type("Ctx", (), {"guest": _Guest(), "notes": [], "setup": _setup(dataclasses.replace(EXAMPLE_RECORD, min_memory=pages))})()


def test_memory_fault_refuses_a_min_memory_too_close_to_the_kernels_reserve():
    ctx = _memory_ctx(16384)  # 7/8 of 64 MiB = 56 MiB: within 16 MiB of the 44 MB reserve, the OOM killer wins
    with pytest.raises(RuntimeError, match=r"min-memory 16384 pages cannot be drilled.*--min-memory 17554 or more"):
        health_drill.fill_memory(ctx)
    assert ctx.guest.spawned == []
    ctx = _memory_ctx(32768)
    health_drill.fill_memory(ctx)
    assert ctx.guest.spawned == [(health_drill.MEMORY_PL, "32768")]
    assert "114688 kB" in ctx.notes[0]
