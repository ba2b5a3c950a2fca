"""The dracut path, booted for real: a Debian image whose initramfs dracut made (`--initramfs dracut`, the package
replacing initramfs-tools), armed by wdimage's dracut module (elements/wdimage-watchdog, modules.d/04wdimage-watchdog),
the module CentOS's and Gentoo's builds use. One boot serves every assertion: the drill's readiness probe (who
armed the device first, when, and the hand-overs), then a panic that the watchdog must reset within its window.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.real.test_drill import by_fault, run_cli, within_window
from wdimage.errors import ExitCode
from wdimage.image.manifest import read_manifest

pytestmark = pytest.mark.real


def test_dracut_initramfs_arms_the_watchdog_and_a_panic_is_reset(debian_dracut_image_dir, tmp_path):
    manifest = read_manifest(debian_dracut_image_dir)
    installed = {p.name for p in manifest.installed_packages}
    # The initrd beside the image is dracut's: dracut is installed (apt removed initramfs-tools, whose config files
    # dpkg keeps: the package record still names it, as 'rc'), and the extracted initrd holds the module's hook and
    # the keepalive (the build checked the same inside the image with lsinitrd).
    assert {"dracut", "dracut-core"} <= installed
    initrd = debian_dracut_image_dir / manifest.files.initrd
    assert _initrd_holds(initrd, "usr/lib/dracut/hooks/cmdline/00-wdimage-watchdog.sh")
    assert _initrd_holds(initrd, "usr/sbin/wd_keepalive")

    code, report = run_cli(debian_dracut_image_dir, tmp_path, "--fault", "panic")
    assert code == ExitCode.OK, report
    assert report["passed"] is True and all(c["passed"] for c in report["checks"])
    boot = report["boot_timeline"]
    # Armed in the initramfs (dracut's cmdline hook), after the kernel ran its /init and before systemd started in
    # the real root; then handed over twice with SIGKILL and never let go: initramfs -> wdimage-keepalive -> daemon.
    assert boot["armed_by"] == "initramfs", boot
    assert boot["init"] < boot["armed"] < boot["real_root"] < boot["daemon"], boot
    assert boot["handovers"] == 2, boot
    print(f"boot to armed (dracut): {report['boot_to_armed_seconds']} s; timeline {json.dumps(boot)}")
    panic = by_fault(report)["panic"]
    assert panic["action"] == "reset" and panic["path"] == "watchdog" and panic["rebooted_armed"], panic
    assert within_window(panic), panic


def _initrd_holds(initrd: Path, member: str) -> bool:
    """Whether the initrd's cpio archives (an uncompressed early one first, then the compressed main one, as
    dracut writes them) list `member`: through the archive tools on the host, no dracut needed."""
    listing = _cpio_listing(initrd.read_bytes())
    return member in listing


def _cpio_listing(data: bytes) -> set[str]:
    names: set[str] = set()
    offset = 0
    while offset < len(data):
        if data[offset:offset + 6] in (b"070701", b"070702"):
            end = _newc_members(data, offset, names)
            offset = end
            while offset < len(data) and data[offset] == 0:  # padding between the archives
                offset += 1
            continue
        tool = _decompressor(data[offset:offset + 6])
        assert tool, f"unknown data at {offset} in the initrd: {data[offset:offset + 6]!r}"
        out = subprocess.run(tool, input=data[offset:], capture_output=True, check=True).stdout
        _newc_members(out, 0, names)
        break
    return names


def _decompressor(magic: bytes) -> list[str] | None:
    for prefix, tool in ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"), (b"\xfd7zXZ", "xz")):
        if magic.startswith(prefix) and shutil.which(tool):
            return [tool, "-dc"]
    return None


def _newc_members(data: bytes, offset: int, names: set[str]) -> int:
    """Read one newc cpio archive from `offset`; add its member names; return the offset after its trailer."""
    while True:
        header = data[offset:offset + 110]
        namesize, filesize = int(header[94:102], 16), int(header[54:62], 16)
        name = data[offset + 110:offset + 110 + namesize - 1].decode(errors="replace")
        offset = (offset + 110 + namesize + 3) & ~3
        offset = (offset + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return offset
        names.add(name.removeprefix("./"))
