"""Every subprocess goes through run(): it logs the command and raises a WdimageError on failure."""

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from wdimage import log
from wdimage.errors import failure


def run(
    cmd: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    capture: bool = False,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    argv = [str(c) for c in cmd]
    log.info(f"$ {shlex.join(argv)}")
    try:
        proc = subprocess.run(
            argv, env=env, cwd=cwd, text=True, input=input, timeout=timeout,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except FileNotFoundError:
        raise failure(f"{argv[0]} not found.", hint="run 'make deps' to install the system packages")
    if check and proc.returncode != 0:
        detail = f"\n{proc.stderr.strip()}" if capture and proc.stderr else ""
        raise failure(f"command failed with exit code {proc.returncode}: {shlex.join(argv)}{detail}")
    return proc
