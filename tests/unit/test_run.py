"""wdimage.run's quiet run and its long-running start, with real processes: what a caller gets when the command
is missing, hangs or ignores SIGTERM, and that a started command does not outlive wdimage. The signal forwarding
of run_group is in test_interrupt.py."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wdimage import run
from wdimage.errors import ExitCode, WdimageError


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_run_quiet_captures_the_output_and_logs_nothing(capsys):
    done = run.run_quiet(["sh", "-c", 'echo "out $FOO"; echo err >&2; exit 3'],
                         env={"FOO": "bar", "PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stdout, done.stderr) == (3, "out bar\n", "err\n")
    assert capsys.readouterr().err == ""


def test_run_quiet_gives_127_for_a_missing_command_and_124_for_a_timeout():
    assert run.run_quiet(["wdimage-no-such-command"]).returncode == 127
    began = time.monotonic()
    timed_out = run.run_quiet(["sh", "-c", "echo early; exec sleep 30"], timeout=0.5)  # exec: nothing orphaned
    assert (timed_out.returncode, timed_out.stdout) == (124, "")
    assert time.monotonic() - began < 10


def test_start_writes_to_the_output_and_logs_the_command(tmp_path, capsys):
    with open(tmp_path / "log", "w") as out:
        child = run.start(["sh", "-c", "echo out; echo err >&2"], output=out, merge_stderr=True)
    assert child.wait(timeout=10) == 0 and child.returncode == 0
    assert (tmp_path / "log").read_text() == "out\nerr\n"
    assert "$ sh -c 'echo out; echo err >&2'" in capsys.readouterr().err


def test_start_of_a_missing_command_says_how_to_get_it():
    with pytest.raises(WdimageError) as e:
        run.start(["wdimage-no-such-command"])
    assert e.value.code == ExitCode.FAILED and "not found" in e.value.message and "make deps" in e.value.hint


def test_wait_with_a_timeout_gives_none_while_it_runs():
    child = run.start(["sleep", "30"])
    try:
        assert child.wait(timeout=0.2) is None and child.poll() is None
    finally:
        assert child.stop(grace=5) == -signal.SIGTERM
    assert not _alive(child.pid)


def test_stop_kills_a_command_that_ignores_sigterm_after_the_grace(tmp_path):
    ready = tmp_path / "ready"
    child = run.start(["sh", "-c", f"trap '' TERM; echo 1 > {ready}; while :; do sleep 0.1; done"])
    _wait_for(ready)
    began = time.monotonic()
    assert child.stop(grace=1) == -signal.SIGKILL
    assert 1 <= time.monotonic() - began < 10


def test_stop_without_a_signal_waits_for_a_command_asked_to_exit_otherwise():
    child = run.start(["sleep", "0.5"])
    assert child.stop(grace=10, signum=None) == 0  # exits by itself within the grace: not signalled


def test_running_stops_the_command_when_the_body_raises(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with run.running(["sleep", "30"]) as child:
            raise KeyboardInterrupt
    assert child.returncode == -signal.SIGTERM and not _alive(child.pid)


def test_running_leaves_a_command_to_the_body_when_it_ends_normally():
    with run.running(["sh", "-c", "exit 7"]) as child:
        code = child.wait(timeout=10)
    assert code == 7


# A wdimage killed outright (SIGKILL: no cleanup of its own runs) whose started command must die with it.
PARENT = """\
import sys
from wdimage import run
child = run.start(["sleep", "300"], die_with_parent=sys.argv[2] == "yes")
open(sys.argv[1], "w").write(str(child.pid))
import time; time.sleep(300)
"""


@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_command_started_to_die_with_its_parent_does(tmp_path, die_with_parent):
    pid_file = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file), "yes" if die_with_parent else "no"],
                              cwd=os.getcwd(), stderr=subprocess.DEVNULL)
    try:
        _wait_for(pid_file)
        pid = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + (5 if die_with_parent else 1)  # the kernel's SIGKILL, or nothing
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(pid) != die_with_parent
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
