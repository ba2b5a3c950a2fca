"""The real Debian image (fixture debian_image_dir), opened and inspected: no device-mapper or nbd needed,
the qcow2 is converted to raw and its ext4 filesystem read with debugfs (direct layout), or its first
partition's offset is used (disk layout)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from wdimage.image import kmodules
from wdimage.models import Arch, Model, models_on

pytestmark = pytest.mark.real


class ImageFs:
    """Read-only access to the image's root filesystem through debugfs."""

    def __init__(self, raw: Path):
        self.raw = raw

    def _debugfs(self, request: str) -> str:
        proc = subprocess.run(["debugfs", "-R", request, str(self.raw)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def read(self, path: str) -> str:
        return self._debugfs(f"cat {path}")

    def exists(self, path: str) -> bool:
        proc = subprocess.run(["debugfs", "-R", f"stat {path}", str(self.raw)], capture_output=True, text=True)
        return "File not found" not in proc.stderr and proc.stdout.strip() != ""

    def listing(self, directory: str) -> list[str]:
        # `ls -p` lines: /inode/mode/uid/gid/name/size/
        return [line.split("/")[5] for line in self._debugfs(f"ls -p {directory}").splitlines()
                if line.count("/") >= 6] if self.exists(directory) else []

    def symlink_target(self, path: str) -> str:
        match = re.search(r'Fast link dest: "([^"]*)"', self._debugfs(f"stat {path}"))
        return match.group(1) if match else ""


@pytest.fixture(scope="module")
def manifest(debian_image_dir) -> dict:
    return json.loads((debian_image_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def image_fs(debian_image_dir, manifest, tmp_path_factory) -> ImageFs:
    raw = tmp_path_factory.mktemp("image") / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(debian_image_dir / manifest["files"]["image"]),
                    str(raw)], check=True)
    if manifest["boot"] == "disk":  # the partitioned vm layout: cut out the root partition
        table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True,
                                          check=True).stdout)["partitiontable"]
        part = max(table["partitions"], key=lambda p: p["size"])
        root = raw.with_name("part.raw")
        subprocess.run(["dd", f"if={raw}", f"of={root}", "bs=512", f"skip={part['start']}",
                        f"count={part['size']}", "conv=sparse", "status=none"], check=True)
        raw = root
    return ImageFs(raw)


def test_output_directory_is_complete_and_verified(debian_image_dir, manifest):
    files = manifest["files"]
    assert set(files) >= {"image", "launch_stub", "libvirt_xml"}
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=debian_image_dir, check=True)
    assert manifest["kernel_config_check"]["ok"] is True
    assert manifest["packages"]["watchdog"]["name"] == "watchdog"
    assert manifest["packages"]["kernel"]["name"].startswith("linux-image-")
    assert len(manifest["installed_packages"]) > 100
    if manifest["boot"] == "direct":
        assert "panic=" not in manifest["kernel_cmdline"] and "console=ttyS0" in manifest["kernel_cmdline"]
        assert (debian_image_dir / files["kernel"]).stat().st_size > 1_000_000
    stub = (debian_image_dir / files["launch_stub"]).read_text()
    assert "-device i6300esb" in stub and "-action watchdog=reset" in stub and "-watchdog " not in stub


def test_watchdog_conf_device_line_active(image_fs):
    lines = [line.strip() for line in image_fs.read("/etc/watchdog.conf").splitlines()]
    assert "watchdog-device = /dev/watchdog" in lines
    assert "watchdog-timeout = 15" in lines and "realtime = yes" in lines and "priority = 1" in lines


def test_watchdog_service_enabled(image_fs):
    wants = image_fs.listing("/etc/systemd/system/default.target.wants")
    assert "watchdog.service" in wants
    assert image_fs.symlink_target("/etc/systemd/system/default.target.wants/watchdog.service").endswith(
        "/watchdog.service")


def test_keepalive_cannot_take_over_from_a_killed_daemon(image_fs):
    # Debian's watchdog.service has OnFailure=wd_keepalive.service; masked, it is a link to /dev/null.
    assert image_fs.symlink_target("/etc/systemd/system/wd_keepalive.service") == "/dev/null"
    assert "run_wd_keepalive=0" in image_fs.read("/etc/default/watchdog")


def test_only_the_chosen_driver_loads_and_the_others_are_blacklisted(image_fs):
    assert image_fs.read("/etc/modules-load.d/wdimage-watchdog.conf").split() == ["i6300esb"]
    blacklist = image_fs.read("/etc/modprobe.d/wdimage-watchdog-blacklist.conf")
    assert "blacklist ib700wdt" in blacklist and "install ib700wdt /bin/false" in blacklist
    assert "i6300esb" not in re.sub(r"^#.*$", "", blacklist, flags=re.M)
    assert 'watchdog_module="i6300esb"' in image_fs.read("/etc/default/watchdog")


def test_systemd_does_not_claim_the_device(image_fs):
    conf = image_fs.read("/etc/systemd/system.conf.d/50-wdimage-watchdog.conf")
    assert "RuntimeWatchdogSec=0" in conf and "RebootWatchdogSec=0" in conf


def test_guest_agent_present_and_started_by_udev(image_fs):
    assert image_fs.exists("/usr/sbin/qemu-ga")
    rules = image_fs.read("/usr/lib/udev/rules.d/60-qemu-guest-agent.rules")
    assert "org.qemu.guest_agent.0" in rules and "qemu-guest-agent.service" in rules


def test_root_has_no_password(image_fs):
    root = next(line for line in image_fs.read("/etc/shadow").splitlines() if line.startswith("root:"))
    assert root.split(":")[1] in ("!", "*", "!*")


def test_nothing_listens_on_the_network(image_fs):
    for server in ("/usr/sbin/sshd", "/usr/sbin/rpcbind", "/usr/sbin/avahi-daemon"):
        assert not image_fs.exists(server), server


def test_image_is_slimmed(image_fs, debian_image_dir, manifest):
    assert not image_fs.exists("/usr/share/man")
    modules = image_fs.listing(f"/usr/lib/modules/{manifest['kernel_release']}/kernel/drivers")
    assert "watchdog" in modules and "gpu" not in modules


def test_ib700_build_loads_ib700wdt_and_blacklists_i6300esb(debian_ib700_image_dir, tmp_path_factory):
    """The other model choice, built for real (warm: about 30-50 s): ib700 on the pc machine."""
    out = debian_ib700_image_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["model"], manifest["action"], manifest["machine"]) == ("ib700", "poweroff", "pc")
    assert manifest["openstack"] == {"hw_watchdog_action": "poweroff"}
    raw = tmp_path_factory.mktemp("ib700") / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out / manifest["files"]["image"]), str(raw)], check=True)
    fs = ImageFs(raw)
    assert fs.read("/etc/modules-load.d/wdimage-watchdog.conf").split() == ["ib700wdt"]
    blacklist = fs.read("/etc/modprobe.d/wdimage-watchdog-blacklist.conf")
    assert "blacklist i6300esb" in blacklist and "blacklist ib700wdt" not in blacklist
    assert "watchdog-timeout = 20" in fs.read("/etc/watchdog.conf")
    stub = (out / manifest["files"]["launch_stub"]).read_text()
    assert "-device ib700" in stub and "-action watchdog=poweroff" in stub


def test_the_drivers_module_files_are_in_the_image(manifest, image_fs):
    """The build's module check passed on Debian's image, and the same check on the image's own file system
    holds for every x86 model: i6300esb, ib700wdt, and iTCO_wdt with lpc_ich (q35) and their modules.dep deps."""
    release = manifest["kernel_release"]
    recorded = manifest["kernel_modules"]
    assert recorded["release"] == release
    assert kmodules.module_name(recorded["modules"]["i6300esb"]["file"]) == "i6300esb"
    base = f"/usr/lib/modules/{release}"
    tree = kmodules.ModuleTree.parse(release, image_fs.read(f"{base}/modules.dep"),
                                     image_fs.read(f"{base}/modules.builtin"),
                                     lambda path: image_fs.exists(f"{base}/{path}"))
    assert kmodules.check_modules(tree, Model.I6300ESB) == recorded
    for model in models_on(Arch.X86_64):  # this is an x86_64 image: diag288 and sbsa-gwdt are other arches'
        checked = kmodules.check_modules(tree, model)["modules"]
        assert set(checked) == set(kmodules.required_modules(model))
        for entry in checked.values():
            assert entry.get("builtin") or image_fs.exists(f"{base}/{entry['file']}")
