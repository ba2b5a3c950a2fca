"""From kernel config to a proven reset (issue 14): Debian's linux-source-6.1 configured by wdimage, compiled,
installed into a Debian image with its own bindeb-pkg package, and drilled through the CLI with `panic` and
`kill` on one boot.

The suite's kernel is the smallest that still proves that path: the tree's own `make tinyconfig` as --config
(tests/kernel_trees.tiny_config) and tests/fixtures/kernel/tiny-guest.config as --fragment (64-bit, PCI, virtio,
ext4, the console, what systemd needs, modules), with wdimage's watchdog and SysRq fragments merged on top. The
default small config (defconfig + kvm_guest.config + kconfig-fragments/guest-kernel.config) is configured and
proved here by the Gentoo dry run, and compiled by bench/bench_kernel_build.py.

Cost: the compile is cached by (tree, config) under ${WDIMAGE_CACHE}/kernel-builds and the image by
cached_build, so only a cold run compiles and builds the image. Measured cold on a shared 2-core machine
(tinyconfig-based, -j2, empty ccache): see the README's Development section. The drill boots the guest once
under TCG; the PCI-off and Gentoo dry-run tests configure only.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.kernel_trees` when run by path

from tests.kernel_trees import full_kernel_tree, kernel_tree, tiny_config  # noqa: E402
from tests.real.conftest import TINY_GUEST, built_source_image  # noqa: E402
from wdimage import cli  # noqa: E402
from wdimage.drill.scenarios import MARGIN_SECONDS  # noqa: E402
from wdimage.errors import ExitCode  # noqa: E402
from wdimage.image import kernel_build  # noqa: E402

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def tree() -> Path:
    return full_kernel_tree("6.1")


@pytest.fixture(scope="module")
def base_config(tree) -> Path:
    return tiny_config(tree)


@pytest.fixture(scope="module")
def source_image_dir() -> Path:
    return built_source_image()


def bzimage_version(path: Path) -> str:
    """The version string a bzImage carries (boot protocol: the setup header's kernel_version pointer)."""
    data = path.read_bytes()
    assert data[0x202:0x206] == b"HdrS", f"{path} is not a bzImage"
    (offset,) = struct.unpack_from("<H", data, 0x20E)
    return data[offset + 0x200:].split(b"\0", 1)[0].decode()


def test_a_config_without_pci_stops_before_compiling(tree, tmp_path, capsys):
    """The user's --config (Debian's own 6.1 config) with CONFIG_PCI off: i6300esb cannot be enabled."""
    config = tmp_path / "no-pci.config"
    config.write_text(kernel_tree("6.1").config().read_text().replace("CONFIG_PCI=y", "# CONFIG_PCI is not set"))
    before = set(kernel_build.kernel_builds_dir().rglob("*.deb"))
    output = tmp_path / "out"
    code = cli.main(["build", "debian", "--kernel", "source", "--kernel-src", str(tree), "--config", str(config),
                     "--output", str(output)])
    err = capsys.readouterr().err
    assert code == ExitCode.NOT_EFFECTIVE, err
    assert "nothing was compiled" in err and "FAIL CONFIG_I6300ESB_WDT" in err and "PCI (=n)" in err
    assert "make -C" not in err and "compiling" not in err  # configured, never compiled
    assert not output.exists() and set(kernel_build.kernel_builds_dir().rglob("*.deb")) == before
    assert f"--config {config} left as it was" in err
    assert "# CONFIG_PCI is not set" in config.read_text()  # the user's file is left as it was


def test_the_image_runs_the_kernel_wdimage_compiled(source_image_dir, base_config):
    manifest = json.loads((source_image_dir / "manifest.json").read_text())
    source = manifest["kernel_source"]
    release = source["release"]
    assert release == f"{source['version']}-wdimage-{source['config_sha256'][:8]}"
    assert source["version"].startswith("6.1.") and source["base_config"] == str(base_config)
    # The compile is cached by (tree, config) content, and its record names the fragment files it was made from:
    # a compile made in another checkout (CI's clone, a worktree) names that checkout's copy of tiny-guest.config.
    assert source["fragments"][:4] == ["kconfig-fragments/watchdog.config", "kconfig-fragments/i6300esb.config",
                                       "kconfig-fragments/ib700.config", "kconfig-fragments/sysrq.config"]
    assert source["fragments"][4:] == [str(TINY_GUEST)] or (
        len(source["fragments"]) == 5 and source["cached"] and Path(source["fragments"][4]).name == TINY_GUEST.name)
    assert source["compiler"].startswith("gcc")
    assert manifest["kernel_release"] == release
    assert manifest["packages"]["kernel"]["name"] == f"linux-image-{release}"
    installed = {p["name"] for p in manifest["installed_packages"]}
    assert not any(name.startswith("linux-image-") and name != f"linux-image-{release}" for name in installed)
    assert manifest["kernel_config_check"]["ok"] is True
    # The kernel QEMU boots directly is the compiled one, and its config has the seed's set as modules.
    assert bzimage_version(source_image_dir / manifest["files"]["kernel"]).startswith(f"{release} (wdimage@wdimage)")
    config = (source_image_dir / manifest["files"]["kernel_config"]).read_text()
    for line in ("CONFIG_WATCHDOG=y", "CONFIG_WATCHDOG_CORE=y", "CONFIG_I6300ESB_WDT=m", "CONFIG_IB700_WDT=m",
                 "CONFIG_MAGIC_SYSRQ=y", "CONFIG_64BIT=y", "CONFIG_VIRTIO_BLK=y"):
        assert line in config.splitlines()
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=source_image_dir)
    assert sums.returncode == 0


def test_the_sbom_and_diff_know_the_kernel_came_from_source(source_image_dir, capsys):
    sbom = json.loads((source_image_dir / "sbom.cdx.json").read_text())
    release = json.loads((source_image_dir / "manifest.json").read_text())["kernel_source"]["release"]
    [kernel] = [c for c in sbom["components"] if c["name"] == f"linux-image-{release}"]
    names = {p["name"] for p in kernel["properties"]}
    assert {"wdimage:role", "wdimage:kernel-source:config_sha256", "wdimage:kernel-source:compiler"} <= names


def test_the_compiled_kernel_is_reset_by_the_watchdog(source_image_dir, tmp_path):
    """One boot serves both faults: the guest comes back armed after the panic's reset, then its daemon is
    killed."""
    report_path = tmp_path / "drill.json"
    code = cli.main(["drill", str(source_image_dir), "--fault", "panic", "--fault", "kill",
                     "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    print(json.dumps(report, indent=2))
    assert code == ExitCode.OK, report
    release = json.loads((source_image_dir / "manifest.json").read_text())["kernel_source"]["release"]
    assert report.get("kernel") == release  # the readiness probe's `uname -r` in the guest
    assert all(c["passed"] for c in report["checks"]), report["checks"]  # i6300esb from the compiled modules
    assert [f["fault"] for f in report["faults"]] == ["panic", "kill"]
    for result in report["faults"]:
        assert result["passed"] and result["action"] == "reset", result
        assert 0 < result["seconds_to_reset"] <= result["expected_window"][1] + MARGIN_SECONDS, result
    assert report["faults"][0]["rebooted_armed"] is True, report["faults"][0]  # the compiled kernel booted twice


def test_gentoo_uses_the_same_host_side_build(tree, tmp_path, capsys):
    """Gentoo's base image cannot be fetched here: its dry run configures and proves the default small kernel
    config (defconfig + kvm_guest.config + guest-kernel.config, what a user gets without --config) and names
    the tarball's release for the wdimage-kernel element and a dracut initramfs for baremetal."""
    code = cli.main(["build", "gentoo", "--kernel", "source", "--kernel-src", str(tree), "--dry-run", "--json",
                     "--output", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    assert " defconfig kvm_guest.config" in captured.err  # the default small config, configured and proved
    words = json.loads(captured.out)["command"].split()
    env = dict(w.split("=", 1) for w in words if "=" in w and w.split("=", 1)[0].isupper())
    release = env["DIB_WDIMAGE_KERNEL_RELEASE"]
    assert kernel_build.RELEASE_RE.fullmatch(release) and "-wdimage-" in release
    assert env["DIB_BAREMETAL_INITRD_PATTERN"] == f"initramfs-{release}.img"
    assert env["DIB_WATCHDOG_GENTOO_KERNEL"] == "source" and "wdimage-kernel" in words
    assert env["DIB_WDIMAGE_KERNEL_DIR"].endswith("/packages") and "/gentoo-" in env["DIB_WDIMAGE_KERNEL_DIR"]
    assert not (tmp_path / "out").exists()
