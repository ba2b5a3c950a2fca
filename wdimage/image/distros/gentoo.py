"""Gentoo: a stage3 and Portage (DIB's gentoo element), the profile as the release (OpenRC, or systemd in the
systemd profiles), the prebuilt gentoo-kernel-bin or a kernel compiled on the host as the kernel's tarball;
its mirror is Portage's GENTOO_MIRRORS and DIB measures its image size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wdimage import log
from wdimage.image.distros import Distro, Init, Initramfs, Kernel, KernelPackaging, Release

if TYPE_CHECKING:
    from wdimage.image.build import BuildSettings

# With the prebuilt kernel: a stage3 plus the kernel and packages fits DIB's tmpfs (half the RAM) only on a
# machine with enough RAM; below twice this many GB DIB falls back to its disk build directory (unmeasured
# here: no Gentoo build can run on these machines).
MIN_TMPFS_GB = 4

_GENTOO = "tests/fixtures/upstream/gentoo"
_PROFILE = "default/linux/amd64/23.0"


class Gentoo(Distro):
    def kernel_package(self, kernel_release: str, kernel: Kernel) -> str | None:
        # A kernel compiled on the host (--kernel source) is no Portage package: the manifest's kernel_source.
        return None if kernel == Kernel.SOURCE else "sys-kernel/gentoo-kernel-bin"

    def init_for(self, release: str) -> Init:
        """As DIB decides it: the systemd profiles run systemd, the others OpenRC."""
        return Init.SYSTEMD if "systemd" in release else self.init_system

    def environment(self, settings: BuildSettings) -> list[tuple[str, str]]:
        return []  # DIB's gentoo element never reads DIB_DISTRIBUTION_MIRROR: see extra_environment

    def extra_environment(self, settings: BuildSettings) -> list[tuple[str, str]]:
        env = []
        if settings.mirror:
            # Portage reads GENTOO_MIRRORS from the environment (emerge-webrsync's snapshot, every distfile).
            env.append(("GENTOO_MIRRORS", settings.mirror))
        # Also with --kernel source: the kernel is compiled on the host (wdimage.image.kernel_build), not in the chroot.
        env.append(("DIB_MIN_TMPFS", str(MIN_TMPFS_GB)))
        env.append(("DIB_WATCHDOG_GENTOO_KERNEL", str(settings.kernel)))
        return env

    def log_needs(self, settings: BuildSettings) -> None:
        super().log_needs(settings)
        stage = "the stage3 tarball itself still comes from Gentoo's release server (DIB's gentoo element)"
        if settings.mirror:
            log.info(f"--mirror {settings.mirror}: GENTOO_MIRRORS for the Portage snapshot and distfiles; "
                     f"{stage}")
        log.info(f"build space: DIB's tmpfs when the machine has at least {2 * MIN_TMPFS_GB} GB of "
                 f"RAM, its disk build directory otherwise (DIB_MIN_TMPFS={MIN_TMPFS_GB}); a --kernel source "
                 f"kernel is compiled on the host")
        log.info("image size: measured by DIB from the finished tree (no fixed size)")


GENTOO = Gentoo(
    name="gentoo", default_release=_PROFILE, elements=("gentoo",), init_system=Init.OPENRC,
    watchdog_package="sys-apps/watchdog", agent_package="app-emulation/qemu-guest-agent",
    release_env="GENTOO_PROFILE", release_is_path=True, ci_minutes=150, purl=("ebuild", "gentoo"),
    releases=(
        Release(_PROFILE, f"{_GENTOO}: sys-apps/watchdog and app-emulation/qemu-guest-agent ebuilds "
                          "(keywords), watchdog's OpenRC script; DIB 3.43.0's default profile"),
        Release(f"{_PROFILE}/systemd"), Release(f"{_PROFILE}/no-multilib"),
        Release(f"{_PROFILE}/no-multilib/systemd"), Release(f"{_PROFILE}/hardened"),
        Release(f"{_PROFILE}/hardened/systemd")),
    mirror_help="GENTOO_MIRRORS (Portage snapshot and distfiles; the stage3 still comes from Gentoo)",
    network="the stage3 tarball and its list from Gentoo's release server (DIB's gentoo element), the "
            "Portage snapshot (emerge-webrsync) and every package's distfiles (from GENTOO_MIRRORS: --mirror)",
    init_note="a gentoo profile decides its own init system",
    initramfs=(Initramfs.DRACUT,),  # the arming dracut module 04wdimage-watchdog
    kernel_packaging=KernelPackaging("tar-pkg", ("tar",)), initrd_file="initramfs-{release}.img",
    measured_size=True)
