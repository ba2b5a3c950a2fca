"""Files wdimage writes: atomically and durably, never over something of the user's.

write_atomically: a temporary file beside the target, fsynced, renamed over it, the directory fsynced.
check_replaceable: a target that exists is replaced only when wdimage wrote it (wdimage.jsonfile's kinds say
which JSON documents are; wdimage.image.outputs.check_output_dir does the same for output directories).
"""

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from wdimage.errors import usage_error


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` (text is written as UTF-8), with permissions `mode`: no reader ever sees
    half of it, and once this returns it survives a crash (file and directory fsynced). The temporary file
    (`.NAME.*.tmp` in the same directory) is removed again if anything fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or creation inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_dir() -> Path:
    """Where wdimage keeps what it can make again: ${WDIMAGE_CACHE:-~/.cache/wdimage}."""
    return Path(os.environ.get("WDIMAGE_CACHE") or Path.home() / ".cache" / "wdimage")


def private_cache_dir(path: Path) -> Path:
    """`path` as a directory only this user can write (created 0700): refuse one that another user owns or
    that group or others can write, since what wdimage reads back from it (pickles) must be its own."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise usage_error(f"{path}: wdimage's cache must be a directory, not a symbolic link or file")
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise usage_error(f"{path}: the cache directory is writable by other users (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}); wdimage will not load "
                          "what others could have written there",
                          hint=f"chmod 0700 {path} (if it is yours), or set WDIMAGE_CACHE to a private directory")
    return path


def default_mode() -> int:
    """The mode a new file gets from open(): 0666 less the process's umask (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# --- never overwrite what the user made ----------------------------------------------------------------------

def check_replaceable(path: Path, option: str, is_ours: Callable[[Path], bool], what: str,
                      force: bool = False) -> None:
    """Exit 2, naming `option` and `path`, unless `path` is absent or a regular file that `is_ours` says
    wdimage wrote (a previous report, ...). `force`: the user means it; anything but a directory goes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not Path(path).parent.is_dir():
            raise usage_error(f"{option} {path}: directory {Path(path).parent} does not exist") from None
        return
    if stat.S_ISDIR(st.st_mode):
        raise usage_error(f"{option} {path}: is a directory")
    if force:
        return
    if stat.S_ISLNK(st.st_mode):
        raise usage_error(f"{option} {path}: is a symbolic link; wdimage does not write through it",
                          hint="name the file itself, or pass --force to replace the link")
    if not stat.S_ISREG(st.st_mode) or not is_ours(Path(path)):
        raise usage_error(f"{option} {path}: exists and is not {what}; wdimage will not overwrite it",
                          hint="choose another file, or pass --force to replace it")

