"""Shared real-input fixtures: `debian_image_dir` and its siblings, each one real `wdimage build`, cached by
content (tests/build_cache.py: keyed by what decides the image's bytes, not by the drill's code)."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.build_cache import REPO, cached_build
from tests.kernel_trees import full_kernel_tree, tiny_config
from tests.libvirtd import PrivateLibvirtd

# The drills' guests boot with one vCPU here (wdimage.drill.runner.drill_cpus): two workers each booting a TCG
# guest on 2 cores reach a settled boot 12-15 % sooner than with the images' two vCPUs (measured: 40.3 s vs
# 46.9 s and 44.7 s vs 50.8 s, two guests side by side). `make demo` and the libvirt domains keep two.
os.environ.setdefault("WDIMAGE_DRILL_CPUS", "1")

# The drill relies on these: default model and action, a short timeout. Its libvirt domain is TCG
# (--libvirt-type qemu): KVM does not boot guests on these machines (DESIGN.md).
DEBIAN_BUILD_ARGS = ("debian", "--model", "i6300esb", "--action", "reset", "--timeout", "15",
                     "--libvirt-type", "qemu")
# The other model choice (ISA ib700 on the pc machine), another action and timeout.
DEBIAN_IB700_BUILD_ARGS = ("debian", "--model", "ib700", "--action", "poweroff", "--timeout", "20")
# The ICH9 TCO built into q35 (two countdowns: the reset comes about 2 x 10 s after the last keepalive).
DEBIAN_ITCO_BUILD_ARGS = ("debian", "--model", "itco", "--action", "reset", "--timeout", "10")
# The daemon's own health tests (wdimage drill's net, load, memory, service, test, test-repaired). The drill
# measures each fault against its window (wdimage/drill/windows.py), not against the wall clock, so the timers
# are short: timeout 10 (interval 3: the stop and pause controls wait 2 x 10 s, not 2 x 15 s) and retry-timeout 3
# (each retried fault and the repaired control wait 3 s, not 10 s, before the daemon acts; still a retry, which
# the daemon's "Retry timed-out at N seconds" line in each reason shows).
DEBIAN_HEALTH_BUILD_ARGS = ("debian", "--model", "i6300esb", "--action", "reset", "--timeout", "10",
                            "--ping", "10.0.2.2", "--max-load", "8", "--min-memory", "32768", "--health-example",
                            "--retry-timeout", "3")
# arm64: i6300esb over PCIe on QEMU's `virt`, built through qemu-user-static (binfmt_misc: `make binfmt`).
DEBIAN_ARM64_BUILD_ARGS = ("debian", "--arch", "arm64", "--model", "i6300esb", "--action", "reset", "--timeout", "15",
                           "--libvirt-type", "qemu")
# s390x: its own diag288 watchdog on s390-ccw-virtio (15 s is the Linux driver's minimum).
DEBIAN_S390X_BUILD_ARGS = ("debian", "--arch", "s390x", "--model", "diag288", "--action", "reset", "--timeout", "15",
                           "--libvirt-type", "qemu")
# The default image with its initramfs made by dracut (Debian's package `dracut` replaces initramfs-tools): the
# path CentOS and Gentoo take, booted here (their own images cannot be fetched on these machines).
DEBIAN_DRACUT_BUILD_ARGS = (*DEBIAN_BUILD_ARGS, "--initramfs", "dracut")


# `wdimage build debian --init openrc` (sysvinit-core as /sbin/init, openrc as its rc): test_openrc_debian.py.
DEBIAN_OPENRC_BUILD_ARGS = ("debian", "--init", "openrc", "--model", "i6300esb", "--action", "reset",
                            "--timeout", "15")

# Every image the real tests boot, by the name it is cached under (tests/build_cache.py: by content, so a warm run
# only verifies checksums). Each fixture takes its row; `python -m tests.prebuild` builds the x86 rows one at a
# time before `make test` runs the tests two at a time (two DIB builds at once fight over the apt cache that
# diskimage-builder shares between builds). "-again" is the same inputs built a second time (test_diff_debian.py).
IMAGES = {
    "debian-i6300esb": DEBIAN_BUILD_ARGS,
    "debian-i6300esb-again": DEBIAN_BUILD_ARGS,
    "debian-ib700": DEBIAN_IB700_BUILD_ARGS,
    "debian-itco": DEBIAN_ITCO_BUILD_ARGS,
    "debian-health": DEBIAN_HEALTH_BUILD_ARGS,
    "debian-dracut": DEBIAN_DRACUT_BUILD_ARGS,
    "debian-openrc": DEBIAN_OPENRC_BUILD_ARGS,
    "debian-arm64-i6300esb": DEBIAN_ARM64_BUILD_ARGS,
    "debian-s390x-diag288": DEBIAN_S390X_BUILD_ARGS,
}


def built(name: str) -> Path:
    """The cached output directory of IMAGES[name], built first if its inputs changed."""
    _require_root_or_sudo()
    return cached_build(IMAGES[name], name)


# The suite's own kernel (test_kernel_source.py): the smallest config that still proves tree -> merge -> compile ->
# bindeb-pkg -> image -> boot -> reset, the tree's `make tinyconfig` plus this fragment.
TINY_GUEST = REPO / "tests" / "fixtures" / "kernel" / "tiny-guest.config"


def source_image_args() -> tuple[str, ...]:
    tree = full_kernel_tree("6.1")
    return ("debian", "--kernel", "source", "--kernel-src", str(tree), "--config", str(tiny_config(tree)),
            "--fragment", str(TINY_GUEST), "--model", "i6300esb", "--action", "reset", "--timeout", "15")


def built_source_image() -> Path:
    """The image with the suite's kernel: compiled once per (tree, config), the image cached like IMAGES."""
    _require_root_or_sudo()
    return cached_build(source_image_args(), "debian-source-i6300esb")


def _require_root_or_sudo() -> None:
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        pytest.fail("a DIB build needs root or passwordless sudo")


@pytest.fixture(scope="session")
def debian_image_dir() -> Path:
    """The output directory of a real `wdimage build debian` (i6300esb, reset, 15 s), built once and cached
    under ${WDIMAGE_CACHE:-~/.cache/wdimage}/test-builds/."""
    return built("debian-i6300esb")


@pytest.fixture(scope="session")
def debian_ib700_image_dir() -> Path:
    """Like debian_image_dir, for ib700 with action poweroff and a 20 s timeout."""
    return built("debian-ib700")


@pytest.fixture(scope="session")
def debian_itco_image_dir() -> Path:
    """Like debian_image_dir, for the iTCO watchdog of q35 with a 10 s timeout."""
    return built("debian-itco")


@pytest.fixture(scope="session")
def libvirtd():
    """A private libvirtd + virtlogd for this session (tests/libvirtd.py): `.uri` reaches it; stopped at the end,
    with every domain it still runs destroyed."""
    daemon = PrivateLibvirtd().start()
    try:
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture(scope="session")
def debian_health_image_dir() -> Path:
    """Like debian_image_dir (timeout 10 s), with the daemon's health tests: ping on the gateway, max-load-1 8,
    min-memory, wdimage's example service (pidfile) and test/repair pair, retry-timeout 3 s."""
    return built("debian-health")


@pytest.fixture(scope="session")
def debian_arm64_image_dir() -> Path:
    """Like debian_image_dir, for an arm64 guest (QEMU `virt`, i6300esb over PCIe): a foreign build through
    qemu-user-static, cached by content like the x86 images."""
    return built("debian-arm64-i6300esb")


@pytest.fixture(scope="session")
def debian_s390x_image_dir() -> Path:
    """Like debian_arm64_image_dir, for an s390x guest with diag288 (only the `s390x`-marked test uses it)."""
    return built("debian-s390x-diag288")


@pytest.fixture(scope="session")
def debian_dracut_image_dir() -> Path:
    """Like debian_image_dir, with the initramfs made by dracut and armed by wdimage's dracut module."""
    return built("debian-dracut")
