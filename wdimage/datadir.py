"""Where wdimage's shared data is: elements/ (diskimage-builder elements) and kconfig-fragments/.

In a checkout (and an editable install) they are at the top of the source tree. A wheel (`pip install`,
`pipx install`) installs them as data files under <prefix>/share/wdimage/ (setup.py lists them, keeping
the elements' executable bits: DIB's dib-run-parts runs only executable phase scripts). The installed
location is found through the distribution's own file list, so a `--user` or pipx install works too.
"""

import hashlib
import os
import shutil
import stat
import sys
from importlib import metadata
from pathlib import Path

from wdimage.errors import usage_error

SHARE = ("share", "wdimage")
# Element files that DIB sources or reads rather than runs: their mode does not matter.
_NOT_RUN = {"environment.d"}


def find(name: str, marker: str) -> Path:
    """The directory `name` (elements, kconfig-fragments) holding `marker`, checkout first."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / name, *_installed(name), Path(sys.prefix, *SHARE, name)]
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    raise usage_error(f"wdimage's {name}/ directory was not found (looked in "
                      f"{', '.join(map(str, dict.fromkeys(candidates)))})",
                      hint="reinstall wdimage (pip install / pipx install), or run it from its source tree")


def _installed(name: str) -> list[Path]:
    """<prefix>/share/wdimage/NAME as recorded in the installed distribution's RECORD."""
    try:
        files = metadata.files("wdimage") or []
    except metadata.PackageNotFoundError:
        return []
    found = []
    for file in files:
        parts = file.parts
        for i in range(len(parts) - 2):
            if parts[i:i + 3] == (*SHARE, name):
                found.append(Path(file.locate()).resolve().parents[len(parts) - i - 4])
                break
    return list(dict.fromkeys(found))


def runnable_scripts(elements: Path) -> list[Path]:
    """The files dib-run-parts runs: those directly inside each element's phase directories (`*.d`)."""
    return sorted(p for p in elements.glob("*/*.d/*") if p.is_file() and p.parent.name not in _NOT_RUN)


def elements_dir() -> Path:
    """The elements directory to give DIB (ELEMENTS_PATH)."""
    return executable_elements(find("elements", "wdimage-watchdog/element-deps"))


def executable_elements(elements: Path) -> Path:
    """`elements` if every phase script in it is executable; otherwise (an installer dropped the bits) a copy
    with the bits restored, made once under the cache (keyed on the content)."""
    scripts = runnable_scripts(elements)
    if all(os.access(p, os.X_OK) for p in scripts):
        return elements
    from wdimage.fileio import cache_dir  # noqa: PLC0415 (only on this rare path)
    digest = hashlib.sha256()
    for path in sorted(p for p in elements.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(elements)).encode() + b"\0" + path.read_bytes())
    copy = cache_dir() / "elements" / digest.hexdigest()[:16]
    if not copy.is_dir():
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(elements, tmp)
            for script in runnable_scripts(tmp):
                script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            tmp.rename(copy)
        except FileExistsError:
            pass  # another wdimage made the same copy meanwhile
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return copy
