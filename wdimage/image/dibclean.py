"""Undo what an interrupted (or failed) diskimage-builder run left in its private temporary directory.

DIB builds under TMP_DIR (wdimage.image.dib gives each run a private one): a tmpfs, the image's chroot with
/proc, /sys, /dev and the apt cache bind-mounted into it, a loop device on the image file. DIB's own
cleanup normally undoes all of it; when it could not finish, this does: detach loop devices whose backing
file is under the directory, unmount every mount point under it (deepest first), then remove it. It never
removes a directory that still has something mounted under it: that would delete through a bind mount.
"""

import json
import re
import shutil
from pathlib import Path

from wdimage import log
from wdimage.run import run_quiet


def _unescape(field: str) -> str:
    """/proc/self/mountinfo octal-escapes space, tab, newline and backslash."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(directory: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points at or below `directory`, deepest first."""
    root = str(Path(directory).resolve())
    found = []
    for line in mountinfo.read_text().splitlines():
        point = _unescape(line.split(" ")[4])
        if point == root or point.startswith(root + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def loops_under(directory: Path) -> list[str]:
    """Loop devices whose backing file lies below `directory`."""
    root = str(Path(directory).resolve())
    out = run_quiet(["losetup", "--json", "--list"]).stdout
    try:
        devices = json.loads(out or "{}").get("loopdevices", [])
    except ValueError:
        return []
    return [d["name"] for d in devices
            if str(d.get("back-file") or "").split(" (deleted)")[0].startswith(root + "/")]


def clean_scratch(directory: Path) -> None:
    """Unmount, detach and remove `directory` (see the module's docstring)."""
    directory = Path(directory)
    if not directory.exists():
        return
    for device in loops_under(directory):  # first: a loop device keeps its image's file system busy
        log.info(f"detaching {device}, left attached by diskimage-builder")
        run_quiet(["losetup", "--detach", device])
    for point in mounts_under(directory):
        log.info(f"unmounting what diskimage-builder left mounted: {point}")
        if run_quiet(["umount", str(point)]).returncode != 0:
            run_quiet(["umount", "--lazy", str(point)])
    left = mounts_under(directory)
    if left:
        log.info(f"left {directory} in place: still mounted there: {', '.join(map(str, left))}")
        return
    shutil.rmtree(directory, ignore_errors=True)
