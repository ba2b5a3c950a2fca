"""kernel-config for arm64 and s390x guests on the real Linux 6.1 tree (Debian's linux-source-6.1), with Debian's
own arm64 and s390x kernel configs taken from its kernel packages (tests/kernel_trees.debian_arch_config).

The bar is the x86 one (tests/real/test_kernel_trees.py): with the watchdog symbols switched off, `--merge
--arch ARCH` gives a config that the kernel's own `make ARCH=... CROSS_COMPILE=... olddefconfig` leaves exactly
as it is. CROSS_COMPILE matters: Kconfig's cc-option tests ask the compiler, and Debian's cross compilers
(gcc-aarch64-linux-gnu, gcc-s390x-linux-gnu: the Makefile's APT_ARCH line) are the ones wdimage picks.
"""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.kernel_trees` when run by path

from tests.kernel_trees import debian_arch_config, full_kernel_tree, without_watchdog  # noqa: E402
from wdimage import log  # noqa: E402
from wdimage.cli import main  # noqa: E402
from wdimage.models import Arch, arch_info  # noqa: E402

pytestmark = pytest.mark.real

# --arch, Debian's architecture, the lines the merge must produce
CASES = {
    Arch.ARM64: ("arm64", ("CONFIG_WATCHDOG=y", "CONFIG_WATCHDOG_CORE=y", "CONFIG_I6300ESB_WDT=m")),
    Arch.S390X: ("s390x", ("CONFIG_WATCHDOG=y", "CONFIG_WATCHDOG_CORE=y", "CONFIG_DIAG288_WATCHDOG=m")),
}


@pytest.fixture(autouse=True)
def _restore_log_quiet(monkeypatch):
    monkeypatch.setattr(log, "quiet", log.quiet)  # main(["-q", ...]) sets it


@pytest.fixture(scope="module")
def tree() -> Path:
    return full_kernel_tree("6.1")  # arch/arm64 and arch/s390 too (the Kconfig-only tree has arch/x86 alone)


def make_olddefconfig(src: Path, arch: Arch, config: Path) -> str:
    """The kernel's own olddefconfig, out of tree (O=): the shared full tree stays unconfigured, as
    `wdimage build --kernel source` requires of it (tests/real/test_kernel_source.py)."""
    about = arch_info(arch)
    objdir = config.parent / f"obj-{arch}"
    objdir.mkdir(exist_ok=True)
    subprocess.run(["make", "-s", "-C", str(src), f"O={objdir}", f"ARCH={about.kernel_arch}",
                    f"CROSS_COMPILE={about.cross_compile}", f"KCONFIG_CONFIG={config}", "olddefconfig"],
                   check=True, stdout=subprocess.DEVNULL)
    return config.read_text()


def wdimage(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["-q", "kernel-config", *argv])
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("arch", list(CASES))
def test_merge_for_a_foreign_arch_is_a_fixed_point_of_make_olddefconfig(tree, tmp_path, capsys, arch):
    debian, lines = CASES[arch]
    config = tmp_path / ".config"
    before = without_watchdog(debian_arch_config(debian).read_text())
    config.write_text(before)
    rc, out = wdimage(capsys, "--check", "--kernel-src", str(tree), "--config", str(config), "--arch", arch)
    assert rc == 3, out  # switched off: not watchdog-ready
    rc, out = wdimage(capsys, "--merge", "--kernel-src", str(tree), "--config", str(config), "--arch", arch)
    assert rc == 0, out
    merged = config.read_text()
    for line in lines:
        assert line in merged.splitlines()
    assert merged.splitlines() == make_olddefconfig(tree, arch, config).splitlines()  # not one line changed
    rc, out = wdimage(capsys, "--check", "--strict", "--kernel-src", str(tree), "--config", str(config),
                      "--arch", arch)
    assert rc == 0, out


def test_debians_arm64_kernel_has_the_i6300esb_driver(tree, capsys):
    """Unlike Home Assistant OS on aarch64, Debian's arm64 kernel builds i6300esb (and the SBSA watchdog's
    driver): its prebuilt kernel drives QEMU's i6300esb on `virt`, no --kernel source needed."""
    config = debian_arch_config("arm64")
    rc, out = wdimage(capsys, "--check", "--json", "--config", str(config), "--arch", "arm64",
                      "--model", "i6300esb", "--model", "sbsa-gwdt", "--strict")
    assert rc == 0, out
    assert "CONFIG_I6300ESB_WDT=m" in config.read_text().splitlines()


def test_debians_s390x_kernel_has_diag288_but_no_i6300esb(tree, capsys):
    config = debian_arch_config("s390x")
    rc, out = wdimage(capsys, "--check", "--config", str(config), "--arch", "s390x")
    assert rc == 0, out  # diag288 as a module; the core is m there, which a non-strict check accepts
    text = config.read_text().splitlines()
    assert "CONFIG_DIAG288_WATCHDOG=m" in text and "# CONFIG_I6300ESB_WDT is not set" in text
    # --strict holds it to the fragment's y for the core, and --kernel-src explains what holds it at m
    rc, out = wdimage(capsys, "--check", "--strict", "--kernel-src", str(tree), "--config", str(config),
                      "--arch", "s390x")
    assert rc == 3 and "CONFIG_WATCHDOG_CORE: requested y, got m" in out, out
