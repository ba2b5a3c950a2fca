"""A stand-in for a distribution's stock cloud image, for the real test of `wdimage cloud-init`: Debian built by
diskimage-builder as `wdimage build debian` builds it (the same DIB command, mirrors, direct-boot layout and
wdimage-slim), but WITHOUT the wdimage-watchdog element and with the test element
tests/fixtures/elements/wdimage-test-cloud-standin (cloud-init, NoCloud; watchdog and qemu-guest-agent
pre-installed as Debian ships them, since the guest has no route out; see its README.rst).

Cached like the real tests' builds (tests/build_cache.py): keyed by the DIB command, the two elements' files and
the tools' versions; a partial build never lands in the cache (made in a staging directory, renamed into place).
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.build_cache import REPO, _prune, _tool_versions
from wdimage.fileio import cache_dir
from wdimage.image import build, dib

ELEMENTS = REPO / "tests" / "fixtures" / "elements"
ELEMENT = "wdimage-test-cloud-standin"
NAME = "cloud-standin"
FILES = (f"{NAME}.qcow2", f"{NAME}.vmlinuz", f"{NAME}.initrd")
SUMS = "SHA256SUMS"


def standin_command(output: Path) -> dib.DibCommand:
    """`wdimage build debian`'s DIB command with the watchdog element swapped for the stand-in element."""
    settings = build.make_settings("debian", output=output / "unused")
    layout = dib.Layout.DIRECT
    inputs = build.write_inputs(settings, layout)
    env = []
    for key, value in build.dib_environment(settings, inputs):
        if key == "ELEMENTS_PATH":
            value = f"{value}:{ELEMENTS}"
        if not key.startswith("DIB_WATCHDOG"):
            env.append((key, value))
    elements = (*settings.spec.elements, *dib.layout_elements(layout), "wdimage-slim", ELEMENT)
    return dib.DibCommand(env=tuple(env), elements=elements, output=output / NAME, skip_base=settings.spec.skip_base)


def standin_key(elements: Path = ELEMENTS) -> str:
    placeholder = Path("/<output>")
    command = str(standin_command(placeholder)).replace(str(REPO), "<repo>")
    command = " ".join(w for w in command.split() if not w.startswith("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"))
    digest = hashlib.sha256(command.encode() + _tool_versions().encode())
    for top in (elements / ELEMENT, REPO / "elements" / "wdimage-slim"):
        for path in sorted(p for p in top.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(top.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _intact(directory: Path) -> bool:
    return (directory / SUMS).is_file() and subprocess.run(
        ["sha256sum", "--quiet", "-c", SUMS], cwd=directory, capture_output=True).returncode == 0


def cached_standin() -> Path:
    """The directory holding the stand-in's image, kernel and initrd (FILES), built once per key."""
    key = f"standin-{standin_key()}"
    base = cache_dir() / "test-builds"
    base.mkdir(parents=True, exist_ok=True)
    output = base / key / NAME
    with open(base / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _intact(output):
            os.utime(output.parent)
        else:
            output.parent.mkdir(exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{NAME}.partial-", dir=output.parent))
            try:
                standin_command(staging).run()
                shutil.rmtree(staging / f"{NAME}.d", ignore_errors=True)
                subprocess.run(f"sha256sum {' '.join(FILES)} > {SUMS}", shell=True, cwd=staging, check=True)
                shutil.rmtree(output, ignore_errors=True)
                staging.rename(output)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    _prune(base, keep=key)
    return output
