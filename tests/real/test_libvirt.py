"""libvirt for real, in a private libvirtd that the tests start (tests/libvirtd.py): the Debian image's own
generated domain (TCG) boots, its guest agent answers through libvirt, and `wdimage drill --libvirt` runs on it;
a domain written by hand without a <watchdog> and a guest with the seed's bug get their diagnosis.

Each domain runs on a scratch overlay of the published image, which is never modified. One guest serves the
tests of this module in order (first the panic drill, then the seed's bug is put into it), to keep to two boots
of the guest (the first one and the watchdog's reset) under TCG.
"""

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.build_cache import _intact
from wdimage import cli
from wdimage.errors import ExitCode
from wdimage.vm import libvirt_guest, process

pytestmark = pytest.mark.real

DOMAIN = "wdimage-debian"


def scratch_domain(image_dir: Path, scratch: Path, name: str) -> str:
    """The image's own domain XML, as a user would adapt it: another name, the disk on a scratch overlay."""
    root = ET.parse(image_dir / f"{image_dir.name}.xml").getroot()
    source = root.find("devices/disk/source")
    overlay = scratch / f"{name}.qcow2"
    process.create_overlay(Path(source.get("file")), overlay)
    source.set("file", str(overlay))
    root.find("name").text = name
    return ET.tostring(root, encoding="unicode")


EPHEMERAL = range(*map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()))
EPHEMERAL = range(EPHEMERAL.start, EPHEMERAL.stop + 1)


def _listening_sockets(pid: int) -> list[str]:
    """Every TCP listener of `pid`, and every UDP socket of it bound to a port outside the kernel's ephemeral
    range. Left out, and measured: slirp opens one unconnected UDP socket on an ephemeral port per outbound
    flow of the guest (its DHCP-configured NIC sends DNS/NTP datagrams; libvirt 9.0 cannot set restrict=on),
    to receive that flow's replies. Those are NAT state for the guest's own traffic, not a service."""
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        fields = line.split()
        port = int(fields[4].rsplit(":", 1)[1])
        if fields[0] == "udp" and port in EPHEMERAL:
            continue
        found.append(line)
    return found


@pytest.fixture(scope="module")
def debian_domain(debian_image_dir, libvirtd, tmp_path_factory):
    """The Debian image's generated domain, defined in the private libvirtd and started; its boot timings."""
    published = debian_image_dir / f"{debian_image_dir.name}.xml"
    assert ET.parse(published).getroot().get("type") == "qemu"  # built with --libvirt-type qemu: TCG here
    assert json.loads((debian_image_dir / "manifest.json").read_text())["libvirt"] == {"type": "qemu"}
    before = published.read_bytes()
    name = libvirt_guest.define(libvirtd.uri, scratch_domain(debian_image_dir, tmp_path_factory.mktemp("lv"), DOMAIN))
    target = libvirt_guest.LibvirtTarget(name, libvirtd.uri)
    started = time.monotonic()
    guest = target.boot()
    try:
        guest.wait_agent(timeout=240)
        timings = {"libvirtd_start": libvirtd.seconds_to_start, "agent_after_start": time.monotonic() - started}
        yield target, guest, timings
    finally:
        guest.close()
        if target.domain.isActive():
            target.domain.destroy()
        target.close()
    assert published.read_bytes() == before and _intact(debian_image_dir)  # the published image is untouched


def test_generated_domain_boots_and_its_agent_answers_through_libvirt(debian_domain, libvirtd):
    target, guest, timings = debian_domain
    assert guest.status() == "running"
    info = guest.agent("guest-info")
    assert "guest-exec" in {c["name"] for c in info["supported_commands"] if c["enabled"]}
    result = guest.run('cat /proc/sys/kernel/osrelease; ls "$1"', "/dev/watchdog")
    assert result.exitcode == 0 and "/dev/watchdog" in result.stdout, result
    assert target.watchdog() == {"model": "i6300esb", "action": "reset"}
    qemu_pid = int((libvirtd.base / "run" / "qemu" / f"{DOMAIN}.pid").read_text())
    assert _listening_sockets(qemu_pid) == []  # user-mode networking: nothing listens on an address
    assert _listening_sockets(libvirtd.process.pid) == []  # the daemon: its unix sockets only
    guest.set_link(False)  # the link-cut primitive, through updateDeviceFlags on the live domain
    assert ET.fromstring(target.interface_xml()).find("link").get("state") == "down"
    guest.set_link(True)
    assert ET.fromstring(target.interface_xml()).find("link").get("state") == "up"
    print(f"\nlibvirtd up in {timings['libvirtd_start']:.1f}s; "
          f"guest agent answered {timings['agent_after_start']:.1f}s after virDomainCreate")


def test_drill_through_libvirt_panic_resets_and_comes_back_armed(debian_domain, libvirtd, tmp_path, capsys):
    report = tmp_path / "drill.json"
    code = cli.main(["drill", "--libvirt", DOMAIN, "--connect", libvirtd.uri, "--fault", "panic", "--yes-crash-it",
                     "--json", str(report), "--junit", str(tmp_path / "junit.xml")])
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert code == 0, out
    assert (data["model"], data["action"], data["timeout"], data["interval"]) == ("i6300esb", "reset", 15, 5)
    assert data["checks"][0]["name"] == "domain" and all(c["passed"] for c in data["checks"])
    (panic,) = data["faults"]
    assert panic["fault"] == "panic" and panic["passed"] and panic["action"] == "reset"
    low, high = panic["expected_window"]
    assert low - 1 <= panic["seconds_to_reset"] <= high + 10  # the runner's margin: i6300esb's second stage, TCG
    assert panic["rebooted_armed"] is True and panic["seconds_back_armed"] > 0
    assert data["boot_to_armed_seconds"] is None and "already running" in " ".join(data["warnings"])
    print(f"\n{out}\npanic: WATCHDOG reset {panic['seconds_to_reset']}s after the fault (window {low}-{high}s), "
          f"back and armed {panic['seconds_back_armed']}s after the reset")


def test_the_seeds_bug_gets_the_checklist_pointing_at_the_line(debian_domain, libvirtd, tmp_path, capsys):
    target, guest, _ = debian_domain
    guest.wait_agent(timeout=240)  # after the panic drill's reset, or the first boot if that one did not run
    broken = guest.run("sed -i 's/^watchdog-device/#watchdog-device/' /etc/watchdog.conf && "
                       "systemctl restart watchdog.service && grep -n watchdog-device /etc/watchdog.conf", timeout=60)
    assert broken.exitcode == 0 and ":#watchdog-device" in broken.stdout, broken
    line = broken.stdout.split(":", 1)[0]
    report = tmp_path / "drill.json"
    code = cli.main(["drill", "--libvirt", DOMAIN, "--connect", libvirtd.uri, "--fault", "panic", "--yes-crash-it",
                     "--json", str(report)])
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert code == ExitCode.FAILED and data["faults"] == [], out  # not armed: nothing was crashed
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["domain"]["passed"] and checks["module"]["passed"] and checks["device"]["passed"]
    assert not checks["config"]["passed"] and f"on line {line} of /etc/watchdog.conf" in checks["config"]["fix"]
    assert not checks["holder"]["passed"]
    assert "fix: uncomment `watchdog-device = /dev/watchdog`" in out and "Not run: panic" in out
    print(f"\n{out}")


def test_a_hand_written_domain_without_watchdog_gets_the_diagnosis(libvirtd, capsys):
    xml = ("<domain type='qemu'><name>hand-made</name><memory unit='MiB'>256</memory>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")
    libvirt_guest.define(libvirtd.uri, xml)
    code = cli.main(["drill", "--libvirt", "hand-made", "--connect", libvirtd.uri, "--fault", "panic",
                     "--yes-crash-it"])
    err = capsys.readouterr().err
    assert code == ExitCode.FAILED
    assert "hand-made has no watchdog device" in err and '<watchdog model="i6300esb" action="reset"/>' in err
    assert subprocess.run(["virsh", "-c", libvirtd.uri, "domstate", "hand-made"], capture_output=True,
                          text=True).stdout.strip() == "shut off"  # diagnosed without starting it
