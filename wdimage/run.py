"""Every subprocess goes through run() (it logs the command and raises a WdimageError on failure), or, for a
long command that must clean up after itself when wdimage is interrupted, run_group()."""

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from wdimage import log
from wdimage.errors import Interrupted, failure


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


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """While a cleanup runs, SIGINT/SIGTERM/SIGHUP are noted (in the yielded list), not raised: a second
    Ctrl-C must not cut short the cleanup the first one started. Main thread only."""
    noted: list[int] = []
    saved = {s: signal.getsignal(s) for s in _TERMINATING}
    for s, handler in saved.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, lambda signum, frame: noted.append(signum))
    try:
        yield noted
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


_TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_group(cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None, output: IO | None = None,
              cleanup_seconds: float = 300, spare: tuple[str, ...] = ()) -> int:
    """Run `cmd` in a process group of its own and return its exit code. When this process is interrupted
    (any exception while waiting, e.g. wdimage.errors.Interrupted or KeyboardInterrupt), the same signal
    goes to every process of the group (SIGTERM for other exceptions) except those whose command line
    contains one of `spare` (DIB's log filter: killed, it takes DIB's cleanup down with it by SIGPIPE),
    the command gets `cleanup_seconds` to clean up after itself (DIB unmounts what it mounted), whatever is
    left of the group is killed, and the exception goes on. Never SIGKILL first: that is what left DIB's
    mounts behind."""
    argv = [str(c) for c in cmd]
    log.info(f"$ {shlex.join(argv)}")
    proc = None
    try:
        with signals_deferred() as noted:  # a signal during Popen must not orphan a child that already runs
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                    start_new_session=True)
        if noted:
            raise Interrupted(noted[0])
        return proc.wait()
    except FileNotFoundError:
        if proc is not None:
            raise
        raise failure(f"{argv[0]} not found.", hint="run 'make deps' to install the system packages") from None
    except BaseException as e:
        if proc is None:
            raise
        signum = getattr(e, "signum", signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM)
        with signals_deferred():
            log.info(f"stopping {argv[0]} (sending {signal.Signals(signum).name} to its process group, "
                     f"waiting up to {cleanup_seconds:.0f} s for its cleanup) ...")
            for pid in group_members(proc.pid):
                if not any(word in _cmdline(pid) for word in spare):
                    _kill(pid, signum)
            try:
                proc.wait(timeout=cleanup_seconds)
            except subprocess.TimeoutExpired:
                log.info(f"{argv[0]} did not finish its cleanup in {cleanup_seconds:.0f} s: killing it")
            deadline = time.monotonic() + 10  # the spared ones finish on their own (a log filter at EOF)
            while group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
            proc.wait()
        raise


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (from /proc/PID/stat: the field after the state)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
