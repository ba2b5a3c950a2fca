"""`wdimage cloud-init` for real: a stand-in for a stock cloud image (tests/cloud_standin.py: Debian with
cloud-init, WITHOUT wdimage's watchdog element; the watchdog and qemu-guest-agent packages pre-installed as
Debian ships them, because the guest has no route out) booted with a NoCloud seed made by cloud-localds from
wdimage's user-data, then drilled: the readiness checks pass and a SysRq panic is reset within the window.

One boot: the first boot runs cloud-init, the drill's checks wait for it (systemd settles once cloud-final is
done), the panic resets the same QEMU (the overlay keeps what cloud-init did). The stand-in image is cached
like the other real builds; cold, it costs one DIB build (about 2 min).
"""

import subprocess

import pytest

from tests.cloud_standin import FILES, NAME, cached_standin
from tests.real.conftest import _require_root_or_sudo
from wdimage import cli
from wdimage.drill import build_output
from wdimage.drill import runner as drill
from wdimage.drill.scenarios import MARGIN_SECONDS
from wdimage.errors import ExitCode
from wdimage.image import build
from wdimage.image.manifest import Files, Manifest
from wdimage.models import Action, Model

pytestmark = pytest.mark.real

TIMEOUT = 15
# What cloud-init says once it is done: the drill logs this command's output before its checks.
STATUS = "cloud-init status --long"


def _drill_target(tmp_path, standin):
    """A drill target for the stand-in: its files, the NoCloud seed, and a manifest saying how to boot it."""
    target = tmp_path / "standin"
    target.mkdir()
    for file in FILES:
        (target / file).symlink_to(standin / file)
    assert cli.main(["cloud-init", "--model", "i6300esb", "--timeout", str(TIMEOUT),
                     "--output", str(target / "user-data")]) == 0
    (target / "meta-data").write_text(f"instance-id: wdimage-{NAME}\nlocal-hostname: {NAME}\n")
    subprocess.run(["cloud-localds", str(target / "seed.img"), str(target / "user-data"), str(target / "meta-data")],
                   check=True)
    settings = build.make_settings("debian", output=tmp_path / "unused")
    Manifest(name=NAME, distro="debian", release=settings.release, model=Model.I6300ESB, action=Action.RESET,
             timeout=TIMEOUT, boot="direct", machine="pc", kernel_cmdline=build.kernel_cmdline(settings), agent=True,
             files=Files(image=FILES[0], kernel=FILES[1], initrd=FILES[2], nocloud_seed="seed.img")).write(target)
    return target


def test_cloud_init_user_data_makes_a_stock_image_watchdog_ready(tmp_path, capfd):
    _require_root_or_sudo()
    standin = cached_standin()
    target = _drill_target(tmp_path, standin)
    report = drill.run_drill(build_output.load_build(target), ["panic"], prepare=[STATUS])
    err = capfd.readouterr().err
    print(err)
    checks = {c.name: c for c in report.checks}
    assert report.exit_code == ExitCode.OK, (report.error, report.checks, report.faults)
    # cloud-init ran the user-data to the end, the final check (the daemon holds /dev/watchdog) included
    assert f"guest$ {STATUS} -> exit 0: status: done" in err, err
    assert all(c.passed for c in checks.values()), checks
    assert checks["holder"].passed and checks["config"].passed and checks["identity"].seen.endswith("i6300ESB timer")
    panic = report.faults[0]
    # the window plus the drill's margin (the fault command to the kernel's death, QEMU's event to the host),
    # as the other drills' tests allow: 15.26 s against a 15 s window failed once under two workers' load
    assert panic.passed and panic.seconds_to_reset is not None
    assert panic.seconds_to_reset <= panic.window.high + MARGIN_SECONDS, panic
