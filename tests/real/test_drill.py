"""The drill on the real Debian images that the build tests made, under real QEMU (TCG here).

Scenarios share boots wherever the guest comes back armed: the default image runs the controls, both
migrations and the three faults in one drill, on q35 beside the chipset's iTCO, so that the same boot proves
that the daemon holds the i6300esb there (two watchdog devices in one guest). The actions other than reset
reuse the same image with `--action` (the image does not depend on it), each in one boot. shutdown and debug
cost a boot each and are drilled by hand (`wdimage drill DIR --action shutdown --fault panic`; figures in the
issue's note). iTCO gets its own image (q35).
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import browser
from wdimage import cli, log
from wdimage.drill import pages
from wdimage.drill import report as drill_report
from wdimage.drill import runner as drill
from wdimage.drill.scenarios import MARGIN_SECONDS
from wdimage.errors import ExitCode
from wdimage.vm import accel, process
from wdimage.vm.launch import LaunchSpec

pytestmark = pytest.mark.real

JUNIT_XSD = Path(__file__).resolve().parents[1] / "fixtures" / "junit" / "junit.xsd"

# The seed's bug, made again in the overlay: the device line commented out, the daemon restarted on it. Not
# `systemctl restart`: Debian's unit fails its own stop (ExecStopPost with run_wd_keepalive=1), so OnFailure=
# starts wd_keepalive, which Conflicts= with the start half and cancels it. A separate start wins.
RECOMMENT_DEVICE_LINE = [
    r"sed -i 's|^\([[:space:]]*watchdog-device[[:space:]]*=\)|#\1|' /etc/watchdog.conf",
    "if [ -d /run/systemd/system ]; then systemctl stop watchdog.service; systemctl start watchdog.service;"
    " else rc-service watchdog restart; fi",
]


def run_cli(image_dir: Path, tmp_path: Path, *args: str) -> tuple[int, dict]:
    report_path = tmp_path / "drill.json"
    code = cli.main(["drill", str(image_dir), "--json", str(report_path), *args])
    report = json.loads(report_path.read_text())
    print(json.dumps(report, indent=1))
    return code, report


def by_fault(report: dict) -> dict[str, dict]:
    return {f["fault"]: f for f in report["faults"]}


def within_window(fault: dict) -> bool:
    low, high = fault["expected_window"]
    return 0 < fault["seconds_to_reset"] <= high + MARGIN_SECONDS


ONE_GUEST_FAULTS = ("pause", "migrate", "panic", "kill", "hang", "migrate-panic")


@pytest.fixture(scope="module")
def one_guest_drill(debian_image_dir, tmp_path_factory):
    """The default image's drill of the controls, both migrations and the three faults, with every report
    form (JSON, JUnit, HTML, Markdown): run once, looked at by the tests below. On q35, whose chipset brings its
    own iTCO watchdog: the image loads only its model's driver (iTCO_wdt is blacklisted), so /dev/watchdog
    (watchdog0) is the i6300esb, the daemon holds and feeds it, and every fault is caught by it."""
    tmp_path = tmp_path_factory.mktemp("one-guest")
    image = drill.load_build(debian_image_dir).image
    before = image.stat().st_mtime_ns
    files = {form: tmp_path / f"drill.{form}" for form in ("junit", "html", "markdown")}
    forms = [a for form, path in files.items() for a in (f"--{form}", str(path))]
    code, report = run_cli(debian_image_dir, tmp_path, "--machine", "q35", *forms,
                           *[f"--fault={f}" for f in ONE_GUEST_FAULTS])
    return code, report, files, image.stat().st_mtime_ns == before


def test_controls_migrations_and_faults_on_one_guest(one_guest_drill):
    code, report, files, image_untouched = one_guest_drill
    junit = files["junit"]
    assert code == ExitCode.OK, report
    assert report["passed"] is True and all(c["passed"] for c in report["checks"])
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["identity"]["seen"] == "watchdog0: i6300ESB timer", checks["identity"]
    assert checks["holder"]["passed"] and checks["driver"]["passed"]
    faults = by_fault(report)
    assert list(faults) == list(ONE_GUEST_FAULTS)
    for name in ("pause", "migrate"):  # controls: nothing happened, and the guest was still armed
        assert faults[name]["outcome"] == "quiet" and "still armed afterwards" in faults[name]["detail"]
    assert faults["migrate"]["figures"]["migration"]["seconds"] > 0
    for name in ("panic", "kill", "hang", "migrate-panic"):
        fault = faults[name]
        assert fault["action"] == "reset" and fault["path"] == "watchdog" and fault["rebooted_armed"], fault
        assert within_window(fault), fault
    assert faults["migrate-panic"]["figures"]["migration"]["seconds"] > 0
    assert report["boot_to_armed_seconds"] > 0 and report["kernel"]
    boot = report["boot_timeline"]  # armed in the initramfs, before the real root's init, and never let go:
    assert boot["armed_by"] == "initramfs" and boot["init"] < boot["armed"] < boot["real_root"] < boot["daemon"]
    assert boot["handovers"] == 2, boot  # initramfs -> wdimage-keepalive -> the daemon, each unclean (armed)
    assert image_untouched  # the built image is never written
    result = subprocess.run(["xmllint", "--noout", "--schema", str(JUNIT_XSD), str(junit)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_the_drills_moments_are_in_the_report(one_guest_drill):
    """Each scenario's timeline (schema 3), measured: the fault, the WATCHDOG event as many seconds later as the
    report says, QEMU's RESET, the guest armed again by its initramfs; the machine and QEMU's version."""
    _, report, _, _ = one_guest_drill
    assert report["schema"] == 3 and report["machine"] == "q35" and report["hypervisor"].startswith("QEMU 7.2")
    assert report["first_boot"]["armed_by"] == "initramfs" and report["first_boot"]["armed"] > report["first_boot"]["boot"]
    for name in ("panic", "kill", "hang", "migrate-panic"):
        fault = by_fault(report)[name]
        t = fault["timeline"]
        assert t["boot"] < t["armed"] < t["fault"] < t["event"] <= t["reset"] < t["armed_again"] <= t["end"], t
        assert abs((t["event"] - t["fault"]) - fault["seconds_to_reset"]) < 0.02, t
        assert t["event_label"] == "WATCHDOG reset" and t["armed_again_by"] == "initramfs", t
        assert t["reset"] - t["event"] < 1.0, t  # QEMU resets the guest right after the event
    for name in ("pause", "migrate"):
        t = by_fault(report)[name]["timeline"]
        assert t["event"] is None and t["end"] - t["fault"] >= 2 * by_fault(report)[name]["expected_window"][1]


def test_the_drills_html_report_in_a_real_browser(one_guest_drill):
    """Headless Chromium opens the page of that drill: not blank, green, one timeline per scenario, and not one
    request beyond the file itself. A control page that does fetch proves the requests are really counted."""
    _, report, files, _ = one_guest_drill
    seen = browser.open_page(files["html"])
    assert seen.requests == [seen.url], seen.requests
    assert seen.timelines == list(ONE_GUEST_FAULTS)
    assert all("pass" in c.split() for c in seen.sections), seen.sections
    assert seen.banner.startswith("PASSED")
    colours = browser.colours(seen.screenshot)
    white = colours.get((255, 255, 255), 0)
    assert len(colours) > 50 and white < 0.97 * sum(colours.values()), "the screenshot is (nearly) blank"
    assert colours.get(browser.hex_rgb("#1a7f37"), 0) > 2000  # the green banner and badges
    assert colours.get(browser.hex_rgb("#cf222e"), 0) == 0  # nothing red on a passed drill
    assert "QEMU 7.2" in seen.text and "armed again by the initramfs" in seen.text
    (files["html"].parent / "drill.png").write_bytes(seen.screenshot)
    markdown = files["markdown"].read_text()
    assert markdown.count("\n    section ") == len(ONE_GUEST_FAULTS) and "```mermaid\ngantt\n" in markdown
    control = files["html"].parent / "control.html"
    control.write_text(files["html"].read_text().replace("</body>", '<img src="http://127.0.0.1:9/x.png"></body>'))
    assert "http://127.0.0.1:9/x.png" in browser.open_page(control).requests


@pytest.mark.parametrize("action, fault, expect", [
    ("pause", "panic", "QEMU then: watchdog"),  # paused in run state 'watchdog'
    ("none", "panic", "event only"),
    ("inject-nmi", "hang", "the guest's console:"),  # a live kernel logs the NMI
])
def test_actions_other_than_reset(debian_image_dir, tmp_path, action, fault, expect):
    code, report = run_cli(debian_image_dir, tmp_path, "--action", action, "--fault", fault)
    assert code == ExitCode.OK, report
    [result] = report["faults"]
    assert result["action"] == action and within_window(result), result
    assert expect in result["detail"], result
    assert f"action {action} instead of the manifest's reset" in report["warnings"][0]


def test_itco_on_q35_counts_down_twice_and_resets(debian_itco_image_dir, tmp_path):
    code, report = run_cli(debian_itco_image_dir, tmp_path, "--fault", "panic")
    assert code == ExitCode.OK, report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["identity"]["seen"].startswith("watchdog0: iTCO_wdt"), checks["identity"]
    [panic] = report["faults"]
    assert panic["expected_window"][1] == 2 * report["timeout"]
    assert panic["action"] == "reset" and panic["rebooted_armed"] and within_window(panic), panic
    assert panic["seconds_to_reset"] > report["timeout"]  # one countdown is not enough: the second resets


def test_negative_control_commented_device_line_fails_the_checks(debian_image_dir, tmp_path):
    build = drill.load_build(debian_image_dir)
    report = drill.run_drill(build, ["panic", "kill", "hang"], prepare=RECOMMENT_DEVICE_LINE)
    failed = {c.name for c in report.checks if not c.passed}
    text = drill_report.render_text(report)
    print(text)
    assert report.exit_code == ExitCode.FAILED
    assert failed == {"config", "holder"}, report.checks  # the daemon runs, without the device: the seed's trap
    assert report.faults == []  # a failed check ends the drill before any crash
    assert report.diagnostics is not None and (report.diagnostics / "boot1-console.log").is_file()
    assert "#watchdog-device" in text and "Not run: panic, kill, hang" in text
    assert "fix: uncomment `watchdog-device = /dev/watchdog`" in text
    shutil.rmtree(report.diagnostics)
    page = tmp_path / "drill.html"  # the failed drill's page in a real browser: red, the fix, the console
    page.write_text(pages.render_html(drill_report.report_json(report)))
    seen = browser.open_page(page)
    assert seen.requests == [seen.url] and seen.banner.startswith("FAILED")
    assert seen.timelines == ["boot"] and "Not run: panic, kill, hang" in seen.text
    assert "fix: uncomment `watchdog-device = /dev/watchdog`" in seen.text
    assert "The guest's console when the drill stopped" in seen.text
    assert browser.colours(seen.screenshot).get(browser.hex_rgb("#cf222e"), 0) > 2000  # the red banner
    (tmp_path / "drill.png").write_bytes(seen.screenshot)


def test_the_kvm_probe_recognises_a_booting_kernel_under_tcg(debian_image_dir, tmp_path, capsys, monkeypatch):
    """KVM does not work on these machines, so the probe's success path is exercised under TCG instead. The
    probe says what it waits for and for how long at most (no silent stretch: issue 28)."""
    monkeypatch.setattr(log, "quiet", False)
    build = drill.load_build(debian_image_dir)
    spec = LaunchSpec(model=build.model, action=build.action, image=build.image, kernel=build.kernel,
                      initrd=build.initrd, cmdline=build.kernel_cmdline)
    booted, why = process.probe_boot(spec, tmp_path, seconds=90, accel="tcg")
    assert booted, why
    assert why.startswith("the kernel booted under TCG in")
    assert "waiting for the kernel to boot under TCG (at most 90s)" in capsys.readouterr().err


def test_the_accelerator_is_probed_once_and_the_answer_kept(debian_image_dir, tmp_path, monkeypatch):
    """The real KVM probe on this machine's /dev/kvm, then the same question again: the second answer comes from
    ${WDIMAGE_CACHE}/accel/ without a boot. Here KVM hangs after SeaBIOS's banner (DESIGN.md): the probe ends on
    the quiet console (12-14 s alone) or at its 20 s under load; on a host where KVM boots, the answer is kvm."""
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WDIMAGE_ACCEL", raising=False)
    monkeypatch.setattr(accel, "_answers", {})  # this worker's earlier drills of the same image answered already
    build = drill.load_build(debian_image_dir)
    spec = LaunchSpec(model=build.model, action=build.action, image=build.image, kernel=build.kernel,
                      initrd=build.initrd, cmdline=build.kernel_cmdline)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert accel.choose_accel(spec, tmp_path) == ("tcg", "no usable /dev/kvm")
        assert not (tmp_path / "cache" / "accel").exists()
        return
    started = time.monotonic()
    first = accel.choose_accel(spec, tmp_path)
    probed = time.monotonic() - started
    kept = list((tmp_path / "cache" / "accel").iterdir())
    assert [p.name for p in kept] == [f"{accel.probe_key(spec)}.json"], kept
    if first[0] == "tcg":  # a quiet console ends it early; under load the firmware's banner may come too late
        assert first[1].startswith("KVM probe: no progress under KVM") and probed < accel.PROBE_SECONDS + 10, (
            first, probed)
    accel._answers.clear()  # a new process: only the file remembers
    started = time.monotonic()
    again = accel.choose_accel(spec, tmp_path)
    assert again[0] == first[0] and again[1].startswith(first[1]) and "kept from" in again[1], again
    assert time.monotonic() - started < 1
    print(f"probe {probed:.1f}s: {first[1]}; again from the file in {time.monotonic() - started:.3f}s")


def test_ib700_poweroff_image_powers_off_on_panic(debian_ib700_image_dir, tmp_path):
    """The other model (ISA ib700 on the pc machine) and an action other than reset, as built: QEMU must report
    the WATCHDOG event with action poweroff and then exit, and nothing is expected to come back."""
    code, report = run_cli(debian_ib700_image_dir, tmp_path, "--fault", "panic")
    assert code == ExitCode.OK, report
    assert report["model"] == "ib700" and report["action"] == "poweroff"
    assert {c["name"]: c["passed"] for c in report["checks"]}["driver"] is True
    [fault] = report["faults"]
    assert fault["passed"] and fault["action"] == "poweroff" and fault["rebooted_armed"] is None, fault
    assert within_window(fault), fault
    assert fault["detail"].endswith("QEMU then: exited"), fault
