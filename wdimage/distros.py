"""The distributions `wdimage build` knows, one entry each in a small registry, and the machine's apt mirror.

Adding a distro touches this file only: its DIB elements, default release, init system, package names and
the environment its DIB elements read.
"""

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


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
    # DIB's `base` element adds iSCSI and software-properties-common (with Python GObject, D-Bus): nothing
    # a watchdog guest needs. Debian leaves it out (-n); its base install already dist-upgrades.
    skip_base: bool = False


def _debian_kernel(kernel_release: str, kernel: str) -> str:
    return f"linux-image-{kernel_release}"


DISTROS: dict[str, Distro] = {
    "debian": Distro(
        name="debian", default_release="bookworm", elements=("debian-minimal",), init_system="systemd",
        watchdog_package="watchdog", agent_package="qemu-guest-agent",
        kernel_package=_debian_kernel, release_env="DIB_RELEASE", skip_base=True),
    "centos": Distro(
        name="centos", default_release="9-stream", elements=("centos",), init_system="systemd",
        watchdog_package="watchdog", agent_package="qemu-guest-agent",
        kernel_package=lambda release, kernel: "kernel-core", release_env="DIB_RELEASE"),
    "gentoo": Distro(
        name="gentoo", default_release="default/linux/amd64/23.0", elements=("gentoo",), init_system="openrc",
        watchdog_package="sys-apps/watchdog", agent_package="app-emulation/qemu-guest-agent",
        # A kernel compiled on the host (--kernel source) is no Portage package: the manifest's kernel_source.
        kernel_package=lambda release, kernel: None if kernel == "source" else "sys-kernel/gentoo-kernel-bin",
        release_env="GENTOO_PROFILE"),
}


def get(name: str) -> Distro:
    return DISTROS[name]


@dataclasses.dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]


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
            sources.append(AptSource(words[1], (words[2],)))
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
                sources.append(AptSource(uri, tuple(fields.get("suites", "").split())))
    return sources


def debian_mirrors(sources: list[AptSource]) -> tuple[str | None, str | None]:
    """(main mirror, security mirror) from the apt sources: the security one derived from the main one
    (`<mirror>-security`) when the sources name none."""
    main = security = None
    for source in sources:
        is_security = any(s.endswith("-security") or s.endswith("/updates") for s in source.suites)
        if is_security and security is None:
            security = source.uri
        elif not is_security and main is None and source.uri.rstrip("/").endswith("/debian"):
            main = source.uri
    if main and not security:
        security = main.rstrip("/") + "-security"
    return main, security
