"""The machine's apt sources, and the Debian archive among them: where a Debian build takes its mirror from."""

import dataclasses
import re
from pathlib import Path

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


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
