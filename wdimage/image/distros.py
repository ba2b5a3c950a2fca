"""The distributions `wdimage build` knows, one entry each in a small registry, and the machine's apt mirror.

Adding a distro touches this file only: its DIB elements, default release, init system, package names, the
releases it knows (and what was verified for each, against which upstream file), what its build fetches from
the network, and the environment its DIB elements read.
"""

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclasses.dataclass(frozen=True)
class Release:
    """A release `wdimage build` accepts. `verified` says what was checked for it and against what; None: known
    to DIB but unverified here (the build warns)."""

    name: str
    verified: str | None = None


@dataclasses.dataclass(frozen=True)
class Distro:
    name: str
    default_release: str
    elements: tuple[str, ...]  # DIB's base element(s) for it
    init_system: str  # systemd | openrc
    watchdog_package: str
    agent_package: str
    kernel_package: Callable[[str, str], str | None]  # (kernel release, --kernel) -> package name, if any
    release_env: str  # the DIB variable the release goes into
    releases: tuple[Release, ...] = ()
    network: str = ""  # what a build fetches from the network (the README and the build's log say it)
    # DIB's `base` element adds iSCSI and software-properties-common (with Python GObject, D-Bus): nothing
    # a watchdog guest needs. Debian leaves it out (-n); its base install already dist-upgrades.
    skip_base: bool = False
    # Packages that hold a model's driver or its helpers when the kernel package does not (pkg-map names).
    module_packages: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def release(self, name: str) -> Release | None:
        return next((r for r in self.releases if r.name == name), None)


def _debian_kernel(kernel_release: str, kernel: str) -> str:
    return f"linux-image-{kernel_release}"


_EL9 = "tests/fixtures/upstream/el9"
_GENTOO = "tests/fixtures/upstream/gentoo"
_GENTOO_PROFILE = "default/linux/amd64/23.0"

DISTROS: dict[str, Distro] = {
    "debian": Distro(
        name="debian", default_release="bookworm", elements=("debian-minimal",), init_system="systemd",
        watchdog_package="watchdog", agent_package="qemu-guest-agent",
        kernel_package=_debian_kernel, release_env="DIB_RELEASE", skip_base=True,
        releases=(
            Release("bookworm", "built, booted and drilled for real by `make test` (tests/real): all three "
                                "drivers in linux-image-amd64, watchdog and qemu-guest-agent in main"),
            Release("trixie"), Release("bullseye")),
        network="debootstrap and apt from the Debian mirror (the machine's apt sources, or --mirror)"),
    "centos": Distro(
        name="centos", default_release="9-stream", elements=("centos",), init_system="systemd",
        watchdog_package="watchdog", agent_package="qemu-guest-agent",
        kernel_package=lambda release, kernel: "kernel-core", release_env="DIB_RELEASE",
        releases=(
            Release("9-stream", f"{_EL9}: the EL9 kernel's filter lists (i6300esb, ib700wdt, iTCO_wdt in "
                                "kernel-core; lpc_ich, under drivers/mfd, in kernel-modules), qemu-kvm's "
                                "qemu-ga sysconfig and unit, kexec-tools' kdump.service"),
            Release("10-stream")),
        network="the GenericCloud image from CentOS's cloud image server (unless --base-image), and dnf: "
                "DIB's package update and the watchdog, qemu-guest-agent and kernel-modules packages from the "
                "CentOS repositories (or the --mirror that replaces them)",
        module_packages={"itco": ("kernel-modules",)}),
    "gentoo": Distro(
        name="gentoo", default_release=_GENTOO_PROFILE, elements=("gentoo",), init_system="openrc",
        watchdog_package="sys-apps/watchdog", agent_package="app-emulation/qemu-guest-agent",
        # A kernel compiled on the host (--kernel source) is no Portage package: the manifest's kernel_source.
        kernel_package=lambda release, kernel: None if kernel == "source" else "sys-kernel/gentoo-kernel-bin",
        release_env="GENTOO_PROFILE",
        releases=(
            Release(_GENTOO_PROFILE, f"{_GENTOO}: sys-apps/watchdog and app-emulation/qemu-guest-agent "
                                     "ebuilds (keywords), watchdog's OpenRC script; DIB 3.43.0's default "
                                     "profile"),
            Release(f"{_GENTOO_PROFILE}/systemd"), Release(f"{_GENTOO_PROFILE}/no-multilib"),
            Release(f"{_GENTOO_PROFILE}/no-multilib/systemd"), Release(f"{_GENTOO_PROFILE}/hardened"),
            Release(f"{_GENTOO_PROFILE}/hardened/systemd")),
        network="the stage3 tarball and its list from Gentoo's release server (DIB's gentoo element), the "
                "Portage snapshot (emerge-webrsync) and every package's distfiles (from GENTOO_MIRRORS: "
                "--mirror)"),
}


def get(name: str) -> Distro:
    return DISTROS[name]


@dataclasses.dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ()


def read_apt_sources(paths: tuple[Path, ...] = APT_SOURCES) -> list[AptSource]:
    """The `deb` entries of the machine's apt configuration, one-line and deb822 formats alike."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    sources: list[AptSource] = []
    for file in files:
        try:
            text = file.read_text(errors="replace")
        except OSError:
            continue
        sources += _parse_deb822(text) if file.suffix == ".sources" else _parse_one_line(text)
    return sources


def _parse_one_line(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            sources.append(AptSource(words[1], (words[2],), tuple(words[3:])))
    return sources


def _parse_deb822(text: str) -> list[AptSource]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("uris"):
            for uri in fields["uris"].split():
                sources.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                         tuple(fields.get("components", "").split())))
    return sources


# Suite names that only Debian's archive serves (codenames and aliases). Ubuntu's (jammy, noble, ...) and a
# vendor's (`stable` in a third-party repository without `main`) do not make a source Debian's.
DEBIAN_SUITES = frozenset({"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                           "oldoldstable", "oldstable", "stable", "testing", "unstable"})
_SUITE_SUFFIX = re.compile(r"(-security|/updates|-updates|-backports|-backports-sloppy|-proposed-updates)$")


def _debian_suite(suite: str) -> str | None:
    """The suffix of a Debian suite (`""` for the release itself), or None for a suite that is not Debian's."""
    match = _SUITE_SUFFIX.search(suite)
    base = suite[:match.start()] if match else suite
    return (match.group(1) if match else "") if base in DEBIAN_SUITES else None


def debian_mirrors(sources: list[AptSource]) -> tuple[str | None, str | None]:
    """(main mirror, security mirror) from the apt sources of Debian's own archive: a source counts only when
    its suites are Debian's and it carries the `main` component, so that an Ubuntu host's archive (or a
    vendor repository laid out under /debian) is never taken for Debian's. The security mirror is derived from
    the main one (`<mirror>-security`) when the sources name none. (None, None): no Debian source here."""
    main = security = None
    for source in sources:
        if "main" not in source.components:
            continue
        suffixes = [_debian_suite(s) for s in source.suites]
        if not suffixes or None in suffixes:
            continue
        if any(s in ("-security", "/updates") for s in suffixes):
            security = security or source.uri
        elif main is None:
            main = source.uri
    if main and not security:
        security = main.rstrip("/") + "-security"
    return main, security


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
