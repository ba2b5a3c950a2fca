"""The seed's bug, pointed at: the failed config check names the line of /etc/watchdog.conf and a command that
uncomments exactly that line (run here with the real sed on a file laid out like Debian's)."""

import re
import subprocess

from tests.unit.test_drill import checks_by_name
from wdimage.drill import checks


def test_the_commented_device_line_is_named_and_its_fix_works(tmp_path):
    conf = tmp_path / "watchdog.conf"
    lines = [f"#option{i} = x" for i in range(1, 26)] + ["#watchdog-device\t= /dev/watchdog", "interval = 5",
                                                         "# watchdog-device = /dev/watchdog is the device"]
    conf.write_text("\n".join(lines) + "\n")
    grep = subprocess.run(["grep", "-n", "-e", "watchdog-device", str(conf)], capture_output=True, text=True).stdout
    config = checks_by_name(config=grep.strip(), holders="")["config"]
    assert not config.passed and "on line 26 of /etc/watchdog.conf" in config.fix
    sed = re.search(r"sed -i '([^']+)' /etc/watchdog.conf", config.fix).group(1)
    subprocess.run(["sed", "-i", sed, str(conf)], check=True)
    fixed = conf.read_text().splitlines()
    assert checks.ACTIVE_DEVICE_LINE.match(fixed[25])
    assert fixed[:25] == lines[:25] and fixed[26:] == lines[26:]  # only that line changed


def test_a_missing_device_line_keeps_the_general_fix():
    config = checks_by_name(config="")["config"]
    assert not config.passed and config.fix == checks.FIXES["config"]
