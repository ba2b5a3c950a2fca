"""The generated libvirt domain in a real libvirtd (private, started by the tests): it boots, its guest agent
answers through libvirt, and the drill runs through libvirt. Each domain runs on a scratch overlay of the
published image, which is never modified."""

import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.real.conftest import _intact
from wdimage import libvirt_guest, qemu

pytestmark = pytest.mark.real


def scratch_domain(image_dir: Path, tmp_path: Path, name: str) -> str:
    """The image's own domain XML, as a user would adapt it: another name, the disk on a scratch overlay."""
    root = ET.parse(next(image_dir.glob("*.xml"))).getroot()
    source = root.find("devices/disk/source")
    overlay = tmp_path / f"{name}.qcow2"
    qemu.create_overlay(Path(source.get("file")), overlay)
    source.set("file", str(overlay))
    root.find("name").text = name
    return ET.tostring(root, encoding="unicode")


def _listening_sockets(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if f"pid={pid}," in line]


def test_generated_domain_boots_and_its_agent_answers_through_libvirt(debian_image_dir, libvirtd, tmp_path):
    published = next(debian_image_dir.glob("*.xml"))
    assert ET.parse(published).getroot().get("type") == "qemu"  # built with --libvirt-type qemu: TCG here
    before = published.read_bytes()
    name = libvirt_guest.define(libvirtd.uri, scratch_domain(debian_image_dir, tmp_path, "wdimage-boot"))
    target = libvirt_guest.LibvirtTarget(name, libvirtd.uri)
    started = time.monotonic()
    guest = target.boot()
    try:
        assert guest.status() == "running"
        guest.wait_agent(timeout=240)
        agent_seconds = time.monotonic() - started
        info = guest.agent("guest-info")
        assert "guest-exec" in {c["name"] for c in info["supported_commands"] if c["enabled"]}
        result = guest.run('cat /proc/sys/kernel/osrelease; ls "$1"', "/dev/watchdog")
        assert result.exitcode == 0 and "/dev/watchdog" in result.stdout, result
        assert target.watchdog() == {"model": "i6300esb", "action": "reset"}
        qemu_pid = int((libvirtd.base / "run" / "qemu" / f"{name}.pid").read_text())
        assert _listening_sockets(qemu_pid) == []  # user-mode networking: nothing listens on an address
        print(f"libvirtd up in {libvirtd.seconds_to_start:.1f}s; agent answered {agent_seconds:.1f}s after start")
    finally:
        guest.close()
        target.domain.destroy()
        target.close()
    assert published.read_bytes() == before and _intact(debian_image_dir)  # the published image is untouched
