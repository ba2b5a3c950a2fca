"""`wdimage build`: option validation (exit 2 before any work), mirrors, dry runs per distro, assembling and
publishing the output directory, and a real (fast-failing) DIB run that must leave nothing behind."""

import dataclasses
import hashlib
import json
import shutil
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from wdimage import cli, datadir
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import build, dib, distros, outputs
from wdimage.image.distros import apt, debian
from wdimage.image.manifest import InstalledPackage, Package

REPO = Path(__file__).resolve().parents[2]

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.test/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.test/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def apt_sources(tmp_path) -> tuple[Path, ...]:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    (d / "other.list").write_text("deb [arch=amd64] https://vendor.test/apt stable main\n")
    return (tmp_path / "sources.list", d)


def _usage(capsys, *argv) -> str:
    assert cli.main(["build", *argv]) == ExitCode.USAGE
    return capsys.readouterr().err


@pytest.mark.parametrize("argv,option", [
    (["debian", "--timeout", "0"], "--timeout 0"),
    (["debian", "--model", "ib700", "--timeout", "31"], "--timeout 31: ib700 accepts 1..30"),
    (["debian", "--model", "i6300esb", "--timeout", "2047"], "--timeout 2047: i6300esb accepts 1..2046"),
    (["debian", "--name", "x;reboot"], "--name 'x;reboot'"),
    (["debian", "--name=-rf"], "--name '-rf'"),
    (["debian", "--name", "../up"], "--name '../up'"),
    (["debian", "--release", "bookworm main"], "--release"),
    (["debian", "--release", "../../etc"], "--release"),
    (["centos", "--release", "9/stream"], "--release '9/stream'"),
    (["gentoo", "--release", "default/../x"], "--release"),
    (["debian", "--mirror", "http://m/debian main$(id)"], "--mirror"),
    (["debian", "--mirror", "javascript:alert"], "--mirror"),
    (["centos", "--kernel", "source"], "--kernel source is for debian and gentoo"),
    (["debian", "--kernel", "source"], "--kernel source needs --kernel-src DIR"),
    (["gentoo", "--kernel", "source"], "--kernel source needs --kernel-src DIR"),
    (["debian", "--kernel-src", "/usr/src"], "--kernel-src: only with --kernel source"),
    (["debian", "--fragment", "/etc/hostname"], "--fragment: only with --kernel source"),
    (["debian", "--kernel", "source", "--kernel-src", "/no/such/tree"], "--kernel-src /no/such/tree: no such directory"),
    (["debian", "--kernel", "source", "--kernel-src", "/usr/share"], "--kernel-src /usr/share: not a kernel source tree"),
    (["debian", "--base-image", "/etc/hostname"], "--base-image is for centos only"),
    (["centos", "--base-image", "/no/such.qcow2"], "--base-image /no/such.qcow2: no such file"),
    (["debian", "--ping", "1.2.3.4;x"], "--ping"),
    (["debian", "--interface", "eth0 eth1"], "--interface"),
    (["debian", "--max-load", "0"], "--max-load 0"),
    (["gentoo", "--init", "openrc"], "--init is for debian only"),
    (["centos", "--initramfs", "initramfs-tools"], "--initramfs initramfs-tools: centos takes dracut"),
    (["gentoo", "--initramfs", "initramfs-tools"], "--initramfs initramfs-tools: gentoo takes dracut"),
])
def test_bad_options_exit_2_naming_the_option(capsys, tmp_path, argv, option):
    err = _usage(capsys, *argv, "--output", str(tmp_path / "out"))
    assert f"wdimage: error: {option}" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # no work done


def test_argparse_rejects_unknown_choices(capsys):
    for argv in (["fedora"], ["debian", "--model", "softdog"], ["debian", "--action", "explode"],
                 ["debian", "--libvirt-type", "xen"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["build", *argv])
        assert e.value.code == 2


def test_libvirt_type_is_checked_and_kvm_by_default(tmp_path, apt_sources):
    assert build.make_settings("debian", apt_sources=apt_sources).libvirt_type == "kvm"
    with pytest.raises(WdimageError) as e:
        build.make_settings("debian", libvirt_type="xen", apt_sources=apt_sources)
    assert e.value.code == ExitCode.USAGE and "--libvirt-type 'xen'" in e.value.message


def test_a_name_with_a_trailing_newline_is_refused(apt_sources):
    with pytest.raises(WdimageError) as e:
        build.make_settings("debian", name="web1\n", apt_sources=apt_sources)
    assert e.value.code == ExitCode.USAGE and "--name" in e.value.message


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(WdimageError) as e:
        build.make_settings("debian", output=tmp_path / "f")
    assert e.value.code == ExitCode.USAGE and "not a directory" in e.value.message


def test_defaults(apt_sources):
    s = build.make_settings("debian", apt_sources=apt_sources)
    assert (s.model, s.action, s.timeout, s.release, s.name) == ("i6300esb", "reset", 15, "bookworm",
                                                                 "debian-i6300esb")
    assert s.output == Path("output/debian-i6300esb").absolute()
    assert (s.mirror, s.security_mirror) == ("http://mirror.test/debian", "http://mirror.test/debian-security")


def test_security_mirror_derived_when_the_sources_name_none(tmp_path):
    (tmp_path / "sources.list").write_text("# comment\ndeb http://m.test/debian bookworm main\n")
    assert apt.debian_mirrors(apt.read_apt_sources((tmp_path / "sources.list",))) == (
        "http://m.test/debian", "http://m.test/debian-security")


def test_user_mirror_derives_its_security_mirror(apt_sources):
    s = build.make_settings("debian", mirror="http://local.test/debian/", apt_sources=apt_sources)
    assert (s.mirror, s.security_mirror) == ("http://local.test/debian/", "http://local.test/debian-security")


def test_no_apt_sources_requires_mirror(tmp_path):
    with pytest.raises(WdimageError) as e:
        build.make_settings("debian", apt_sources=(tmp_path / "none",))
    assert e.value.code == ExitCode.USAGE and e.value.message.startswith("--mirror is needed")
    s = build.make_settings("debian", mirror="http://m.test/debian", apt_sources=(tmp_path / "none",))
    assert (s.mirror, s.security_mirror) == ("http://m.test/debian", "http://m.test/debian-security")


# An Ubuntu host's apt sources, as Ubuntu 22.04 (one-line) and 24.04 (deb822) write them; host names replaced.
UBUNTU_ONE_LINE = """\
deb http://ubuntu-mirror.test/ubuntu/ jammy main restricted
deb http://ubuntu-mirror.test/ubuntu/ jammy-updates main restricted universe
deb http://ubuntu-security.test/ubuntu/ jammy-security main restricted
"""
UBUNTU_DEB822 = """\
Types: deb
URIs: http://ubuntu-mirror.test/ubuntu/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://ubuntu-security.test/ubuntu/
Suites: noble-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
"""
# A vendor repository laid out under /debian, with a Debian codename but no `main` component.
VENDOR = "deb [arch=amd64 signed-by=/k.gpg] https://vendor.test/linux/debian bookworm stable\n"


@pytest.mark.parametrize("name,text", [("ubuntu.list", UBUNTU_ONE_LINE), ("ubuntu.sources", UBUNTU_DEB822),
                                       ("vendor.list", VENDOR)])
def test_an_ubuntu_host_or_a_vendor_repo_gives_no_debian_mirror(tmp_path, capsys, name, text):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / name).write_text(text)
    sources = apt.read_apt_sources((tmp_path / "sources.list", d))
    assert sources and apt.debian_mirrors(sources) == (None, None)
    with pytest.raises(WdimageError) as e:
        build.make_settings("debian", apt_sources=(tmp_path / "sources.list", d))
    assert "--mirror is needed" in e.value.message and str(d) in e.value.message


@pytest.mark.parametrize("ubuntu", [UBUNTU_ONE_LINE, UBUNTU_DEB822])
def test_debian_sources_beside_ubuntus_are_the_ones_taken(tmp_path, ubuntu):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a-ubuntu.sources" if "Types:" in ubuntu else d / "a-ubuntu.list").write_text(ubuntu)
    (d / "b-vendor.list").write_text(VENDOR)
    (d / "debian.list").write_text("deb http://m.test/debian trixie main\n"
                                   "deb http://m.test/debian-security trixie-security main\n")
    s = build.make_settings("debian", apt_sources=(tmp_path / "sources.list", d))
    assert (s.mirror, s.security_mirror) == ("http://m.test/debian", "http://m.test/debian-security")


def test_debian_security_mirror_from_a_deb822_source(tmp_path):
    (tmp_path / "debian.sources").write_text(DEB822.replace("/debian-security", "/sec"))
    assert apt.debian_mirrors(apt.read_apt_sources((tmp_path / "debian.sources",))) == (
        "http://mirror.test/debian", "http://mirror.test/sec")


# --- releases ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("distro,release", [("debian", "nosuchrelease"), ("centos", "8-stream"),
                                            ("gentoo", "default/linux/amd64/17.1")])
def test_unknown_release_exits_2_with_the_list(capsys, tmp_path, distro, release):
    err = _usage(capsys, distro, "--release", release, "--output", str(tmp_path / "o"), "--dry-run")
    spec = distros.get(distro)
    assert f"--release {release!r}: not a {distro} release wdimage knows" in err
    assert all(r.name in err for r in spec.releases)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("distro,release", [("debian", "trixie"), ("centos", "10-stream"),
                                            ("gentoo", "default/linux/amd64/23.0/systemd")])
def test_known_but_unverified_release_warns(capsys, tmp_path, distro, release):
    assert cli.main(["build", distro, "--release", release, "--mirror", "http://m.test/debian",
                     "--output", str(tmp_path / "o"), "--dry-run"]) == 0
    assert f"warning: {distro} {release} is accepted but unverified" in capsys.readouterr().err
    assert cli.main(["build", distro, "--mirror", "http://m.test/debian", "--output", str(tmp_path / "o"),
                     "--dry-run"]) == 0
    assert "warning" not in capsys.readouterr().err  # the default release is verified


def test_every_distro_has_its_default_release_verified():
    for spec in distros.DISTROS.values():
        entry = spec.release(spec.default_release)
        assert entry is not None and entry.verified, spec.name
        for path in re.findall(r"tests/fixtures/upstream/[\w/]+", entry.verified):
            assert (REPO / path).exists(), path


def _dry_run(capsys, *argv) -> dict:
    assert cli.main(["build", *argv, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_debian_dry_run_prints_the_command_and_builds_nothing(capsys, tmp_path):
    out = tmp_path / "out"
    result = _dry_run(capsys, "debian", "--model", "ib700", "--action", "poweroff", "--timeout", "20",
                      "--output", str(out))
    assert result["dry_run"] is True and result["manifest"] is None and not out.exists()
    words = shlex.split(result["command"])
    env = dict(w.split("=", 1) for w in words[:words.index("disk-image-create")])
    assert env["DIB_RELEASE"] == "bookworm" and env["DIB_WATCHDOG_MODULE"] == "ib700wdt"
    assert env["DIB_WATCHDOG_BLACKLIST"] == "i6300esb iTCO_wdt"
    assert env["ELEMENTS_PATH"] == str(datadir.elements_dir())
    conf = Path(env["DIB_WATCHDOG_CONF"]).read_text()  # written, so the pasted line works
    assert "watchdog-device = /dev/watchdog\nwatchdog-timeout = 20\n" in conf
    if result["layout"] == "direct":
        assert env["DIB_BLOCK_DEVICE_CONFIG"].startswith("file://")
        assert "baremetal" in words
    assert words[-4:] == ["debian-minimal", words[-3], "wdimage-watchdog", "wdimage-slim"]
    assert words[words.index("-o") + 1] == str(out / "debian-ib700")


def test_centos_dry_run_with_a_local_base_image(capsys, tmp_path):
    image = tmp_path / "CentOS-Stream-GenericCloud-9.qcow2"
    image.write_bytes(b"QFI\xfb")
    result = _dry_run(capsys, "centos", "--base-image", str(image), "--mirror", "http://m.test/centos",
                      "--output", str(tmp_path / "o"))
    words = shlex.split(result["command"])
    assert f"DIB_LOCAL_IMAGE={image}" in words and "DIB_RELEASE=9-stream" in words
    assert "DIB_DISTRIBUTION_MIRROR=http://m.test/centos" in words
    assert "centos" in words and "DIB_DEBIAN_SECURITY_MIRROR" not in result["command"]
    assert "-n" not in words  # DIB's base element stays for the cloud-image path


def test_dry_run_text_is_the_command_line(capsys, tmp_path):
    assert cli.main(["build", "debian", "--dry-run", "--output", str(tmp_path / "o")]) == 0
    line = capsys.readouterr().out.strip()
    assert "disk-image-create -n --qemu-img-options compression_type=zstd -o" in line  # Debian: no `base`
    assert line.startswith("ELEMENTS_PATH=")


def test_inputs_are_content_addressed(tmp_path):
    a = build.write_inputs(build.make_settings("debian", timeout=15), dib.Layout.DIRECT, tmp_path)
    b = build.write_inputs(build.make_settings("debian", timeout=16), dib.Layout.DIRECT, tmp_path)
    c = build.write_inputs(build.make_settings("debian", timeout=15), dib.Layout.DISK, tmp_path)
    assert a["watchdog.conf"].parent != b["watchdog.conf"].parent
    assert "block-device.yaml" in a and "block-device.yaml" not in c


def test_debootstrap_tarball_is_reused_only_while_fresh(tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("DIB_IMAGE_CACHE", str(tmp_path))
    assert debian.debootstrap_cache_env("bookworm") == [("DIB_DEBOOTSTRAP_CACHE", "1")]
    tarball = tmp_path / "debootstrap-debian-bookworm-amd64.tar.gz"
    tarball.write_bytes(b"")
    assert ("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE", "1") in debian.debootstrap_cache_env("bookworm")
    week_ago = tarball.stat().st_mtime - debian.DEBOOTSTRAP_CACHE_MAX_AGE - 1
    os.utime(tarball, (week_ago, week_ago))
    assert debian.debootstrap_cache_env("bookworm") == [("DIB_DEBOOTSTRAP_CACHE", "1")]


def test_init_system_follows_the_gentoo_profile():
    assert build.init_system(build.make_settings("gentoo")) == "openrc"
    assert build.init_system(build.make_settings("gentoo", release="default/linux/amd64/23.0/systemd")) == "systemd"
    assert build.init_system(build.make_settings("centos")) == "systemd"


def test_debian_init_openrc_adds_the_debian_openrc_element(capsys, tmp_path):
    result = _dry_run(capsys, "debian", "--init", "openrc", "--output", str(tmp_path / "o"))
    words = shlex.split(result["command"])
    assert words[-5:] == ["debian-minimal", "debian-openrc", "baremetal", "wdimage-watchdog", "wdimage-slim"]
    settings = build.make_settings("debian", init="openrc")
    assert build.init_system(settings) == "openrc"
    assert datadir.elements_dir().joinpath(
        "debian-openrc/environment.d/20-debian-openrc.bash").read_text().count("DIB_INIT_SYSTEM=openrc") == 1
    # The default and an explicit systemd are the same build.
    for init in (None, "systemd"):
        plain = build.make_settings("debian", init=init)
        assert build.init_system(plain) == "systemd"
        assert "debian-openrc" not in build.elements(plain, dib.Layout.DIRECT)


def _env(result: dict) -> dict[str, str]:
    words = shlex.split(result["command"])
    return dict(w.split("=", 1) for w in words[:words.index("disk-image-create")])


@pytest.mark.parametrize("distro", ["centos", "gentoo"])
def test_centos_and_gentoo_dry_runs_arm_in_the_dracut_initramfs(capsys, tmp_path, distro):
    """Their only initramfs tool is dracut: the watchdog element installs its dracut module (the element tests
    show what it writes); --initramfs dracut says the same explicitly."""
    for extra in ((), ("--initramfs", "dracut")):
        result = _dry_run(capsys, distro, *extra, "--output", str(tmp_path / "o"))
        assert _env(result)["DIB_WATCHDOG_INITRAMFS_TOOL"] == "dracut"
        assert "wdimage-watchdog" in shlex.split(result["command"])


def test_debian_initramfs_is_initramfs_tools_unless_dracut_is_asked_for(capsys, tmp_path):
    assert _env(_dry_run(capsys, "debian", "--output", str(tmp_path / "o")))["DIB_WATCHDOG_INITRAMFS_TOOL"] \
        == "initramfs-tools"
    result = _dry_run(capsys, "debian", "--initramfs", "dracut", "--output", str(tmp_path / "o"))
    assert _env(result)["DIB_WATCHDOG_INITRAMFS_TOOL"] == "dracut"
    settings = build.make_settings("debian", initramfs="dracut", mirror="http://m.test/debian")
    assert settings.initramfs is distros.Initramfs.DRACUT


def test_kernel_cmdline_never_panics_the_guest_into_a_reboot():
    line = build.kernel_cmdline(build.make_settings("debian"))
    assert "console=ttyS0" in line and "panic=" not in line


# --- assembling and publishing ----------------------------------------------------------------------------------

KERNEL_CONFIG = "CONFIG_WATCHDOG=y\nCONFIG_WATCHDOG_CORE=y\nCONFIG_I6300ESB_WDT=m\nCONFIG_IB700_WDT=m\n" \
                "CONFIG_ITCO_WDT=m\nCONFIG_LPC_ICH=m\nCONFIG_MAGIC_SYSRQ=y\n"


MODULES_DEP = """\
kernel/drivers/watchdog/i6300esb.ko:
kernel/drivers/watchdog/ib700wdt.ko:
kernel/drivers/watchdog/iTCO_wdt.ko: kernel/drivers/watchdog/iTCO_vendor_support.ko
kernel/drivers/watchdog/iTCO_vendor_support.ko:
kernel/drivers/mfd/lpc_ich.ko:
"""


def _fake_module_records(manifests: Path, dep: str = MODULES_DEP, files: str | None = None,
                         builtin: str = "kernel/drivers/watchdog/watchdog.ko\n") -> None:
    (manifests / "wdimage-modules.dep").write_text(dep)
    (manifests / "wdimage-modules.builtin").write_text(builtin)
    listed = [line.split(":")[0] for line in dep.splitlines()]
    (manifests / "wdimage-modules.files").write_text("\n".join(listed) + "\n" if files is None else files)


def _fake_dib_output(staging: Path, name: str, config: str = KERNEL_CONFIG) -> None:
    """What disk-image-create leaves (image, kernel, initrd, DIB's manifest dir): small real files."""
    staging.mkdir(parents=True)
    for suffix in ("qcow2", "vmlinuz", "initrd"):
        (staging / f"{name}.{suffix}").write_bytes(suffix.encode() * 100)
    manifests = staging / f"{name}.d/dib-manifests"
    manifests.mkdir(parents=True)
    (manifests / "wdimage-kernel.release").write_text("6.1.0-56-amd64\n")
    (manifests / "wdimage-kernel.config").write_text(config)
    (manifests / "wdimage-packages.tsv").write_text(
        "linux-image-6.1.0-56-amd64\t6.1.192-2\tamd64\nwatchdog\t5.16-1+b2\tamd64\n"
        "qemu-guest-agent\t1:7.2+dfsg-7\tamd64\nlibc6\t2.36-9\tamd64\n")
    _fake_module_records(manifests)


def _assemble(tmp_path, config: str = KERNEL_CONFIG, layout: dib.Layout = dib.Layout.DIRECT,
              records: dict | None = None, **options) -> tuple[build.BuildSettings, Path, dict]:
    import datetime
    settings = build.make_settings("debian", output=tmp_path / "out", **options)
    staging = tmp_path / "staging"
    _fake_dib_output(staging, settings.name, config)
    if records is not None:
        _fake_module_records(staging / f"{settings.name}.d/dib-manifests", **records)
    if layout is dib.Layout.DISK:  # DIB's vm path leaves no kernel or initrd beside the image
        for suffix in ("vmlinuz", "initrd"):
            (staging / f"{settings.name}.{suffix}").unlink()
    command = build.dib_command(settings, layout, {"watchdog.conf": Path("/w")}, staging / settings.name)
    manifest = build.assemble(settings, layout, command, staging,
                              datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), 12.34)
    return settings, staging, manifest.to_json()


def test_assemble_writes_the_manifest_contract(tmp_path):
    settings, staging, manifest = _assemble(tmp_path)
    on_disk = json.loads((staging / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["schema"] == 1 and manifest["boot"] == "direct" and manifest["machine"] == "pc"
    assert manifest["packages"] == {
        "kernel": {"name": "linux-image-6.1.0-56-amd64", "version": "6.1.192-2"},
        "watchdog": {"name": "watchdog", "version": "5.16-1+b2"},
        "qemu-guest-agent": {"name": "qemu-guest-agent", "version": "1:7.2+dfsg-7"}}
    assert {"name": "libc6", "version": "2.36-9", "arch": "amd64"} in manifest["installed_packages"]
    assert manifest["kernel_config_check"]["ok"] is True
    assert manifest["openstack"] == {"hw_watchdog_action": "reset"}
    assert manifest["init_system"] == "systemd"
    assert manifest["drill_agent"] is False
    assert manifest["kernel_modules"] == {"release": "6.1.0-56-amd64", "modules": {
        "i6300esb": {"file": "kernel/drivers/watchdog/i6300esb.ko", "depends": []}}}
    assert manifest["build"]["seconds"] == 12.3 and manifest["build"]["layout"] == "direct"
    files = manifest["files"]
    assert files["launch_stub"] == "run-debian-i6300esb.sh" and files["kernel"] == "debian-i6300esb.vmlinuz"
    assert not (staging / "debian-i6300esb.d").exists()  # DIB's side directory is not published
    for file in files.values():
        assert (staging / file).is_file()
    assert manifest["checksums"]["debian-i6300esb.qcow2"] == hashlib.sha256(b"qcow2" * 100).hexdigest()
    # SHA256SUMS covers every artifact, the manifest too, and verifies.
    listed = {line.split("  ", 1)[1] for line in (staging / "SHA256SUMS").read_text().splitlines()}
    assert listed == {*files.values(), "manifest.json"}
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=staging, check=True)


def test_assemble_disk_layout_boots_from_the_disk(tmp_path):
    _, staging, manifest = _assemble(tmp_path, layout=dib.Layout.DISK, model="itco")
    assert manifest["boot"] == "disk" and manifest["kernel_cmdline"] is None and manifest["machine"] == "q35"
    assert "kernel" not in manifest["files"] and "initrd" not in manifest["files"]
    stub = (staging / manifest["files"]["launch_stub"]).read_text()
    assert "-kernel" not in stub and "ICH9-LPC.noreboot=false" in stub
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=staging, check=True)


def test_assemble_writes_the_platform_files_or_says_why_not(tmp_path, capsys):
    _, staging, manifest = _assemble(tmp_path)
    assert manifest["platforms"] == {"kubevirt": {"file": "debian-i6300esb.kubevirt.yaml"},
                                     "proxmox": {"file": "debian-i6300esb.proxmox.sh"}}
    assert manifest["files"]["kubevirt"] == "debian-i6300esb.kubevirt.yaml"
    assert "debian-i6300esb.proxmox.sh" in (staging / "SHA256SUMS").read_text()
    _, staging, manifest = _assemble(tmp_path / "ib700", model="ib700", action="pause")
    why = manifest["platforms"]["kubevirt"]["left_out"]
    assert "ib700: KubeVirt" in why and "pause: KubeVirt" in why and "kubevirt" not in manifest["files"]
    assert not list(staging.glob("*.kubevirt.yaml")) and manifest["files"]["proxmox"] == "debian-ib700.proxmox.sh"
    assert f"no KubeVirt VirtualMachine: {why}" in capsys.readouterr().err


@pytest.mark.skipif(not (shutil.which("umoci") and shutil.which("skopeo")), reason="umoci/skopeo not installed")
def test_assemble_with_containerdisk_names_it_in_the_manifest_and_the_kubevirt_file(tmp_path):
    _, staging, manifest = _assemble(tmp_path, containerdisk=True)
    assert manifest["files"]["containerdisk"] == "debian-i6300esb.containerdisk.tar"
    assert "debian-i6300esb.containerdisk.tar" in (staging / "SHA256SUMS").read_text()
    kubevirt = (staging / manifest["files"]["kubevirt"]).read_text()
    assert "skopeo copy oci-archive:debian-i6300esb.containerdisk.tar docker://" in kubevirt
    assert not [p for p in staging.iterdir() if p.name.startswith(".")]  # umoci's work directory is gone


def test_assemble_without_agent(tmp_path):
    _, staging, manifest = _assemble(tmp_path, agent=False)
    assert "qemu-guest-agent" not in manifest["packages"] and manifest["agent"] is False
    assert "guest_agent" not in (staging / "run-debian-i6300esb.sh").read_text()


def test_a_kernel_without_the_driver_fails_the_build(tmp_path):
    config = KERNEL_CONFIG.replace("CONFIG_I6300ESB_WDT=m", "# CONFIG_I6300ESB_WDT is not set")
    with pytest.raises(WdimageError) as e:
        _assemble(tmp_path, config)
    assert e.value.code == ExitCode.FAILED and "i6300esb" in e.value.message


def test_missing_package_fails(tmp_path):
    settings = build.make_settings("debian", output=tmp_path / "out")
    staging = tmp_path / "staging"
    _fake_dib_output(staging, settings.name)
    tsv = staging / f"{settings.name}.d/dib-manifests/wdimage-packages.tsv"
    tsv.write_text(tsv.read_text().replace("watchdog\t", "watchdogX\t"))
    facts = build.read_image_facts(tsv.parent)
    with pytest.raises(WdimageError) as e:
        build.package_versions(settings, facts)
    assert "watchdog" in e.value.message


def test_publish_keeps_the_previous_output_as_old(tmp_path):
    out = tmp_path / "out"
    for generation in ("one", "two", "three"):
        staging = tmp_path / f"staging-{generation}"
        staging.mkdir()
        (staging / "gen").write_text(generation)
        manifest = {"schema": 1, "name": "x", "files": {"gen": "gen"}, "build": {"wdimage_version": "0.1.0"}}
        (staging / "manifest.json").write_text(json.dumps(manifest))
        outputs.publish(staging, out)
    assert (out / "gen").read_text() == "three"
    assert (tmp_path / "out.old/gen").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.old"]


def test_a_failed_dib_run_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """Real disk-image-create, failing fast on an element that does not exist."""
    out = tmp_path / "out"
    (out).mkdir()
    (out / "previous").write_text("kept")
    monkeypatch.setattr(build, "elements", lambda settings, layout: ("no-such-element-wdimage",))
    monkeypatch.setenv("DIB_IMAGE_CACHE", str(tmp_path / "cache" / "dib"))  # not waiting for real builds
    with pytest.raises(WdimageError) as e:
        build.build(build.make_settings("debian", output=out, force=True), layout=dib.Layout.DIRECT)
    assert e.value.code == ExitCode.FAILED
    assert "no-such-element-wdimage" in e.value.message  # the end of DIB's log, shown
    assert "nothing was published" in e.value.hint and str(tmp_path / "cache" / "logs") in e.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # no staging left
    assert (out / "previous").read_text() == "kept" and not (tmp_path / "out.old").exists()


# --- the driver's module files ------------------------------------------------------------------------------------

def test_itco_needs_lpc_ich_and_its_dependencies(tmp_path):
    _, _, manifest = _assemble(tmp_path, model="itco")
    assert manifest["kernel_modules"]["modules"] == {
        "iTCO_wdt": {"file": "kernel/drivers/watchdog/iTCO_wdt.ko",
                     "depends": ["kernel/drivers/watchdog/iTCO_vendor_support.ko"]},
        "lpc_ich": {"file": "kernel/drivers/mfd/lpc_ich.ko", "depends": []}}


@pytest.mark.parametrize("records,expected", [
    # EL9 cloud images: kernel-modules not installed, so lpc_ich is not even in modules.dep.
    ({"dep": MODULES_DEP.replace("kernel/drivers/mfd/lpc_ich.ko:\n", "")},
     "lpc_ich: not in modules.dep or modules.builtin of 6.1.0-56-amd64"),
    # Listed, but the file (or a dependency's) is gone from the image.
    ({"files": "kernel/drivers/watchdog/iTCO_wdt.ko\nkernel/drivers/mfd/lpc_ich.ko\n"},
     "iTCO_wdt: kernel/drivers/watchdog/iTCO_vendor_support.ko listed in modules.dep but absent"),
])
def test_a_missing_module_file_fails_the_build_with_the_explanation(tmp_path, records, expected):
    with pytest.raises(WdimageError) as e:
        _assemble(tmp_path, model="itco", records=records)
    assert e.value.code == ExitCode.FAILED and expected in e.value.message
    assert "on q35, lpc_ich creates the iTCO device" in e.value.message
    assert not (tmp_path / "staging/manifest.json").exists()


def test_a_built_in_driver_needs_no_module_file(tmp_path):
    builtin = "kernel/drivers/watchdog/watchdog.ko\nkernel/drivers/watchdog/i6300esb.ko\n"
    _, _, manifest = _assemble(tmp_path, records={"dep": "", "files": "", "builtin": builtin},
                               config=KERNEL_CONFIG.replace("CONFIG_I6300ESB_WDT=m", "CONFIG_I6300ESB_WDT=y"))
    assert manifest["kernel_modules"]["modules"] == {"i6300esb": {"builtin": True}}


def test_centos_itco_requires_kernel_modules_in_the_image(tmp_path):
    settings = build.make_settings("centos", model="itco", output=tmp_path / "out")
    facts = build.ImageFacts("5.14.0-362.el9.x86_64", tmp_path / "config", tuple(
        InstalledPackage(n, "1", "x86_64") for n in ("kernel-core", "watchdog", "qemu-guest-agent")))
    with pytest.raises(WdimageError) as e:
        build.package_versions(settings, facts)
    assert "kernel-modules" in e.value.message
    facts = dataclasses.replace(facts, installed_packages=(*facts.installed_packages,
                                                           InstalledPackage("kernel-modules", "1", "x86_64")))
    assert build.package_versions(settings, facts)["kernel-modules"] == Package("kernel-modules", "1")
    assert "kernel-modules" in settings.spec.module_hint(settings.model)


# --- drill images -------------------------------------------------------------------------------------------------

def test_drill_agent_is_opt_in_and_recorded(capsys, tmp_path):
    words = shlex.split(_dry_run(capsys, "centos", "--output", str(tmp_path / "o"))["command"])
    assert "DIB_WATCHDOG_DRILL_AGENT=0" in words
    words = shlex.split(_dry_run(capsys, "centos", "--drill-agent", "--output", str(tmp_path / "o"))["command"])
    assert "DIB_WATCHDOG_DRILL_AGENT=1" in words
    _, _, manifest = _assemble(tmp_path, drill_agent=True)
    assert manifest["drill_agent"] is True
    assert "--drill-agent" in _usage(capsys, "centos", "--drill-agent", "--no-agent")
    assert "--drill-agent" in build_command_help()


def build_command_help() -> str:
    parser = cli.make_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["build"].format_help()


# --- what needs the network; Gentoo's mirror and space --------------------------------------------------------------

def test_base_image_is_not_called_offline_and_the_build_says_what_it_fetches(capsys, tmp_path):
    text = build_command_help() + "".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    assert "offline CentOS build" not in text and "offline builds" not in text
    image = tmp_path / "CentOS-Stream-GenericCloud-9.qcow2"
    image.write_bytes(b"QFI\xfb")
    assert cli.main(["build", "centos", "--base-image", str(image), "--output", str(tmp_path / "o"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "network: " in err and "dnf" in err and "CentOS repositories" in err


def test_gentoo_mirror_is_gentoo_mirrors(capsys, tmp_path):
    result = _dry_run(capsys, "gentoo", "--mirror", "http://m.test/gentoo", "--output", str(tmp_path / "o"))
    words = shlex.split(result["command"])
    assert "GENTOO_MIRRORS=http://m.test/gentoo" in words
    assert not any(w.startswith("DIB_DISTRIBUTION_MIRROR=") for w in words)  # DIB's gentoo element ignores it
    assert "DIB_MIN_TMPFS=4" in words and "DIB_NO_TMPFS=1" not in words


def test_gentoo_image_is_sized_by_dib_and_uses_tmpfs_only_with_enough_ram(capsys, tmp_path):
    result = _dry_run(capsys, "gentoo", "--output", str(tmp_path / "o"))
    words = shlex.split(result["command"])
    assert f"DIB_MIN_TMPFS={distros.gentoo.MIN_TMPFS_GB}" in words and "DIB_NO_TMPFS=1" not in words
    gentoo = build.make_settings("gentoo")
    assert "size:" not in build.write_inputs(gentoo, dib.Layout.DIRECT, tmp_path / "g")["block-device.yaml"].read_text()
    debian = build.make_settings("debian")
    assert f"size: {build.IMAGE_SIZE}" in build.write_inputs(debian, dib.Layout.DIRECT, tmp_path / "d")[
        "block-device.yaml"].read_text()
    assert cli.main(["build", "gentoo", "--output", str(tmp_path / "o"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "a --kernel source kernel is compiled on the host" in err and "image size: measured by DIB" in err
