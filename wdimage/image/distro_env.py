"""Per-distro parts of a build that the distro table alone does not express: Gentoo's mirror, build space
and image size, and what each build fetches from the network (said in the log before DIB starts).
"""

from wdimage import log
from wdimage.image import dib, distros

# Gentoo with the prebuilt kernel: a stage3 plus the kernel and packages fits DIB's tmpfs (half the RAM) only on
# a machine with enough RAM; below twice this many GB DIB falls back to its disk build directory (unmeasured
# here: no Gentoo build can run on these machines).
GENTOO_MIN_TMPFS_GB = 4


def extra_environment(settings) -> list[tuple[str, str]]:
    """DIB variables beyond the common ones."""
    env: list[tuple[str, str]] = []
    if settings.distro == "gentoo":
        if settings.mirror:
            # Portage reads GENTOO_MIRRORS from the environment (emerge-webrsync's snapshot, every distfile);
            # DIB's gentoo element never reads DIB_DISTRIBUTION_MIRROR.
            env.append(("GENTOO_MIRRORS", settings.mirror))
        # Also with --kernel source: the kernel is compiled on the host (wdimage.image.kernel_build), not in the chroot.
        env.append(("DIB_MIN_TMPFS", str(GENTOO_MIN_TMPFS_GB)))
    return env


def block_device(settings, fixed_size: str) -> str:
    """The partitionless block-device config. Gentoo's size is measured by DIB from the finished tree (its
    `du` of the build plus 40 % and the journal), since a stage3 with a kernel does not fit a fixed guess;
    the others keep a fixed, sparse file system size."""
    text = dib.PARTITIONLESS_BLOCK_DEVICE.format(size=fixed_size)
    if settings.distro == "gentoo":
        text = text.replace(f"    size: {fixed_size}\n", "")
    return text


def module_hint(settings) -> str:
    packages = distros.get(settings.distro).module_packages.get(str(settings.model), ())
    if packages:
        return (f"{', '.join(packages)} should have provided them (elements/wdimage-watchdog/pkg-map); see the DIB log, "
                f"or choose another --model")
    return "install the package that ships them, or choose another --model"


def log_needs(settings) -> None:
    """Say what the build will fetch and how its space is sized, before DIB runs."""
    spec = distros.get(settings.distro)
    log.info(f"network: {spec.network}")
    if settings.distro == "gentoo":
        stage = "the stage3 tarball itself still comes from Gentoo's release server (DIB's gentoo element)"
        if settings.mirror:
            log.info(f"--mirror {settings.mirror}: GENTOO_MIRRORS for the Portage snapshot and distfiles; "
                     f"{stage}")
        log.info(f"build space: DIB's tmpfs when the machine has at least {2 * GENTOO_MIN_TMPFS_GB} GB of "
                 f"RAM, its disk build directory otherwise (DIB_MIN_TMPFS={GENTOO_MIN_TMPFS_GB}); a --kernel source "
                 f"kernel is compiled on the host")
        log.info("image size: measured by DIB from the finished tree (no fixed size)")
