"""wdimage audit for real: a private libvirtd with seven domains from the cached test images, six of them booted
together (512 MiB, 1 vCPU each, TCG), each case reached for real and the read-only claim checked afterwards:

  au-armed     the Debian i6300esb image as built                                  -> armed
  au-nowd      the same without <watchdog>                                         -> not-armed (host side alone)
  au-stopped   the daemon stopped in the guest by the test                         -> not-armed (service)
  au-seed      the seed's bug: the device line commented out, the daemon restarted -> not-armed (config)
  au-noagent   the guest agent's channel removed                                   -> unknown
  au-off       defined, never started                                              -> unknown, and stays off
  au-itco      the iTCO image on q35 without -global ICH9-LPC.noreboot=false       -> cannot-fire, then a real
               panic shows no WATCHDOG event in twice the window: the claim proven by a crash.

After the audit every domain's state and XML are as before, every running guest has the same boot id and a
larger uptime (no reboot), and libvirt recorded no taint but those the domains had before the audit
(au-itco's custom-argv, its qemu:commandline) and the guest agent's passthrough (custom-ga-command).

A second host in the same audit: another private libvirtd reached through qemu+ssh:// (a throwaway sshd on
127.0.0.1, tests/sshd.py) with one domain as built (armed).

`audit --prove` on au-armed (and au-nowd, which it must not touch) turns armed into proven without a restart, and
its `--html` page is opened in headless Chromium.
"""

import json
import re
import time
import xml.etree.ElementTree as ET

import pytest

from tests.libvirtd import PrivateLibvirtd
from tests.real.test_libvirt import scratch_domain
from tests.sshd import ThrowawaySshd
from wdimage import cli
from wdimage.drill.checks import HOLDERS_SH, parse_holders
from wdimage.models import Model, info
from wdimage.vm import libvirt_guest
from wdimage.vm.guest import EventKind

pytestmark = [pytest.mark.real, pytest.mark.alone]  # eight guests boot together: make test runs it on its own

EXPECTED = {"au-armed": "armed", "au-nowd": "not-armed", "au-stopped": "not-armed", "au-seed": "not-armed",
            "au-noagent": "unknown", "au-off": "unknown", "au-itco": "cannot-fire"}
WITH_AGENT = ("au-armed", "au-nowd", "au-stopped", "au-seed", "au-itco")
ITCO_TIMEOUT = 10  # DEBIAN_ITCO_BUILD_ARGS
BOOT_ID = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f1 /proc/uptime"
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")  # the prefix libvirt's own XML has


def _small(xml: str) -> ET.Element:
    """512 MiB, 1 vCPU, TCG: the iTCO image was built without --libvirt-type qemu, and nested KVM does not boot
    guests here (DESIGN.md)."""
    root = ET.fromstring(xml)
    root.set("type", "qemu")
    for cpu in root.findall("cpu"):
        root.remove(cpu)
    memory = root.find("memory")
    memory.set("unit", "MiB")
    memory.text = "512"
    root.find("vcpu").text = "1"
    return root


def _variant(root: ET.Element, name: str) -> str:
    devices = root.find("devices")
    if name == "au-nowd":
        for w in devices.findall("watchdog"):
            devices.remove(w)
    if name == "au-noagent":
        for c in devices.findall("channel"):
            devices.remove(c)
    if name == "au-itco":
        ns = "{http://libvirt.org/schemas/domain/qemu/1.0}"
        commandline = root.find(f"{ns}commandline")
        args = list(commandline)
        for i, arg in enumerate(args):  # -global ICH9-LPC.noreboot=false: the override this domain lacks
            if arg.get("value") == "ICH9-LPC.noreboot=false":
                commandline.remove(args[i - 1])
                commandline.remove(arg)
    return ET.tostring(root, encoding="unicode")


def _taints(libvirtd, name: str) -> list[str]:
    log = libvirtd.base / "log" / "qemu" / f"{name}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(r"is tainted: (\S+)", text)


@pytest.fixture(scope="module")
def remote(debian_image_dir, tmp_path_factory):
    """A second host: another private libvirtd, reached through libvirt's remote transport (qemu+ssh:// to a
    throwaway sshd on 127.0.0.1 with a generated key, tests/sshd.py), holding one domain as built, started here
    (its boot overlaps the fleet's)."""
    scratch = tmp_path_factory.mktemp("remote")
    with PrivateLibvirtd() as daemon, ThrowawaySshd() as sshd:
        libvirt_guest.define(daemon.uri, ET.tostring(_small(scratch_domain(debian_image_dir, scratch, "au-remote")),
                                                     encoding="unicode"))
        target = libvirt_guest.LibvirtTarget("au-remote", daemon.uri)
        try:
            target.domain.create()
            yield daemon, sshd.libvirt_uri(daemon.socket), target
        finally:
            if target.domain.isActive():
                target.domain.destroy()
            target.close()


@pytest.fixture(scope="module")
def fleet(debian_image_dir, debian_itco_image_dir, libvirtd, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("audit")
    targets = {}
    try:
        for name in EXPECTED:
            image = debian_itco_image_dir if name == "au-itco" else debian_image_dir
            xml = _variant(_small(scratch_domain(image, scratch, name)), name)
            libvirt_guest.define(libvirtd.uri, xml)
            targets[name] = libvirt_guest.LibvirtTarget(name, libvirtd.uri)
        started = time.monotonic()
        for name, target in targets.items():  # all booted together
            if name != "au-off":
                target.domain.create()
        guests = {name: targets[name].attach() for name in WITH_AGENT}
        for guest in guests.values():
            guest.wait_agent(timeout=600)
        boot = time.monotonic() - started
        yield targets, guests, boot
    finally:
        for target in targets.values():
            if target.domain.isActive():
                target.domain.destroy()
            target.close()


def _wait_armed(guest, deadline: float = 240) -> None:
    """Until the daemon itself holds the device. Not any holder: until watchdog.service has started, the boot's
    keepalive holds it, and the service's start kills that keepalive without a magic close (the device stays armed
    for the daemon to take over); a stop or restart issued before the daemon opened the device would leave it armed
    and unfed, and the guest would be reset in the middle of the audit."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if any(h.is_daemon for h in parse_holders(guest.run(HOLDERS_SH + "holders", timeout=30).stdout)):
            return
        time.sleep(2)
    raise AssertionError(f"{guest.describe()}: the watchdog daemon does not hold the device after {deadline}s")


def test_audit_of_the_fleet(remote, fleet, libvirtd, tmp_path, capsys):
    targets, guests, boot = fleet
    remote_daemon, remote_uri, remote_target = remote
    remote_guest = remote_target.attach()
    remote_guest.wait_agent(timeout=600)
    _wait_armed(remote_guest)
    remote_before = (remote_target.domain.XMLDesc(0), remote_guest.run(BOOT_ID, timeout=30).stdout.split())
    for name, guest in guests.items():
        if name != "au-nowd":  # no device to hold
            _wait_armed(guest)
    stopped = guests["au-stopped"].run("systemctl stop watchdog.service; systemctl is-active watchdog.service",
                                       timeout=60)
    assert "inactive" in stopped.stdout or "failed" in stopped.stdout, stopped
    seed = guests["au-seed"].run("sed -i 's/^watchdog-device/#watchdog-device/' /etc/watchdog.conf && "
                                 "systemctl restart watchdog.service && grep -n watchdog-device /etc/watchdog.conf",
                                 timeout=60)
    assert seed.exitcode == 0 and ":#watchdog-device" in seed.stdout, seed
    before = {n: (t.domain.state()[0], t.domain.XMLDesc(0), _taints(libvirtd, n)) for n, t in targets.items()}
    ids = {n: g.run(BOOT_ID, timeout=30).stdout.split() for n, g in guests.items()}
    qemu_pids = {n: (libvirtd.base / "run" / "qemu" / f"{n}.pid").read_text() for n in targets if n != "au-off"}

    paths = {k: tmp_path / f"audit.{k}" for k in ("json", "xml", "prom")}
    started = time.monotonic()
    code = cli.main(["audit", "--connect", libvirtd.uri, "--connect", remote_uri, "--all", "--json", str(paths["json"]),
                     "--junit", str(paths["xml"]), "--prometheus", str(paths["prom"])])
    seconds = time.monotonic() - started
    out = capsys.readouterr().out
    data = json.loads(paths["json"].read_text())
    local = {d["domain"]: d["verdict"] for d in data["domains"] if d["host"] == libvirtd.uri}
    # the session's libvirtd may also hold other tests' domains (tests/real/test_libvirt.py's): --all audits them
    # too; this fleet's verdicts are the ones asserted
    verdicts = {name: verdict for name, verdict in local.items() if name in EXPECTED}
    assert verdicts == EXPECTED, out
    assert [(d["domain"], d["verdict"]) for d in data["domains"] if d["host"] == remote_uri] == [
        ("au-remote", "armed")], out
    assert [h["uri"] for h in data["hosts"]] == [libvirtd.uri, remote_uri] and data["hosts"][1]["error"] is None
    assert code == 1
    by_name = {d["domain"]: d for d in data["domains"]}
    assert "watchdog service active" in by_name["au-stopped"]["reason"]
    assert "watchdog-device = /dev/watchdog active" in by_name["au-seed"]["reason"]
    assert re.search(r"on line \d+ of /etc/watchdog.conf", by_name["au-seed"]["fix"])
    assert "has no watchdog device" in by_name["au-nowd"]["reason"] and not by_name["au-nowd"]["checks"]
    assert "no guest agent channel" in by_name["au-noagent"]["reason"]
    assert by_name["au-off"]["state"] == "shutoff"
    assert "noreboot" in by_name["au-itco"]["reason"] and by_name["au-itco"]["model"] == "itco"
    assert by_name["au-armed"]["timeout"] == 15
    print(f"\n{out}\n{len(guests) + 1} guests booted together to an answering agent in {boot:.0f}s; "
          f"the audit of {len(EXPECTED)} domains took {seconds:.1f}s; per domain: "
          + ", ".join(f"{d['domain']} {d['seconds']:.1f}s" for d in data["domains"]))

    # read-only: state, XML, boot id and uptime, QEMU process as before; no new taint but the agent's
    for name, target in targets.items():
        state, xml, taints = before[name]
        assert target.domain.state()[0] == state and target.domain.XMLDesc(0) == xml, name
        new = _taints(libvirtd, name)[len(taints):]
        assert "custom-monitor" not in new and set(new) <= {"custom-ga-command"}, (name, new)
        print(f"{name}: taints before the audit {taints}, added by the audit {new}")
    for name, guest in guests.items():
        guest.wait_agent(timeout=120)  # a moment's disconnect of the agent channel; a reboot still shows below
        boot_id, uptime = guest.run(BOOT_ID, timeout=30).stdout.split()
        assert boot_id == ids[name][0] and float(uptime) > float(ids[name][1]), name
    for name, pid in qemu_pids.items():
        assert (libvirtd.base / "run" / "qemu" / f"{name}.pid").read_text() == pid, name
    assert not targets["au-off"].domain.isActive()
    boot_id, uptime = remote_guest.run(BOOT_ID, timeout=30).stdout.split()
    assert remote_target.domain.XMLDesc(0) == remote_before[0] and boot_id == remote_before[1][0]
    assert float(uptime) > float(remote_before[1][1])
    assert "custom-monitor" not in _taints(remote_daemon, "au-remote")
    remote_guest.close()

    # the same guests one at a time against together (the bench's figure, here for free on the booted fleet)
    from wdimage.audit.fleet import audit_fleet
    running = [n for n in WITH_AGENT if n != "au-nowd"]
    alone = {}
    for name in running:
        began = time.monotonic()
        (result,) = audit_fleet([libvirtd.uri], [name], jobs=1).domains
        alone[name] = (time.monotonic() - began, result)
    began = time.monotonic()
    together = audit_fleet([libvirtd.uri], running, jobs=len(running))
    together_seconds = time.monotonic() - began
    assert [d.verdict for d in together.domains] == [EXPECTED[n] for n in running]
    total = sum(seconds for seconds, _ in alone.values())
    print(f"{len(running)} running guests: one at a time {total:.2f}s in all, together {together_seconds:.2f}s, "
          f"ratio {together_seconds / total:.2f}; alone: " + "; ".join(
              f"{n} {sec:.2f}s ({', '.join(f'{k} {v:.2f}s' for k, v in r.timings.items())})"
              for n, (sec, r) in alone.items()))

    from prometheus_client.parser import text_string_to_metric_families
    families = {f.name: f for f in text_string_to_metric_families(paths["prom"].read_text())}
    armed = {s.labels["domain"]: s.value for s in families["wdimage_watchdog_armed"].samples}
    assert {n: v for n, v in armed.items() if n in EXPECTED or n == "au-remote"} == {
        **{n: (1.0 if v == "armed" else 0.0) for n, v in EXPECTED.items()}, "au-remote": 1.0}
    assert len(armed) == len(data["domains"])  # one sample per audited domain (other tests' domains included)
    assert paths["xml"].read_text().count("<testcase") == len(data["domains"])


def test_audit_prove_turns_armed_into_proven_and_the_page_shows_it(fleet, libvirtd, tmp_path, capsys):
    """`audit --prove` on au-armed and au-nowd: the proof of `drill --safe` runs on the armed one only (the watchdog
    fired with the action none for a moment; same boot, the domain's XML as before, libvirt's custom-monitor taint
    as documented), au-nowd is not touched, and Chromium shows the page: a row per domain, `proven` in it, the
    red banner (au-nowd is not armed), nothing fetched."""
    targets, guests, _ = fleet
    _wait_armed(guests["au-armed"])
    before = {n: (targets[n].domain.XMLDesc(0), _taints(libvirtd, n)) for n in ("au-armed", "au-nowd")}
    boot_ids = {n: guests[n].run(BOOT_ID, timeout=30).stdout.split()[0] for n in ("au-armed", "au-nowd")}
    paths = {k: tmp_path / f"prove.{k}" for k in ("json", "html")}
    code = cli.main(["audit", "--connect", libvirtd.uri, "au-armed", "au-nowd", "--prove",
                     "--json", str(paths["json"]), "--html", str(paths["html"])])
    out = capsys.readouterr().out
    data = json.loads(paths["json"].read_text())
    by_name = {d["domain"]: d for d in data["domains"]}
    assert {n: d["verdict"] for n, d in by_name.items()} == {"au-armed": "proven", "au-nowd": "not-armed"}, out
    assert code == 1  # au-nowd
    proven = by_name["au-armed"]
    assert re.search(r"fired \d+\.\d+s after its daemon was frozen", proven["reason"]), proven
    assert proven["history"][0]["verdict"] == "armed"
    for name in ("au-armed", "au-nowd"):
        xml, taints = before[name]
        assert targets[name].domain.XMLDesc(0) == xml, name  # the action restored, nothing redefined
        assert guests[name].run(BOOT_ID, timeout=30).stdout.split()[0] == boot_ids[name], name  # no restart
    new = {n: _taints(libvirtd, n)[len(before[n][1]):] for n in before}
    assert "custom-monitor" in new["au-armed"] and "custom-monitor" not in new["au-nowd"], new
    print(f"\n{out}\ntaints added: {new}")

    from tests import browser
    seen = browser.open_page(paths["html"])
    assert seen.requests == [seen.url], seen.requests
    assert seen.banner.startswith("FAILED") and "proven" in seen.text and "au-nowd" in seen.text
    assert "fix:" in seen.text  # au-nowd's
    colours = browser.colours(seen.screenshot)
    assert colours.get(browser.hex_rgb("#cf222e"), 0) > 2000  # the red banner
    (tmp_path / "audit.png").write_bytes(seen.screenshot)


def test_cannot_fire_is_proven_by_a_panic(fleet):
    """The audit said au-itco cannot fire: crash it, and no WATCHDOG event may come in twice the window."""
    targets, guests, _ = fleet
    guest = guests["au-itco"]
    window = info(Model.ITCO).stages * ITCO_TIMEOUT
    guest.clear_events()
    guest.spawn("sleep 1; echo c > /proc/sysrq-trigger")
    started = time.monotonic()
    time.sleep(3)
    with pytest.raises((TimeoutError, ConnectionError)):  # the panic took the guest down
        guest.run("true", timeout=10)
    event = guest.wait_event({EventKind.WATCHDOG, EventKind.RESET}, started + 2 * window + 5)
    assert event is None, f"{event} came {time.monotonic() - started:.1f}s after the panic"
    print(f"\nau-itco panicked: no WATCHDOG event in {time.monotonic() - started:.0f}s (window {window}s); "
          f"events: {[str(e) for e in guest.events()]}")
