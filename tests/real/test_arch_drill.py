"""Foreign guests built, booted and drilled for real under TCG: Debian arm64 on QEMU's `virt` machine with the
i6300esb watchdog over PCIe (QEMU's `virt` has no watchdog of its own). The image is a foreign diskimage-builder
build through qemu-user-static, cached by content (tests/build_cache.py) like the x86 images."""

import json
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.drill.scenarios import MARGIN_SECONDS
from wdimage.errors import ExitCode
from wdimage.image.manifest import read_manifest
from wdimage.models import Arch

pytestmark = pytest.mark.real


def run_cli(image_dir: Path, tmp_path: Path, *args: str) -> tuple[int, dict]:
    report_path = tmp_path / "drill.json"
    code = cli.main(["drill", str(image_dir), "--json", str(report_path), *args])
    report = json.loads(report_path.read_text())
    print(json.dumps(report, indent=1))
    return code, report


@pytest.mark.arm64
def test_arm64_virt_i6300esb_resets_a_crashed_guest(debian_arm64_image_dir, tmp_path):
    manifest = read_manifest(debian_arm64_image_dir / "manifest.json")
    assert (manifest.arch, manifest.machine, manifest.model) == (Arch.ARM64, "virt", "i6300esb")
    assert manifest.kernel_cmdline.endswith("console=ttyAMA0")
    assert manifest.packages["kernel"].name == "linux-image-" + manifest.kernel_release
    assert manifest.kernel_release.endswith("-arm64")  # Debian's own arm64 kernel drives the i6300esb
    stub = (debian_arm64_image_dir / manifest.files.launch_stub).read_text()
    assert "qemu-system-aarch64" in stub and "-cpu max" in stub
    code, report = run_cli(debian_arm64_image_dir, tmp_path, "--fault", "panic", "--fault", "kill")
    assert code == ExitCode.OK, report
    assert report["accel"] == "tcg" and "arm64 guest" in report["accel_reason"]
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["passed"] for c in report["checks"]), checks
    assert "i6300ESB timer" in checks["identity"]["seen"], checks["identity"]
    for fault in report["faults"]:
        low, high = fault["expected_window"]
        assert fault["action"] == "reset" and fault["path"] == "watchdog" and fault["rebooted_armed"], fault
        assert 0 < fault["seconds_to_reset"] <= high + MARGIN_SECONDS, fault
    assert report["boot_to_armed_seconds"] > 0


@pytest.mark.s390x
def test_s390x_diag288_resets_a_crashed_killed_or_hung_guest(debian_s390x_image_dir, tmp_path):
    """s390x's own watchdog: one countdown of watchdog-timeout (QEMU hw/watchdog/wdt_diag288.c). The clean stop
    (magic close) disarms it; a panic, a killed daemon and a hung one are each reset within the window."""
    manifest = read_manifest(debian_s390x_image_dir / "manifest.json")
    assert (manifest.arch, manifest.machine, manifest.model) == (Arch.S390X, "s390-ccw-virtio", "diag288")
    assert manifest.kernel_cmdline.endswith("console=ttysclp0") and manifest.kernel_release.endswith("-s390x")
    code, report = run_cli(debian_s390x_image_dir, tmp_path, *[f"--fault={f}" for f in S390X_FAULTS])
    assert code == ExitCode.OK, report
    assert report["accel"] == "tcg"
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["passed"] for c in report["checks"]), checks
    assert "z Watchdog" in checks["identity"]["seen"], checks["identity"]
    faults = {f["fault"]: f for f in report["faults"]}
    assert list(faults) == list(S390X_FAULTS)
    stop = faults["stop"]
    assert stop["passed"] and stop["outcome"] == "quiet" and "still armed afterwards" in stop["detail"], stop
    for name in ("panic", "kill", "hang"):
        fault = faults[name]
        low, high = fault["expected_window"]
        assert high == report["timeout"]  # one countdown
        assert fault["action"] == "reset" and fault["path"] == "watchdog" and fault["rebooted_armed"], fault
        assert 0 < fault["seconds_to_reset"] <= high + MARGIN_SECONDS, fault


S390X_FAULTS = ("stop", "panic", "kill", "hang")
