"""`drill --safe` for real: the proof on a running guest, then, on the SAME guest, a real panic that must still
fire the original action in its window (the proof left the guest protected and the action restored).

One guest per model serves the proof and the panic (QEMU backend: the runner's session keeps a guest that is
still armed after the proof). libvirt: one domain serves `--safe` through the CLI, the interruption (SIGTERM to
a `wdimage drill --libvirt DOM --safe` subprocess in the middle of the countdown), then a real panic that must
reset it, and last a stopped daemon that `--safe` must diagnose without touching anything.
"""

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.real.test_libvirt import scratch_domain
from wdimage import cli
from wdimage.drill import runner as drill
from wdimage.drill import scenarios
from wdimage.drill.scenarios import MARGIN_SECONDS
from wdimage.errors import ExitCode
from wdimage.models import info
from wdimage.vm import libvirt_guest, qemu_guest
from wdimage.vm.guest import EventKind

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]


def _check_proof(proof: dict, model: str) -> None:
    assert proof["passed"] and proof["outcome"] == "proof" and proof["action"] == "none", proof
    low, high = proof["expected_window"]
    assert low - 1 <= proof["seconds_to_reset"] <= high + MARGIN_SECONDS, proof  # the event, within the window
    figures = proof["figures"]
    assert figures["boot_id_unchanged"] is True and figures["action_restored"] is True
    assert figures["uptime_after"] > figures["uptime_before"] + proof["seconds_to_reset"]  # no restart
    assert bool(figures["rearm"]) is info(model).reopen_after_fire


@pytest.mark.parametrize("fixture, model, action", [
    ("debian_image_dir", "i6300esb", "reset"),
    ("debian_ib700_image_dir", "ib700", "poweroff"),
    ("debian_itco_image_dir", "itco", "reset"),
])
def test_proof_then_a_real_panic_on_the_same_guest(request, tmp_path, monkeypatch, fixture, model, action):
    build = drill.load_build(request.getfixturevalue(fixture))
    assert (str(build.model), str(build.action)) == (model, action)
    boots = []
    real_boot = qemu_guest.QemuTarget.boot

    def counted(self):
        boots.append(time.monotonic())
        return real_boot(self)

    monkeypatch.setattr(qemu_guest.QemuTarget, "boot", counted)
    report = drill.run_drill(build, ["proof", "panic"], scratch=tmp_path)
    from wdimage.drill import report as drill_report

    data = drill_report.report_json(report)
    print("\n" + drill_report.render_text(report))
    proof, panic = data["faults"]
    _check_proof(proof, model)
    assert len(boots) == 1  # the panic ran on the guest that the proof left running
    assert panic["passed"] and panic["action"] == action, panic  # the original action, restored
    low, high = panic["expected_window"]
    assert low - 1 <= panic["seconds_to_reset"] <= high + MARGIN_SECONDS, panic
    assert report.passed
    print(f"{model}: proof WATCHDOG none {proof['seconds_to_reset']}s (window {proof['expected_window']}); "
          f"panic {panic['action']} {panic['seconds_to_reset']}s (window {panic['expected_window']})")


# --- libvirt ---------------------------------------------------------------------------------------------------

DOMAIN = "wdimage-safe"


@pytest.fixture(scope="module")
def safe_domain(debian_image_dir, libvirtd, tmp_path_factory):
    """The Debian image's generated domain (i6300esb, reset, 15 s) on a scratch overlay, started once."""
    name = libvirt_guest.define(libvirtd.uri, scratch_domain(debian_image_dir, tmp_path_factory.mktemp("lv"), DOMAIN))
    target = libvirt_guest.LibvirtTarget(name, libvirtd.uri)
    guest = target.boot()
    try:
        guest.wait_agent(timeout=420)
        yield target, guest
    finally:
        guest.close()
        if target.domain.isActive():
            target.domain.destroy()
        target.close()


def _wdimage(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "wdimage", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _daemon(guest) -> tuple[str, str]:
    """(pid, state) of the watchdog daemon holding /dev/watchdog in the guest, or ('', '')."""
    said = guest.run(scenarios.HOLDERS_SH + "holders", timeout=30).stdout.split()
    return (said[0], said[3]) if len(said) >= 5 and said[1] == "watchdog" else ("", "")


def test_libvirt_safe_then_interrupted_then_a_real_panic(safe_domain, libvirtd, tmp_path):
    target, guest = safe_domain
    boot_id = guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    # 1. --safe through the CLI, with no --yes-crash-it
    started = time.monotonic()
    proc = _wdimage("drill", "--libvirt", DOMAIN, "--connect", libvirtd.uri, "--safe", "--json", "-",
                    "--junit", str(tmp_path / "junit.xml"))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    data = json.loads(out)
    (proof,) = data["faults"]
    _check_proof(proof, "i6300esb")
    assert "custom-monitor" in proof["detail"] and "taint" in proof["detail"]  # the report says so
    assert 'name="fault proof"' in (tmp_path / "junit.xml").read_text()
    print(f"\n--safe on libvirt: {time.monotonic() - started:.0f}s; WATCHDOG none {proof['seconds_to_reset']}s "
          f"(window {proof['expected_window']})\n{err}")
    assert guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() == boot_id
    assert ET.fromstring(target.xml()).find("devices/watchdog").get("action") == "reset"

    # 2. SIGTERM in the middle of the countdown: once the action is none and the daemon is seen frozen
    proc = _wdimage("drill", "--libvirt", DOMAIN, "--connect", libvirtd.uri, "--safe")
    deadline = time.monotonic() + 300
    seen = ""
    while "watchdog action: none for the proof" not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen
        seen += proc.stderr.readline()
    while _daemon(guest)[1] != "T":
        assert time.monotonic() < deadline, seen
        time.sleep(0.5)
    frozen_at = time.monotonic()
    time.sleep(4)  # mid-countdown: the watchdog fires 10-15 s after the freeze
    proc.send_signal(signal.SIGTERM)
    print(f"\nSIGTERM {time.monotonic() - frozen_at:.1f}s after the daemon was seen frozen")
    out, rest = proc.communicate(timeout=120)
    err = seen + rest
    assert proc.returncode == 143, err
    assert "watchdog action: reset restored" in err and "interrupted by SIGTERM" in err
    print(f"\ninterrupted:\n{err}")
    pid, state = _daemon(guest)
    assert pid and state != "T"  # thawed (by the host's clean-up here; by the guest-side sleeper at the latest)
    assert guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() == boot_id

    # 3. the action is the original one: a real panic resets the guest within its window
    guest.clear_events()
    panicked = time.time()
    guest.spawn(scenarios.PANIC_SH)
    event = guest.wait_event({EventKind.WATCHDOG}, time.monotonic() + 15 + MARGIN_SECONDS + 10)
    assert event is not None and event.action == "reset", guest.events()
    print(f"panic after the interruption: WATCHDOG {event.action} {event.time - panicked:.1f}s later")
    guest.wait_agent(timeout=420)
    assert guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() != boot_id


def test_the_guest_side_sleeper_thaws_and_re_arms_without_the_host(safe_domain):
    """The freeze's own sleeper, with no host side at all: it outlives the guest-exec that started it, thaws the
    daemon and restarts it, well before the watchdog (action reset, 15 s) would reset the guest."""
    target, guest = safe_domain
    guest.wait_agent(timeout=420)
    guest.run("systemctl is-system-running --wait", timeout=300)  # after the panic's reset: booted
    boot_id = guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    deadline = time.monotonic() + 120
    while not (pid := _daemon(guest)[0]):
        assert time.monotonic() < deadline, "no daemon holds /dev/watchdog"
        time.sleep(1)
    guest.clear_events()
    frozen = guest.run(scenarios.FREEZE_SH, pid, "4", scenarios.RESTART_DAEMON["systemd"], timeout=30)
    assert frozen.exitcode == 0, frozen
    assert _daemon(guest) == (pid, "T")
    deadline = time.monotonic() + 30
    while _daemon(guest)[0] in ("", pid):
        assert time.monotonic() < deadline, _daemon(guest)
        time.sleep(1)
    new_pid, state = _daemon(guest)
    assert state != "T"  # the old daemon thawed, a restarted one holds the device
    logged = guest.run("journalctl -t wdimage-proof --no-pager -o cat", timeout=30).stdout
    assert f"thawed the watchdog daemon (pid {pid}) after 4s: the host did not" in logged
    assert guest.wait_event({EventKind.WATCHDOG, EventKind.RESET}, time.monotonic() + 20) is None
    assert guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() == boot_id
    print(f"\nthe sleeper thawed pid {pid} and restarted the daemon (now pid {new_pid})")


def test_libvirt_safe_on_a_stopped_daemon_fails_and_touches_nothing(safe_domain, libvirtd, tmp_path, capsys):
    target, guest = safe_domain
    guest.wait_agent(timeout=420)
    stopped = guest.run("systemctl is-system-running --wait; systemctl stop watchdog.service wd_keepalive.service; "
                        "systemctl is-active watchdog.service", timeout=300)
    assert "active" != stopped.stdout.split()[-1], stopped
    report = tmp_path / "drill.json"
    code = cli.main(["drill", "--libvirt", DOMAIN, "--connect", libvirtd.uri, "--safe", "--json", str(report)])
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert code == ExitCode.FAILED and data["faults"] == [], out  # the proof never ran: no set-action, no freeze
    checks = {c["name"]: c for c in data["checks"]}
    assert not checks["service"]["passed"] and "systemctl enable --now watchdog" in checks["service"]["fix"]
    assert not checks["holder"]["passed"] and "Not run: proof" in out
    assert _daemon(guest) == ("", "")  # nothing was started or frozen
    print(f"\n{out}")
