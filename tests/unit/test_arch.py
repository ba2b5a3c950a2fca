"""The architecture dimension: arm64 and s390x guests on the one QEMU command line, in the launch stub and the
libvirt XML (held to libvirt's schema), `--arch` on build, kernel-config and matrix, the refusals, and the check
that this machine can run a foreign chroot."""

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import build, dib, render
from wdimage.image.manifest import Manifest, from_json
from wdimage.models import Action, Arch, Model
from wdimage.vm.launch import LaunchSpec, qemu_argv


def _spec(**kw) -> LaunchSpec:
    return LaunchSpec(**{**dict(model=Model.I6300ESB, action=Action.RESET, image=Path("/i/x.qcow2"),
                                kernel=Path("/i/x.vmlinuz"), initrd=Path("/i/x.initrd"), cmdline="c",
                                qga_socket=Path("/r/qga.sock")), **kw})


def _option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_the_x86_command_line_is_what_it_always_was():
    argv = qemu_argv(_spec())
    assert argv[0] == "qemu-system-x86_64" and "-cpu" not in argv and "-bios" not in argv
    assert _option(argv, "-device") == ["virtio-net-pci,netdev=net0", "i6300esb", "virtio-serial",
                                        "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]


def test_arm64_virt_with_i6300esb_over_pcie_and_cpu_max_under_tcg():
    argv = qemu_argv(_spec(arch=Arch.ARM64))
    assert argv[0] == "qemu-system-aarch64"
    assert _option(argv, "-machine") == ["virt,accel=tcg"]
    assert _option(argv, "-cpu") == ["max"]  # QEMU's default on virt is a 32-bit cortex-a15
    assert "i6300esb" in _option(argv, "-device") and "virtio-serial-pci" in _option(argv, "-device")
    assert _option(qemu_argv(_spec(arch=Arch.ARM64, accel="kvm")), "-cpu") == ["host"]
    # a disk image (no direct kernel boot) boots through UEFI; direct boot needs no firmware
    assert "-bios" not in argv
    disk = qemu_argv(_spec(arch=Arch.ARM64, kernel=None, initrd=None, cmdline=None))
    assert _option(disk, "-bios") == ["/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"]


def test_s390x_ccw_machine_with_diag288_and_virtio_over_channel_io():
    argv = qemu_argv(_spec(arch=Arch.S390X, model=Model.DIAG288, action=Action.NONE))
    assert argv[0] == "qemu-system-s390x"
    assert _option(argv, "-machine") == ["s390-ccw-virtio,accel=tcg"] and "-cpu" not in argv
    assert _option(argv, "-device") == ["virtio-net-ccw,netdev=net0", "diag288", "virtio-serial-ccw",
                                        "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
    # s390x tells QEMU about a panic itself (disabled-wait PSW): QEMU must not end the guest before diag288 fires
    assert _option(argv, "-action") == ["watchdog=none", "panic=none"]
    assert "panic=none" not in " ".join(qemu_argv(_spec(model=Model.I6300ESB)))


def _guest(arch: Arch, model: Model, console: str) -> render.GuestFiles:
    return render.GuestFiles(name=f"debian-{arch}", model=model, action=Action.RESET, image="d.qcow2",
                             kernel="d.vmlinuz", initrd="d.initrd", cmdline=f"root=LABEL=r ro console={console}",
                             agent=True, arch=arch)


def test_the_launch_stub_runs_the_foreign_emulator(tmp_path):
    guest = _guest(Arch.ARM64, Model.I6300ESB, "ttyAMA0")
    stub = tmp_path / "run.sh"
    stub.write_text(render.render_launch_stub(guest))
    stub.chmod(0o755)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "qemu-system-aarch64").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake / "qemu-system-aarch64").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:/usr/bin:/bin", "WDIMAGE_RUNDIR": str(tmp_path / "run")}
    proc = subprocess.run([str(stub)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert _option(argv, "-cpu") == ["max"] and _option(argv, "-machine") == ["virt,accel=tcg"]
    assert _option(argv, "-append") == ["root=LABEL=r ro console=ttyAMA0"]


def _validate(tmp_path: Path, text: str) -> ET.Element:
    path = tmp_path / "domain.xml"
    path.write_text(text)
    proc = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ET.fromstring(text)


def test_libvirt_xml_for_aarch64_virt(tmp_path):
    root = _validate(tmp_path, render.render_libvirt_xml(_guest(Arch.ARM64, Model.I6300ESB, "ttyAMA0"),
                                                         Path("/srv"), "qemu"))
    assert (root.find("os/type").get("arch"), root.find("os/type").get("machine")) == ("aarch64", "virt")
    assert root.find("cpu").get("mode") == "maximum"  # QEMU's -cpu max
    assert root.find("features") is None  # no ACPI: a directly booted virt guest reads a device tree
    assert root.find("devices/watchdog").get("model") == "i6300esb"
    kvm = _validate(tmp_path, render.render_libvirt_xml(_guest(Arch.ARM64, Model.I6300ESB, "ttyAMA0"),
                                                        Path("/srv"), "kvm"))
    assert kvm.find("cpu").get("mode") == "host-passthrough"


def test_libvirt_xml_for_s390x_with_diag288(tmp_path):
    root = _validate(tmp_path, render.render_libvirt_xml(_guest(Arch.S390X, Model.DIAG288, "ttysclp0"),
                                                         Path("/srv"), "qemu"))
    assert (root.find("os/type").get("arch"), root.find("os/type").get("machine")) == ("s390x", "s390-ccw-virtio")
    assert root.find("devices/console/target").get("type") == "sclp" and root.find("devices/serial") is None
    assert (root.find("devices/watchdog").get("model"), root.find("devices/watchdog").get("action")) == (
        "diag288", "reset")


def _dry_run(tmp_path, capsys, *args: str) -> dict:
    assert cli.main(["build", "debian", *args, "--output", str(tmp_path / "o"), "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_build_arm64_dry_run(tmp_path, capsys):
    command = _dry_run(tmp_path, capsys, "--arch", "arm64")["command"]
    assert command.startswith("ARCH=arm64 ") and "DIB_WATCHDOG_MODULE=i6300esb" in command
    # only arm64's other model is kept from loading; ib700 and iTCO do not exist there
    assert "DIB_WATCHDOG_BLACKLIST=sbsa_gwdt" in command
    x86 = _dry_run(tmp_path, capsys)["command"]
    assert "ARCH=" not in x86 and "DIB_WATCHDOG_BLACKLIST='iTCO_wdt ib700wdt'" in x86


def test_build_s390x_diag288_dry_run_and_its_kernel_command_line(tmp_path, capsys):
    command = _dry_run(tmp_path, capsys, "--arch", "s390x", "--model", "diag288")["command"]
    assert command.startswith("ARCH=s390x ") and "DIB_WATCHDOG_MODULE=diag288_wdt" in command
    settings = build.make_settings("debian", arch="s390", model="diag288", output=tmp_path / "o")
    assert settings.arch is Arch.S390X and build.kernel_cmdline(settings).endswith("console=ttysclp0")
    assert settings.name == "debian-s390x-diag288"  # the default name never collides with an x86 build's
    assert build.make_settings("debian", output=tmp_path / "o").name == "debian-i6300esb"


@pytest.mark.parametrize("args,names", [
    (["debian", "--arch", "arm64", "--model", "ib700"], "--model ib700 does not exist on --arch arm64"),
    (["debian", "--arch", "arm64", "--model", "itco"], "on arm64: i6300esb"),
    (["debian", "--model", "diag288"], "--model diag288 does not exist on --arch x86_64 (only on s390x)"),
    (["debian", "--arch", "arm64", "--model", "sbsa-gwdt"], "which Debian does not package"),
    (["debian", "--arch", "s390x"], "on s390x: diag288"),  # the default model, i6300esb, is not there
    (["debian", "--arch", "mips"], "--arch mips: expected one of x86_64, arm64, s390x"),
    (["centos", "--arch", "arm64"], "--arch arm64: wdimage builds centos for x86_64"),
    (["debian", "--arch", "s390x", "--model", "diag288", "--timeout", "10"], "diag288 accepts 15..3600"),
    (["debian", "--arch", "arm64", "--kernel", "source", "--kernel-src", "/nonexistent"],
     "--kernel source --arch arm64"),
])
def test_build_refuses_what_does_not_exist_on_the_arch(tmp_path, capsys, args, names):
    assert cli.main(["build", *args, "--output", str(tmp_path / "o"), "--dry-run"]) == ExitCode.USAGE
    assert names in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _binfmt(tmp_path: Path, *, mounted=True, entry: str | None = "enabled\nflags: POF\n",
            interpreter=True) -> tuple[Path, Path]:
    binfmt, interpreters = tmp_path / "binfmt_misc", tmp_path / "qemu-binfmt"
    binfmt.mkdir()
    interpreters.mkdir()
    if mounted:
        (binfmt / "status").write_text("enabled\n")
    if entry is not None:
        (binfmt / "qemu-aarch64").write_text(entry)
    if interpreter:
        (interpreters / "aarch64-binfmt-P").write_text("")
    return binfmt, interpreters


@pytest.mark.parametrize("case,problem,fix", [
    (dict(), None, None),
    (dict(mounted=False), "binfmt_misc is not mounted", "mount -t binfmt_misc binfmt_misc"),
    (dict(entry=None), "no binfmt_misc entry", "/usr/lib/binfmt.d/qemu-aarch64.conf"),
    (dict(entry="disabled\nflags: POF\n"), "is disabled", "echo 1 >"),
    (dict(entry="enabled\nflags: P\n"), "lacks the F flag", "register"),
])
def test_a_foreign_chroot_needs_binfmt_misc_and_qemu_user_static(tmp_path, monkeypatch, case, problem, fix):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no qemu-aarch64-static on PATH
    binfmt, interpreters = _binfmt(tmp_path, **case)
    found = dib.foreign_arch_problem(Arch.ARM64, host="x86_64", binfmt=binfmt, interpreters=interpreters)
    if problem is None:
        assert found is None
    else:
        assert problem in found[0] and fix in found[1]


def test_qemu_user_static_missing_is_named_and_the_hosts_own_arch_needs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    binfmt, interpreters = _binfmt(tmp_path, interpreter=False)
    message, fix = dib.foreign_arch_problem(Arch.ARM64, host="x86_64", binfmt=binfmt, interpreters=interpreters)
    assert "qemu-user-static is not installed" in message and fix == "apt-get install qemu-user-static"
    assert dib.foreign_arch_problem(Arch.ARM64, host="aarch64", binfmt=binfmt, interpreters=interpreters) is None
    assert dib.foreign_arch_problem(Arch.X86_64, host="x86_64") is None


def test_a_real_build_stops_before_dib_when_the_chroot_cannot_run(tmp_path, monkeypatch):
    problem = ("--arch arm64: binfmt_misc is not mounted", "mount -t binfmt_misc ...")
    monkeypatch.setattr(dib, "foreign_arch_problem", lambda arch: problem)
    settings = build.make_settings("debian", arch="arm64", output=tmp_path / "o")
    with pytest.raises(WdimageError) as e:
        build.build(settings, layout=dib.Layout.DIRECT)
    assert e.value.code == ExitCode.USAGE and "binfmt_misc" in e.value.message and "mount" in e.value.hint
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))


def test_the_manifest_records_a_foreign_arch_and_x86_manifests_stay_as_they_were(tmp_path):
    arm = Manifest(name="d", model=Model.I6300ESB, machine="virt", arch=Arch.ARM64)
    data = arm.to_json()
    assert data["arch"] == "arm64" and from_json(data, tmp_path / "m.json").arch is Arch.ARM64
    assert "arch" not in Manifest(name="d", model=Model.I6300ESB, arch=Arch.X86_64).to_json()
    assert from_json(Manifest(name="d").to_json(), tmp_path / "m.json").arch is None
    with pytest.raises(WdimageError, match="'arch'"):
        from_json({**data, "arch": "mips"}, tmp_path / "m.json")


@pytest.mark.parametrize("args,names", [
    (["--arch", "arm64", "--model", "ib700"], "--model ib700 does not exist on --arch arm64"),
    (["--arch", "s390x", "--model", "i6300esb"], "on s390x: diag288"),
    (["--arch", "vax"], "--arch vax: expected one of"),
])
def test_kernel_config_refuses_a_model_the_arch_lacks(tmp_path, capsys, args, names):
    config = tmp_path / "config"
    config.write_text("CONFIG_WATCHDOG=y\n")
    assert cli.main(["kernel-config", "--check", "--config", str(config), *args]) == ExitCode.USAGE
    assert names in capsys.readouterr().err


def test_kernel_config_takes_the_refused_board_model_and_each_archs_default(tmp_path, capsys):
    """A kernel config does not depend on the board's firmware: sbsa-gwdt is checked like any model; without
    --model, arm64 checks i6300esb and s390x diag288."""
    config = tmp_path / "config"
    config.write_text("CONFIG_WATCHDOG=y\nCONFIG_WATCHDOG_CORE=y\nCONFIG_MAGIC_SYSRQ=y\nCONFIG_ARM_SBSA_WATCHDOG=m\n")
    assert cli.main(["kernel-config", "--check", "--json", "--config", str(config), "--arch", "aarch64",
                     "--model", "sbsa-gwdt"]) == ExitCode.OK
    capsys.readouterr()
    assert cli.main(["kernel-config", "--check", "--json", "--config", str(config), "--arch", "arm64"]) == 3
    assert "I6300ESB_WDT" in capsys.readouterr().out
    assert cli.main(["kernel-config", "--check", "--json", "--config", str(config), "--arch", "s390"]) == 3
    out = capsys.readouterr().out
    assert "DIAG288_WATCHDOG" in out and "I6300ESB_WDT" not in out
