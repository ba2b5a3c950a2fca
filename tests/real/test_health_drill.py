"""The watchdog daemon's own health tests, drilled for real on one Debian image (tests/real/conftest.py
debian_health_image_dir): each fault must end in the daemon's soft reboot, with its reason in the journal,
within its expected window; each control must stay quiet. Faults share boots: the guest comes back armed."""

import json
import re

import pytest

from wdimage import cli
from wdimage.errors import ExitCode

pytestmark = pytest.mark.real

CONTROLS = ("healthy", "stop", "pause", "test-repaired")
# fault -> what the daemon must have logged (watchdog 5.16's wd_strerror of the test's error). `load` first: the
# guest has been up through the controls, so its 1-minute load has settled, as the window assumes.
FAULTS = {
    "load": "error 253 = 'load average too high'",
    "memory": "error 12 = 'Cannot allocate memory'",
    "net": "error 101 = 'Network is unreachable'",
    "service": "error 3 = 'No such process'",
    "test": "error 2 = 'No such file or directory'",
}


def test_health_faults_and_controls(debian_health_image_dir, tmp_path):
    manifest = json.loads((debian_health_image_dir / "manifest.json").read_text())
    assert manifest["health"]["ping"] == ["10.0.2.2"] and manifest["health"]["example"] is True
    report_path = tmp_path / "drill.json"
    code = cli.main(["drill", str(debian_health_image_dir), "--json", str(report_path),
                     *[f"--fault={f}" for f in (*CONTROLS, *FAULTS)]])
    report = json.loads(report_path.read_text())
    print(json.dumps(report, indent=1))
    faults = {f["fault"]: f for f in report["faults"]}
    assert list(faults) == [*CONTROLS, *FAULTS]
    for name in CONTROLS:
        assert faults[name]["outcome"] == "quiet" and faults[name]["passed"], faults[name]
        assert "still armed afterwards" in faults[name]["detail"]
    assert "put /run/wdimage-example/healthy back" in faults["test-repaired"]["detail"]
    for name, said in FAULTS.items():
        fault = faults[name]
        assert fault["outcome"] == "reboot" and fault["passed"], fault
        assert fault["path"] == "soft-reboot" and said in fault["reason"], fault
        low, high = fault["expected_window"]
        assert fault["seconds_to_reset"] <= 1.1 * high, fault
        assert fault["rebooted_armed"] is True, fault
    retry_timeout = manifest["health"]["retry_timeout"]
    for name in ("load", "net", "service", "test"):  # retried: the daemon waited out retry-timeout first
        retried = re.search(r"kept failing for (\d+)s", faults[name]["reason"])
        assert retried and int(retried.group(1)) > retry_timeout, faults[name]
    assert code == ExitCode.OK
