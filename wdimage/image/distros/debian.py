"""Debian: debootstrap from the Debian mirror in the machine's apt sources (or --mirror), systemd or OpenRC,
the prebuilt kernel or one compiled on the host as the kernel's own .deb packages."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from wdimage.image import dib
from wdimage.image.distros import MIRROR_RE, Distro, Init, Initramfs, Kernel, KernelPackaging, Release, apt
from wdimage.models import Arch, arch_info

if TYPE_CHECKING:
    from wdimage.image.build import BuildSettings

DEBOOTSTRAP_CACHE_MAX_AGE = 7 * 24 * 3600  # seconds: older base tarballs are rebuilt (security updates)


class Debian(Distro):
    def kernel_package(self, kernel_release: str, kernel: Kernel) -> str:
        return f"linux-image-{kernel_release}"

    def mirrors(self, mirror: str | None, apt_sources: tuple[Path, ...]) -> tuple[str, str]:
        """--mirror's (its security archive beside it), or those of Debian's archive in the apt sources."""
        from wdimage.errors import usage_error

        if mirror is not None:
            return mirror, mirror.rstrip("/") + "-security"
        detected, security = apt.debian_mirrors(apt.read_apt_sources(apt_sources))
        if not detected or not MIRROR_RE.fullmatch(detected) or not security or not MIRROR_RE.fullmatch(security):
            where = ", ".join(str(p) for p in apt_sources)
            raise usage_error(f"--mirror is needed: this machine's apt sources ({where}) name no Debian archive "
                              f"to take the mirror from",
                              hint="pass --mirror URL (a Debian mirror; its security archive is taken as "
                                   "URL-security)")
        return detected, security

    def environment(self, settings: BuildSettings) -> list[tuple[str, str]]:
        env = super().environment(settings)
        if settings.security_mirror:
            env.append(("DIB_DEBIAN_SECURITY_MIRROR", settings.security_mirror))
        return env + debootstrap_cache_env(settings.release, settings.arch)


def debootstrap_cache_env(release: str, arch: Arch = Arch.X86_64) -> list[tuple[str, str]]:
    """Keep debootstrap's result as a tarball in DIB's image cache and reuse it while it is fresh:
    a warm rebuild skips debootstrap."""
    tarball = dib.image_cache_dir(os.environ) / f"debootstrap-debian-{release}-{arch_info(arch).debian}.tar.gz"
    env = [("DIB_DEBOOTSTRAP_CACHE", "1")]
    try:
        fresh = time.time() - tarball.stat().st_mtime < DEBOOTSTRAP_CACHE_MAX_AGE
    except OSError:
        fresh = False
    if fresh:
        env.append(("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE", "1"))
    return env


DEBIAN = Debian(
    name="debian", default_release="bookworm", elements=("debian-minimal",), init_system=Init.SYSTEMD,
    watchdog_package="watchdog", agent_package="qemu-guest-agent", release_env="DIB_RELEASE",
    ci_minutes=45, purl=("deb", "debian"), skip_base=True,
    releases=(
        Release("bookworm", "built, booted and drilled for real by `make test` (tests/real): all three "
                            "drivers in linux-image-amd64, watchdog and qemu-guest-agent in main"),
        Release("trixie"), Release("bullseye")),
    mirror_help="default the Debian archive in this machine's apt sources (required when they name none)",
    network="debootstrap and apt from the Debian mirror (the machine's apt sources, or --mirror)",
    # OpenRC through the debian-openrc element (sysvinit-core + openrc; it sets DIB_INIT_SYSTEM=openrc).
    inits={Init.SYSTEMD: (), Init.OPENRC: ("debian-openrc",)},
    # initramfs-tools as shipped; the package `dracut` replaces it (apt removes initramfs-tools).
    initramfs=(Initramfs.INITRAMFS_TOOLS, Initramfs.DRACUT),
    kernel_packaging=KernelPackaging("bindeb-pkg", ("dpkg-buildpackage", "dpkg-deb", "fakeroot")),
    initrd_file="initrd.img-{release}", arches=(Arch.X86_64, Arch.ARM64, Arch.S390X))
