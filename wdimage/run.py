"""Every subprocess of wdimage starts here:
- run(): logs the command and raises a WdimageError on failure;
- run_quiet(): for a command's output or exit code alone (a tool's version, a cleanup step): logs nothing,
  raises nothing;
- run_group(): a long command that must clean up after itself when wdimage is interrupted (DIB);
- start() / running(): a command that runs while wdimage does other things (QEMU, the kernel compile) and is
  stopped when wdimage is interrupted.
"""

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import threading
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
        raise _not_found(argv) from None
    if check and proc.returncode != 0:
        detail = f"\n{proc.stderr.strip()}" if capture and proc.stderr else ""
        raise failure(f"command failed with exit code {proc.returncode}: {shlex.join(argv)}{detail}")
    return proc


def _not_found(argv: list[str]):
    return failure(f"{argv[0]} not found.", hint="run 'make deps' to install the system packages")


def run_quiet(cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
              timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` with its output captured as text, for that output or the exit code alone: nothing logged,
    nothing raised. A command that cannot be started (not installed) exits 127, one still running after
    `timeout` seconds is killed and exits 124, as the shell and timeout(1) say; both with no output."""
    argv = [str(c) for c in cmd]
    try:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except OSError:
        return subprocess.CompletedProcess(argv, 127, "", "")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", "")


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """While a cleanup runs, SIGINT/SIGTERM/SIGHUP are noted (in the yielded list), not raised: a second
    Ctrl-C must not cut short the cleanup the first one started. Only the main thread receives signals: in
    another thread this changes nothing."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
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
        raise _not_found(argv) from None
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


class Child:
    """A command started by start(), running while wdimage does other things."""

    def __init__(self, proc: subprocess.Popen, argv: list[str]):
        self._proc = proc
        self.argv = argv
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code, None while it runs (as far as poll() or wait() last saw)."""
        return self._proc.returncode

    def poll(self) -> int | None:
        """Its exit code, None while it runs."""
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit code once it exits; None when it still runs after `timeout` seconds."""
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10, signum: int | None = signal.SIGTERM) -> int:
        """Send `signum` (None: send nothing, it was asked to exit some other way), give it `grace` seconds to
        exit, then SIGKILL it; its exit code. Signals that arrive meanwhile are deferred (signals_deferred)."""
        with signals_deferred():
            if signum is not None and self._proc.poll() is None:
                _kill(self.pid, signum)
            if self.wait(grace) is None:
                log.info(f"{self.argv[0]} did not exit within {grace:.0f} s: killing it")
                self._proc.kill()
            return self._proc.wait()


def start(cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None, output: IO | None = None,
          merge_stderr: bool = False, die_with_parent: bool = False) -> Child:
    """Start `cmd` (stdin from /dev/null, stdout and stderr to `output`, or stderr to stdout with
    `merge_stderr`) and return at once. The caller stops it (Child.stop, or running() does). A signal during
    the start is raised as Interrupted once the command runs, after stopping it. With `die_with_parent`, the
    kernel kills it when wdimage dies outright (SIGKILL, a CI timeout), where no cleanup of wdimage's runs."""
    argv = [str(c) for c in cmd]
    log.info(f"$ {shlex.join(argv)}")
    try:
        with signals_deferred() as noted:  # a signal during Popen must not orphan a child that already runs
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT if merge_stderr else output,
                                    preexec_fn=_die_with_parent if die_with_parent else None)
    except FileNotFoundError:
        raise _not_found(argv) from None
    child = Child(proc, argv)
    if noted:
        child.stop()
        raise Interrupted(noted[0])
    return child


@contextlib.contextmanager
def running(cmd: Sequence[str | Path], *, stop_grace: float = 30, **options) -> Iterator[Child]:
    """start() `cmd` for the body of a with statement; when the body raises (an interruption included), the
    command gets SIGTERM and `stop_grace` seconds to exit before SIGKILL, and the exception goes on. A
    command still running when the body ends normally is left to the caller (wait for it in the body)."""
    child = start(cmd, **options)
    try:
        yield child
    except BaseException:
        child.stop(grace=stop_grace)
        raise


def _die_with_parent() -> None:
    """In the child before exec: have the kernel SIGKILL it when its parent dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG (Linux)
    except Exception:  # not Linux, or no prctl in libc: the caller's own cleanup still stops the child
        pass
