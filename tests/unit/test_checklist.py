"""The seed's checklist answered from the readiness checks, each failure with its concrete fix."""

import re
import subprocess

from tests.unit.test_drill import sections
from wdimage import checklist, drill
from wdimage.models import Model


def steps(**changes: str) -> dict[str, checklist.Step]:
    checks = drill.evaluate_checks(sections(**changes), Model.I6300ESB, 15)
    return {s.name: s for s in checklist.guest_steps(checks, Model.I6300ESB)}


def test_a_ready_guest_answers_yes_in_the_seeds_order():
    answered = checklist.guest_steps(drill.evaluate_checks(sections(), Model.I6300ESB, 15), Model.I6300ESB)
    assert [s.name for s in answered] == list(checklist.ORDER)
    assert all(s.ok and not s.fix for s in answered)
    assert answered[0].render(2).startswith("2. driver in dmesg (i6300esb)? yes: ")


def test_the_seeds_bug_points_at_the_line_and_its_fix_works(tmp_path):
    # Debian's watchdog.conf as shipped: the device line is commented out (line 26 in bookworm's).
    conf = tmp_path / "watchdog.conf"
    lines = [f"#option{i} = x" for i in range(1, 26)] + ["#watchdog-device\t= /dev/watchdog", "interval = 5"]
    conf.write_text("\n".join(lines) + "\n")
    found = subprocess.run(["grep", "-n", "-e", "watchdog-device", str(conf)], capture_output=True, text=True)
    answered = steps(config=found.stdout.strip(), holders="", service="systemd: failed")
    config = answered["config"]
    assert not config.ok and "line 26" in config.fix and "the seed's bug" in config.fix
    sed = re.search(r"sed -i '([^']+)' /etc/watchdog.conf", config.fix).group(1)
    subprocess.run(["sed", "-i", sed, str(conf)], check=True)
    fixed = conf.read_text().splitlines()
    assert drill.ACTIVE_DEVICE_LINE.match(fixed[25]) and fixed[:25] == lines[:25]  # only that line changed
    assert not answered["holder"].ok and "nobody holds the device" in answered["holder"].fix
    assert not answered["service"].ok and "systemctl enable --now watchdog" in answered["service"].fix


def test_missing_driver_and_module():
    answered = steps(driver="", module="", device="ls: cannot access '/dev/watchdog': No such file or directory")
    assert "modprobe i6300esb" in answered["driver"].fix and "CONFIG_I6300ESB_WDT" in answered["driver"].fix
    assert "/etc/modules-load.d/" in answered["module"].fix
    assert not answered["device"].ok


def test_misc_minor_taken_by_the_other_driver():
    answered = steps(driver="[ 3.1] i6300esb: cannot register miscdev on minor=130 (err=-16)")
    assert "blacklist ib700wdt" in answered["driver"].fix


def test_another_holder():
    answered = steps(holders="1 systemd /dev/watchdog0 S 10")
    assert "RuntimeWatchdogSec" in answered["holder"].fix and "systemd (pid 1" in answered["holder"].seen


def test_domain_without_watchdog_gets_the_xml_to_add():
    step = checklist.device_step("web1", None)
    assert not step.ok and '<watchdog model="i6300esb" action="reset"/>' in step.fix and "virsh edit web1" in step.fix
    assert checklist.device_step("web1", {"model": "ib700", "action": "pause"}).ok
