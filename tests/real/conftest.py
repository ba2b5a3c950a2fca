"""Shared real-input fixtures: `debian_image_dir`, one real `wdimage build debian` per session, cached.

The build is keyed on everything that decides its result (the elements, the build code and templates,
the kernel fragments, the settings, the machine's apt mirror): a rerun with nothing changed reuses the
cached output in seconds, after checking its SHA256SUMS. Concurrent sessions serialise on a lock file.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.libvirtd import PrivateLibvirtd
from wdimage import cli
from wdimage.image import build
from wdimage.image.distros import apt

REPO = Path(__file__).resolve().parents[2]
# The drill relies on these: default model and action, a short timeout. Its libvirt domain is TCG
# (--libvirt-type qemu): KVM does not boot guests on these machines (DESIGN.md).
DEBIAN_BUILD_ARGS = ("debian", "--model", "i6300esb", "--action", "reset", "--timeout", "15",
                     "--libvirt-type", "qemu")
# The other model choice (ISA ib700 on the pc machine), another action and timeout.
DEBIAN_IB700_BUILD_ARGS = ("debian", "--model", "ib700", "--action", "poweroff", "--timeout", "20")
# The ICH9 TCO built into q35 (two countdowns: the reset comes about 2 x 10 s after the last keepalive).
DEBIAN_ITCO_BUILD_ARGS = ("debian", "--model", "itco", "--action", "reset", "--timeout", "10")
# The daemon's own health tests (wdimage drill's net, load, memory, service, test, test-repaired).
DEBIAN_HEALTH_BUILD_ARGS = ("debian", "--model", "i6300esb", "--action", "reset", "--timeout", "15",
                            "--ping", "10.0.2.2", "--max-load", "8", "--min-memory", "32768", "--health-example",
                            "--retry-timeout", "10")
KEY_INPUTS = ("elements", "kconfig-fragments", "wdimage")  # all of the package: a hand-kept list misses some


def build_key(args: tuple[str, ...]) -> str:
    digest = hashlib.sha256(repr(args).encode())
    digest.update(repr(apt.debian_mirrors(apt.read_apt_sources())).encode())
    for name in KEY_INPUTS:
        root = REPO / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.exists() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _intact(directory: Path) -> bool:
    if not (directory / "manifest.json").is_file() or not (directory / "SHA256SUMS").is_file():
        return False
    return subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=directory,
                          capture_output=True).returncode == 0


def cached_build(args: tuple[str, ...], name: str) -> Path:
    key = build_key(args)
    base = build.cache_dir() / "test-builds"
    base.mkdir(parents=True, exist_ok=True)
    output = base / key / name
    with open(base / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building the same thing: wait for it
        if _intact(output):
            os.utime(output.parent)  # in use: keep it from pruning
        else:
            code = cli.main(["build", *args, "--output", str(output)])
            assert code == 0, f"wdimage build {' '.join(args)} failed with exit code {code}"
    _prune(base, keep=key)
    return output


def _prune(base: Path, keep: str, max_age: float = 2 * 24 * 3600) -> None:
    """Drop cached builds of older inputs that nobody used for two days (about 200 MB each)."""
    now = time.time()
    for entry in base.iterdir():
        if entry.is_dir() and entry.name != keep and now - entry.stat().st_mtime > max_age:
            shutil.rmtree(entry, ignore_errors=True)
            (base / f"{entry.name}.lock").unlink(missing_ok=True)


def _require_root_or_sudo() -> None:
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        pytest.fail("a DIB build needs root or passwordless sudo")


@pytest.fixture(scope="session")
def debian_image_dir() -> Path:
    """The output directory of a real `wdimage build debian` (i6300esb, reset, 15 s), built once and cached
    under ${WDIMAGE_CACHE:-~/.cache/wdimage}/test-builds/."""
    _require_root_or_sudo()
    return cached_build(DEBIAN_BUILD_ARGS, "debian-i6300esb")


@pytest.fixture(scope="session")
def debian_ib700_image_dir() -> Path:
    """Like debian_image_dir, for ib700 with action poweroff and a 20 s timeout."""
    _require_root_or_sudo()
    return cached_build(DEBIAN_IB700_BUILD_ARGS, "debian-ib700")


@pytest.fixture(scope="session")
def debian_itco_image_dir() -> Path:
    """Like debian_image_dir, for the iTCO watchdog of q35 with a 10 s timeout."""
    _require_root_or_sudo()
    return cached_build(DEBIAN_ITCO_BUILD_ARGS, "debian-itco")


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
    """Like debian_image_dir, with the daemon's health tests: ping on the gateway, max-load-1 8, min-memory,
    wdimage's example service (pidfile) and test/repair pair, retry-timeout 10 s."""
    _require_root_or_sudo()
    return cached_build(DEBIAN_HEALTH_BUILD_ARGS, "debian-health")
