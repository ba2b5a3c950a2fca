"""Rendered files compared to expectations: watchdog.conf, the launch stub (run by a real shell), libvirt XML."""

import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from wdimage.image import render
from wdimage.models import Action, Model


def _guest(**kw) -> render.GuestFiles:
    base = dict(name="debian-i6300esb", model=Model.I6300ESB, action=Action.RESET, image="debian-i6300esb.qcow2",
                kernel="debian-i6300esb.vmlinuz", initrd="debian-i6300esb.initrd",
                cmdline="root=LABEL=cloudimg-rootfs ro console=ttyS0", agent=True)
    return render.GuestFiles(**{**base, **kw})


def test_watchdog_conf_has_the_device_line_active():
    text = render.render_watchdog_conf(render.WatchdogConf(Model.I6300ESB, 15))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["watchdog-device = /dev/watchdog", "watchdog-timeout = 15", "interval = 5",
                     "realtime = yes", "priority = 1", "admin ="]


def test_watchdog_conf_health_tests():
    text = render.render_watchdog_conf(render.WatchdogConf(Model.IB700, 3, ping=("192.0.2.1", "gw.example"),
                                                           interfaces=("eth0",), max_load_1=24))
    assert "interval = 1\n" in text  # well within a 3 s timeout
    assert "ping = 192.0.2.1\nping = gw.example\ninterface = eth0\nmax-load-1 = 24\n" in text


def _run_stub(tmp_path: Path, guest: render.GuestFiles, accel: str = "tcg", *extra: str):
    """Run the stub with a fake qemu-system-x86_64 that prints its argv, one per line."""
    out = tmp_path / "out dir"  # a space: quoting must hold
    out.mkdir(exist_ok=True)
    stub = out / f"run-{guest.name}.sh"
    stub.write_text(render.render_launch_stub(guest))
    stub.chmod(0o755)
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "qemu-system-x86_64").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake / "qemu-system-x86_64").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "WDIMAGE_ACCEL": accel,
           "WDIMAGE_RUNDIR": str(tmp_path / "run")}
    proc = subprocess.run([str(stub), *extra], env=env, capture_output=True, text=True)
    return proc, out


def test_launch_stub_runs_the_shared_qemu_command(tmp_path):
    proc, out = _run_stub(tmp_path, _guest(), "tcg", "-no-reboot")
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[argv.index("-machine") + 1] == "pc,accel=tcg"
    assert argv[argv.index("-action") + 1] == "watchdog=reset"
    assert "i6300esb" in argv and "-watchdog" not in argv
    assert argv[argv.index("-kernel") + 1] == f"{out}/debian-i6300esb.vmlinuz"
    assert argv[argv.index("-append") + 1] == "root=LABEL=cloudimg-rootfs ro console=ttyS0"
    # A safe cache mode (guest flushes honoured), and by default writes never reach the published image.
    assert f"file={out}/debian-i6300esb.qcow2,format=qcow2,if=virtio,cache=writeback" in argv
    assert argv[argv.index("-qmp") + 1] == f"unix:{tmp_path}/run/qmp.sock,server=on,wait=off"
    assert argv[-2:] == ["-snapshot", "-no-reboot"]
    assert not (tmp_path / "run").exists()  # the stub created it, the stub removed it


def test_launch_stub_write_image_boots_the_image_itself(tmp_path):
    proc, out = _run_stub(tmp_path, _guest(), "tcg", "--write-image", "-no-reboot")
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert "-snapshot" not in argv and "--write-image" not in argv and argv[-1] == "-no-reboot"


def test_launch_stub_never_chmods_a_run_directory_it_did_not_create(tmp_path):
    shared = tmp_path / "run"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    (shared / "keep").write_text("mine")
    proc, _ = _run_stub(tmp_path, _guest())
    assert proc.returncode == 2 and "WDIMAGE_RUNDIR" in proc.stderr and "0700" in proc.stderr
    assert shared.stat().st_mode & 0o777 == 0o755 and (shared / "keep").read_text() == "mine"
    shared.chmod(0o700)  # a private directory of the user's is used, and left in place afterwards
    proc, _ = _run_stub(tmp_path, _guest())
    assert proc.returncode == 0, proc.stderr
    assert shared.stat().st_mode & 0o777 == 0o700 and (shared / "keep").read_text() == "mine"


def test_launch_stub_signal_stops_qemu_and_removes_its_run_directory(tmp_path):
    """SIGTERM to the stub: QEMU (here a fake that sleeps) is stopped, the directory it created is gone."""
    stub = tmp_path / "run.sh"
    stub.write_text(render.render_launch_stub(_guest()))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "qemu-system-x86_64").write_text(f'#!/bin/sh\necho $$ > {tmp_path}/qemu.pid\nexec sleep 60\n')
    (fake / "qemu-system-x86_64").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    env.pop("WDIMAGE_RUNDIR", None)
    proc = subprocess.Popen(["sh", str(stub)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "qemu.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    qemu_pid = int((tmp_path / "qemu.pid").read_text())
    assert list(tmp_path.glob("wdimage-debian-i6300esb.*"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert not list(tmp_path.glob("wdimage-debian-i6300esb.*"))
    with pytest.raises(ProcessLookupError):
        os.kill(qemu_pid, 0)


def test_launch_stub_kvm_is_opt_in_and_bad_accel_is_refused(tmp_path):
    proc, _ = _run_stub(tmp_path, _guest(), "kvm")
    assert "pc,accel=kvm" in proc.stdout.splitlines()
    proc, _ = _run_stub(tmp_path, _guest(), "xen")
    assert proc.returncode == 2 and "WDIMAGE_ACCEL" in proc.stderr


def test_launch_stub_private_socket_dir_by_default(tmp_path):
    stub = tmp_path / "run.sh"
    stub.write_text(render.render_launch_stub(_guest()))
    fake = tmp_path / "bin"
    fake.mkdir()
    # The fake QEMU records the socket directory's mode while it runs; the stub removes the directory after.
    (fake / "qemu-system-x86_64").write_text(f'#!/bin/sh\nstat -c %a "$TMPDIR"/wdimage-debian-i6300esb.* '
                                             f'> {tmp_path}/mode\n')
    (fake / "qemu-system-x86_64").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    env.pop("WDIMAGE_RUNDIR", None)
    proc = subprocess.run(["sh", str(stub)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mode").read_text().strip() == "700"
    assert not list(tmp_path.glob("wdimage-debian-i6300esb.*"))


def test_launch_stub_itco_and_ib700_machines(tmp_path):
    proc, _ = _run_stub(tmp_path, _guest(model=Model.ITCO))
    argv = proc.stdout.splitlines()
    assert "q35,accel=tcg" in argv and "ICH9-LPC.noreboot=false" in argv
    proc, _ = _run_stub(tmp_path, _guest(model=Model.IB700, action=Action.POWEROFF))
    argv = proc.stdout.splitlines()
    assert "pc,accel=tcg" in argv and "ib700" in argv and "watchdog=poweroff" in argv


def test_launch_stub_disk_boot_has_no_kernel_and_no_agent(tmp_path):
    proc, _ = _run_stub(tmp_path, _guest(kernel=None, initrd=None, cmdline=None, agent=False))
    argv = proc.stdout.splitlines()
    assert "-kernel" not in argv and "-append" not in argv and "virtio-serial" not in argv


def test_launch_stub_passes_shellcheck(tmp_path):
    stub = tmp_path / "run.sh"
    stub.write_text(render.render_launch_stub(_guest()))
    proc = subprocess.run(["shellcheck", "-s", "sh", str(stub)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("arg", ["it's", 'a "b" $HOME `x` \\', "@WDIMAGE_HERE@/x $y"])
def test_shell_word_round_trips(arg):
    word = render.shell_word(arg)
    expanded = subprocess.run(["sh", "-c", f'here=/h; rundir=/r; printf %s {word}'],
                              capture_output=True, text=True).stdout
    assert expanded == arg.replace("@WDIMAGE_HERE@", "/h")


def _validate(tmp_path: Path, text: str) -> None:
    """libvirt's own schema (virt-xml-validate, libvirt-clients + libxml2-utils) accepts it."""
    path = tmp_path / "domain.xml"
    path.write_text(text)
    proc = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_libvirt_xml(tmp_path):
    text = render.render_libvirt_xml(_guest(), Path("/srv/img"))
    _validate(tmp_path, text)
    root = ET.fromstring(text)
    assert root.get("type") == "kvm"  # the default on a libvirt host
    assert root.find("cpu").get("mode") == "host-passthrough"  # as the launch stub's -cpu host under KVM
    assert root.find("devices/emulator") is None  # libvirt picks it (RHEL: /usr/libexec/qemu-kvm)
    assert root.find("os/type").get("machine") == "pc"
    assert root.find("os/kernel").text == "/srv/img/debian-i6300esb.vmlinuz"
    assert root.find("os/initrd").text == "/srv/img/debian-i6300esb.initrd"
    assert root.find("os/cmdline").text == "root=LABEL=cloudimg-rootfs ro console=ttyS0"
    assert root.find("devices/disk/source").get("file") == "/srv/img/debian-i6300esb.qcow2"
    watchdog = root.find("devices/watchdog")
    assert (watchdog.get("model"), watchdog.get("action")) == ("i6300esb", "reset")
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    (nic,) = root.findall("devices/interface")
    assert nic.get("type") == "user" and nic.find("model").get("type") == "virtio"


def test_libvirt_xml_tcg_on_request(tmp_path):
    text = render.render_libvirt_xml(_guest(model=Model.IB700, action=Action.POWEROFF), Path("/srv"), "qemu")
    _validate(tmp_path, text)
    root = ET.fromstring(text)
    assert root.get("type") == "qemu" and root.find("cpu") is None
    watchdog = root.find("devices/watchdog")
    assert (watchdog.get("model"), watchdog.get("action")) == ("ib700", "poweroff")


def test_libvirt_xml_and_launch_stub_describe_the_same_vm(tmp_path):
    """Both come from one LaunchSpec: memory, CPUs, machine, kernel, disk and watchdog agree."""
    guest = _guest(memory_mb=768, cpus=1)
    proc, out = _run_stub(tmp_path, guest, "tcg")
    argv = proc.stdout.splitlines()
    root = ET.fromstring(render.render_libvirt_xml(guest, out, "qemu"))
    assert argv[argv.index("-m") + 1] == root.find("memory").text == "768"
    assert argv[argv.index("-smp") + 1] == root.find("vcpu").text == "1"
    assert argv[argv.index("-machine") + 1].split(",")[0] == root.find("os/type").get("machine")
    assert argv[argv.index("-kernel") + 1] == root.find("os/kernel").text
    assert argv[argv.index("-append") + 1] == root.find("os/cmdline").text
    assert f"file={root.find('devices/disk/source').get('file')},format=qcow2,if=virtio,cache=writeback" in argv
    assert argv[argv.index("-action") + 1] == f"watchdog={root.find('devices/watchdog').get('action')}"


def test_libvirt_xml_itco_disk_boot_and_an_action_libvirt_lacks(tmp_path):
    """libvirt 9.0 has no itco model: q35's built-in iTCO gets QEMU's own options through qemu:commandline."""
    text = render.render_libvirt_xml(
        _guest(model=Model.ITCO, action=Action.DEBUG, kernel=None, initrd=None, cmdline=None, agent=False),
        Path("/srv/a&b"))
    _validate(tmp_path, text)
    root = ET.fromstring(text)
    assert root.find("os/type").get("machine") == "q35"
    assert root.find("os/boot").get("dev") == "hd" and root.find("os/kernel") is None
    assert root.find("devices/disk/source").get("file") == "/srv/a&b/debian-i6300esb.qcow2"  # escaped, parsed back
    assert root.find("devices/watchdog") is None
    qemu_ns = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    args = [a.get("value") for a in root.iter(f"{qemu_ns}arg")]
    assert args == ["-global", "ICH9-LPC.noreboot=false", "-action", "watchdog=debug"]
    assert root.find("devices/channel") is None


def test_libvirt_xml_an_action_libvirt_lacks_is_said_in_the_description(tmp_path):
    text = render.render_libvirt_xml(_guest(action=Action.DEBUG), Path("/srv"))
    _validate(tmp_path, text)
    root = ET.fromstring(text)
    assert root.find("devices/watchdog").get("action") is None
    assert "debug (no libvirt equivalent" in root.find("description").text


def test_libvirt_xml_names_never_reach_a_comment(tmp_path):
    """`--` ends an XML comment: a name like a--b must still give well-formed, valid XML."""
    text = render.render_libvirt_xml(_guest(name="a--b"), Path("/srv/x--y"))
    _validate(tmp_path, text)
    assert ET.fromstring(text).find("name").text == "a--b"
    assert "<!--" not in text


@pytest.mark.parametrize("name", ["a b", "a/b", "-x", "x\n", "é"])
def test_libvirt_xml_refuses_a_name_libvirt_would_not_take(name):
    with pytest.raises(ValueError):
        render.render_libvirt_xml(_guest(name=name), Path("/srv"))
