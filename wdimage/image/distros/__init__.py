"""The distributions `wdimage build` knows: one module each (debian.py, centos.py, gentoo.py), found through the
registry DISTROS at the end of this file.

Adding a distro is one new module and one line in DISTROS. Its entry carries everything a build does
differently for it: its DIB elements, releases (and what was verified for each, against which upstream file),
package names, init system and the --init values it takes, how a kernel compiled on the host is packaged for
it, the kernel and initrd file names, its mirrors and the DIB environment its elements read, what its build
fetches from the network, its package URL type, how long its CI job may take, and what the drill warns about.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wdimage.image import dib
from wdimage.models import Arch

if TYPE_CHECKING:
    from wdimage.image.build import BuildSettings

# A --mirror URL (or one taken from the machine's apt sources): nothing in it can break out of a shell line.
MIRROR_RE = re.compile(r"(https?|ftp|file)://[A-Za-z0-9._~:/@%+-]+")


class Kernel(enum.StrEnum):
    """`wdimage build --kernel`: where the guest's kernel comes from."""

    BIN = "bin"  # the distro's prebuilt kernel package
    SOURCE = "source"  # compiled on the host from --kernel-src (wdimage.image.kernel_build)


class Initramfs(enum.StrEnum):
    """`wdimage build --initramfs`: the tool that makes the guest's initramfs, where the watchdog is armed first
    (elements/wdimage-watchdog/install.d/78-wdimage-watchdog-initramfs)."""

    INITRAMFS_TOOLS = "initramfs-tools"  # Debian's and Ubuntu's own: a hook and an init-top script
    DRACUT = "dracut"  # CentOS's, Gentoo's, and Debian's package `dracut`: the module 04wdimage-watchdog


class Init(enum.StrEnum):
    """The guest's init system (`wdimage build --init`, the manifest's init_system)."""

    SYSTEMD = "systemd"
    OPENRC = "openrc"


@dataclasses.dataclass(frozen=True)
class Release:
    """A release `wdimage build` accepts. `verified` says what was checked for it and against what; None: known
    to DIB but unverified here (the build warns)."""

    name: str
    verified: str | None = None


@dataclasses.dataclass(frozen=True)
class KernelPackaging:
    """How a kernel compiled on the host (--kernel source) is packaged for the distro's image."""

    target: str  # the kernel's own make target that makes the packages
    tools: tuple[str, ...]  # what that target needs on the host beyond the compiler (kernel_build.TOOLS)


@dataclasses.dataclass(frozen=True)
class Distro:
    """One distribution's entry. The methods are the behaviour a distro module may override."""

    name: str
    default_release: str
    elements: tuple[str, ...]  # DIB's base element(s) for it
    init_system: Init
    watchdog_package: str
    agent_package: str
    release_env: str  # the DIB variable the release goes into
    ci_minutes: int  # how long its CI job may take (the build; the drill adds a few minutes under TCG)
    purl: tuple[str, str]  # (package URL type, namespace) of its packages in the SBOM
    releases: tuple[Release, ...] = ()
    release_is_path: bool = False  # a release may contain '/' (a Gentoo profile); elsewhere it names files
    network: str = ""  # what a build fetches from the network (the README and the build's log say it)
    mirror_help: str = ""  # what --mirror is for it (`wdimage build --help`)
    # DIB's `base` element adds iSCSI and software-properties-common (with Python GObject, D-Bus): nothing
    # a watchdog guest needs. Debian leaves it out (-n); its base install already dist-upgrades.
    skip_base: bool = False
    # Packages that hold a model's driver or its helpers when the kernel package does not (pkg-map names).
    module_packages: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # --init values it takes -> the DIB elements that switch the image to them; empty: no --init.
    inits: dict[Init, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    init_note: str = ""  # without inits: how its init system is decided (the hint when --init is refused)
    # --initramfs values it takes, the first its default (the one its kernel packages use as shipped).
    initramfs: tuple[Initramfs, ...] = (Initramfs.DRACUT,)
    kernel_packaging: KernelPackaging | None = None  # None: no --kernel source
    kernel_note: str = ""  # without kernel_packaging: the hint when --kernel source is refused
    kernel_file: str = "vmlinuz-{release}"  # in the image's /boot, of a kernel compiled on the host
    initrd_file: str = "initramfs-{release}"
    local_image: bool = False  # --base-image: DIB starts from a local cloud image (DIB_LOCAL_IMAGE)
    measured_size: bool = False  # DIB sizes the image from the finished tree instead of a fixed size
    drill_agent_warning: str | None = None  # the drill's warning for an image built without --drill-agent
    # The guest architectures it builds (`--arch`): foreign ones through qemu-user-static (wdimage.image.dib).
    arches: tuple[Arch, ...] = (Arch.X86_64,)

    def release(self, name: str) -> Release | None:
        return next((r for r in self.releases if r.name == name), None)

    def kernel_package(self, kernel_release: str, kernel: Kernel) -> str | None:
        """The package that holds the image's kernel, if any."""
        raise NotImplementedError

    def mirrors(self, mirror: str | None, apt_sources: tuple[Path, ...]) -> tuple[str | None, str | None]:
        """(mirror, security mirror) of the build: --mirror's, or the distro's own choice without it."""
        return mirror, None

    def init_for(self, release: str) -> Init:
        """The init system the release runs without --init."""
        return self.init_system

    def environment(self, settings: BuildSettings) -> list[tuple[str, str]]:
        """DIB variables placed after the release: the mirror and what else picks the base system."""
        return [("DIB_DISTRIBUTION_MIRROR", settings.mirror)] if settings.mirror else []

    def extra_environment(self, settings: BuildSettings) -> list[tuple[str, str]]:
        """DIB variables placed after the common ones."""
        return []

    def block_device(self, fixed_size: str) -> str:
        """The partitionless block-device config; with measured_size DIB measures the finished tree (its `du`
        of the build plus 40 % and the journal) instead of taking the fixed, sparse size."""
        text = dib.PARTITIONLESS_BLOCK_DEVICE.format(size=fixed_size)
        return text.replace(f"    size: {fixed_size}\n", "") if self.measured_size else text

    def module_hint(self, model: str) -> str:
        """The hint when the image lacks the model driver's module files."""
        packages = self.module_packages.get(str(model), ())
        if packages:
            return (f"{', '.join(packages)} should have provided them (elements/wdimage-watchdog/pkg-map); "
                    f"see the DIB log, or choose another --model")
        return "install the package that ships them, or choose another --model"

    def log_needs(self, settings: BuildSettings) -> None:
        """Say what the build will fetch (and how its space is sized), before DIB runs."""
        from wdimage import log
        log.info(f"network: {self.network}")


def get(name: str) -> Distro:
    return DISTROS[name]


def names(test: Callable[[Distro], object], last: str = " and ") -> str:
    """The names of the distros that pass `test`, as a message says them: "debian and gentoo"."""
    found = [d.name for d in DISTROS.values() if test(d)]
    return last.join(found) if len(found) < 3 else f"{', '.join(found[:-1])}{last}{found[-1]}"


def drill_agent_warning(name: str, drill_agent: bool | None) -> str | None:
    """The drill's warning for an image of distro `name` built without --drill-agent (None: nothing to say)."""
    distro = DISTROS.get(name)
    return distro.drill_agent_warning if distro is not None and drill_agent is False else None


def check_release(spec: Distro, release: str) -> Release:
    """The release's table entry; exit 2 with the list for one the table does not know, a warning for one
    known but unverified."""
    from wdimage import log
    from wdimage.errors import usage_error

    entry = spec.release(release)
    if entry is None:
        known = ", ".join(r.name for r in spec.releases)
        raise usage_error(f"--release {release!r}: not a {spec.name} release wdimage knows ({known})",
                          hint="README.md, 'Releases', says what is verified for each")
    if entry.verified is None:
        log.info(f"warning: {spec.name} {release} is accepted but unverified: nothing here checked that its "
                 f"repositories ship the watchdog daemon and the guest agent, or that its kernel packages "
                 f"hold the watchdog drivers (verified: {spec.default_release})")
    return entry


from wdimage.image.distros import centos, debian, gentoo  # noqa: E402  (they subclass Distro, defined above)

DISTROS: dict[str, Distro] = {d.name: d for d in (debian.DEBIAN, centos.CENTOS, gentoo.GENTOO)}
