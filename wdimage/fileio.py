"""Writing a file so that no reader ever sees half of it: a temporary file beside it, renamed over it."""

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` (text is written as UTF-8), with permissions `mode`. The temporary file
    (`.NAME.*.tmp` in the same directory) is removed again if anything fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """Where wdimage keeps what it can make again: ${WDIMAGE_CACHE:-~/.cache/wdimage}."""
    return Path(os.environ.get("WDIMAGE_CACHE") or Path.home() / ".cache" / "wdimage")


def default_mode() -> int:
    """The mode a new file gets from open(): 0666 less the process's umask (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
