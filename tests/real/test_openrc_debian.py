"""The wdimage-watchdog element's OpenRC branch, booted for real: `wdimage build debian --init openrc` (sysvinit-core
as /sbin/init, openrc as its rc) and `wdimage drill --fault panic` on it under QEMU.

Gentoo cannot be fetched here; Debian with OpenRC runs the same branch of the element (rc-update, the
watchdog service in the default runlevel, the agent's service) on a guest whose PID 1 is not systemd.
The build is cached like the other real builds (fixture below); warm, the test is one drill: two TCG boots.
"""

import json

import pytest

from tests.real.conftest import built
from wdimage import cli
from wdimage.drill import runner as drill
from wdimage.errors import ExitCode

pytestmark = pytest.mark.real

@pytest.fixture(scope="session")
def debian_openrc_image_dir():
    """The output directory of a real `wdimage build debian --init openrc`, built once and cached."""
    return built("debian-openrc")


def test_the_openrc_build_says_so(debian_openrc_image_dir):
    manifest = json.loads((debian_openrc_image_dir / "manifest.json").read_text())
    assert manifest["init_system"] == "openrc"
    assert "debian-openrc" in manifest["elements"]
    installed = {p["name"] for p in manifest["installed_packages"]}
    assert {"openrc", "sysvinit-core", "watchdog", "qemu-guest-agent"} <= installed
    assert "systemd-sysv" not in installed  # /sbin/init is sysvinit's


def test_drill_panic_passes_on_openrc(debian_openrc_image_dir, tmp_path, capsys):
    report_path = tmp_path / "drill.json"
    code = cli.main(["drill", str(debian_openrc_image_dir), "--fault", "panic", "--json", str(report_path)])
    out = capsys.readouterr().out
    print(out)
    report = json.loads(report_path.read_text())
    assert code == ExitCode.OK, out
    assert report["passed"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["passed"] for c in checks.values()), checks
    # Asked of OpenRC itself (no /run/systemd/system in this guest): the native service reports started.
    assert checks["service"]["seen"].startswith("openrc:") and "started" in checks["service"]["seen"]
    assert "watchdog" in checks["holder"]["seen"]
    boot = report["boot_timeline"]  # OpenRC's services take the device over from the initramfs's keepalive too
    assert boot["armed_by"] == "initramfs" and boot["armed"] < boot["daemon"] and boot["handovers"] == 2, boot
    [fault] = report["faults"]
    assert fault["fault"] == "panic" and fault["passed"] and fault["action"] == "reset", fault
    assert fault["rebooted_armed"] is True, fault  # the second boot came up armed through OpenRC again
    assert 0 < fault["seconds_to_reset"] <= report["timeout"] + drill.MARGIN_SECONDS, fault
