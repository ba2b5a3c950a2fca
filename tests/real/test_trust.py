"""Trust, for real: wdimage installed as users install it (a wheel in a fresh virtual environment) builds and
drills an image; real builds interrupted at three points and a real drill interrupted during its fault leave
nothing behind, and the next run succeeds. One test, so that the installed tool's build is also the build that
must succeed after the interrupted ones (one DIB build fewer than two tests would make).

These builds use a DIB image cache of their own (${WDIMAGE_CACHE}/test-dib-trust), so that they neither
wait for nor disturb other builds on the machine; its debootstrap tarball makes later runs warm. The phase
of a build is found by watching DIB's own log and the process tree, never by sleeping blindly.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from wdimage.fileio import cache_dir
from wdimage.image import dibclean

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.real
BUILD_SECONDS = 900  # a cold build here takes about 2 minutes; other builds may load the machine


def _private_dib_cache() -> Path:
    path = cache_dir() / "test-dib-trust"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _short_tmpdir() -> Path:
    """A TMPDIR short enough for QEMU's unix socket paths (the drill would fall back to /tmp otherwise)."""
    return Path(tempfile.mkdtemp(prefix="wdt-", dir="/tmp"))


class Run:
    """A `wdimage` subprocess whose stderr is collected as it arrives."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.stderr: list[str] = []
        self._out: list[str] = []
        self.stdout = ""
        self._threads = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=self._read_out, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self._out.append(line)
        self.stdout = "".join(self._out)

    def stdout_so_far(self) -> str:
        return "".join(self._out)

    def text(self) -> str:
        return "".join(self.stderr)

    def dib_log(self) -> str:
        m = re.search(r"\(log: (\S+)\)", self.text())
        try:
            return Path(m.group(1)).read_text(errors="replace") if m else ""
        except OSError:
            return ""

    def wait_for(self, condition, what: str, seconds: float = BUILD_SECONDS) -> float:
        deadline = time.monotonic() + seconds
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"wdimage exited ({self.proc.returncode}) before {what}:\n{self.text()[-3000:]}\n"
                            f"{self.stdout_so_far()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {seconds} s:\n{self.text()[-3000:]}")
            time.sleep(0.2)
        return time.monotonic() - self.started

    def finish(self, seconds: float = BUILD_SECONDS) -> int:
        code = self.proc.wait(timeout=seconds)
        for t in self._threads:
            t.join(timeout=10)
        return code


def _processes_mentioning(marker: str) -> list[str]:
    """Processes whose command line, working directory or root lies under `marker` (QEMU, DIB, chroots)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            links = [os.readlink(f"/proc/{pid}/{link}") for link in ("cwd", "root")]
        except OSError:
            continue
        if int(pid) != os.getpid() and (marker in cmdline or any(link.startswith(marker) for link in links)):
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def _qemu_img_convert_running(marker: str) -> bool:
    return any("qemu-img" in p and "convert" in p for p in _processes_mentioning(marker))


def assert_nothing_left(*roots: Path) -> None:
    """No mount, loop device, process or file of ours under any of `roots`."""
    for root in roots:
        assert dibclean.mounts_under(root) == [], f"mounts left under {root}"
        assert dibclean.loops_under(root) == [], f"loop devices left under {root}"
        assert _processes_mentioning(str(root)) == [], f"processes left under {root}"
        assert list(root.iterdir()) == [], f"files left in {root}: {list(root.iterdir())}"


# --- interrupted builds ------------------------------------------------------------------------------------

def _interrupt_build(wdimage: list[str], env: dict[str, str], cwd: Path, tmp: Path, out: Path, dib_cache: Path,
                     when, what: str) -> tuple[float, float]:
    """Start a real build, SIGTERM it once `when(run, out)` holds; returns (seconds into the build, seconds
    its cleanup took). Checks the exit code and that nothing is left in TMPDIR `tmp` or in `out`."""
    out.mkdir(exist_ok=True)
    run = Run([*wdimage, "build", "debian", "--output", str(out / "img")], {**env, "DIB_IMAGE_CACHE": str(dib_cache)},
              cwd)
    at = run.wait_for(lambda: when(run, out), what)
    signalled = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code = run.finish(300)
    cleanup = time.monotonic() - signalled
    assert code == 143, run.text()[-3000:]
    assert "interrupted by SIGTERM" in run.text()
    assert_nothing_left(tmp, out)
    return at, cleanup


def _interrupted_builds_leave_nothing(wdimage: list[str], env: dict[str, str], cwd: Path, tmp: Path,
                                      scratch: Path) -> dict[str, tuple[float, float]]:
    """Real builds interrupted at three points (the build that must succeed after them is the caller's)."""
    timings = {}
    out = scratch / "interrupted"
    # 1. Before debootstrap finishes: a cold image cache, so that debootstrap runs.
    cold = scratch / "cold-dib-cache"
    cold.mkdir()
    timings["debootstrap"] = _interrupt_build(
        wdimage, env, cwd, tmp, out, cold,
        lambda run, out: re.search(r"root\.d/08-debootstrap[\s\S]*\| I: (Retrieving|Extracting)", run.dib_log()),
        "debootstrap")
    assert not list(cold.glob("debootstrap-*.tar.gz"))  # no half tarball taken for a finished one
    warm = _private_dib_cache()
    # 2. During the package installs (apt-get unpacking inside the chroot).
    timings["package installs"] = _interrupt_build(
        wdimage, env, cwd, tmp, out, warm,
        lambda run, out: re.search(r"install\.d/01-package-installs[\s\S]*> Unpacking ", run.dib_log()),
        "package installs")
    # 3. During the qcow2 conversion (qemu-img convert in the process tree, writing into the staging dir).
    timings["qcow2 conversion"] = _interrupt_build(
        wdimage, env, cwd, tmp, out, warm, lambda run, out: _qemu_img_convert_running(str(out)), "qemu-img convert")
    return timings


# --- the launch stub --------------------------------------------------------------------------------------

def _launch_stub_leaves_the_image_alone(out: Path, tmp: Path, env: dict[str, str]) -> None:
    """Boot the published image with its launch stub, as the README says, until systemd has remounted the
    root file system read-write (an ext4 rw mount alone rewrites its superblock), then stop it: the image
    still matches SHA256SUMS (its writes went to the -snapshot overlay), QEMU is gone, and the run
    directory the stub created is removed."""
    (stub,) = out.glob("run-*.sh")
    rundir = tmp / "stub-run"
    run = Run([str(stub)], {**env, "WDIMAGE_RUNDIR": str(rundir)}, out)
    deadline = time.monotonic() + 600
    while not re.search(r"login:|Reached target.*Multi-User", run.stdout_so_far()):
        assert run.proc.poll() is None, run.text()[-2000:] + run.stdout_so_far()[-2000:]
        assert time.monotonic() < deadline, run.stdout_so_far()[-2000:]
        time.sleep(0.5)
    assert rundir.is_dir() and (rundir / "qmp.sock").exists()
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(60) == 143
    assert not rundir.exists() and _processes_mentioning(str(out)) == []
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out).returncode == 0


# --- installed as users install it -------------------------------------------------------------------------

def test_installed_wheel_builds_and_drills_and_interruptions_leave_nothing(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
                   check=True, cwd=tmp_path)
    (wheel,) = dist.glob("wdimage-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # not --system-site-packages
    subprocess.run([venv / "bin" / "pip", "install", "-q", str(wheel)], check=True, cwd=tmp_path)
    wdimage = str(venv / "bin" / "wdimage")
    # The installed package, not this checkout: its elements and fragments live in the venv.
    where = subprocess.run([venv / "bin" / "python", "-c", "import wdimage, wdimage.datadir as d; "
                            "print(wdimage.__file__); print(d.elements_dir()); print(d.find('kconfig-fragments', "
                            "'watchdog.config'))"], capture_output=True, text=True, check=True, cwd=work)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout

    tmp = _short_tmpdir()
    try:
        env = {**os.environ, "DIB_IMAGE_CACHE": str(_private_dib_cache()), "TMPDIR": str(tmp),
               "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
        env.pop("VIRTUAL_ENV", None)
        timings = _interrupted_builds_leave_nothing([wdimage], env, work, tmp, tmp_path)
        print("interrupted at (s into the build, s of cleanup):", timings)

        # The next build succeeds, and publishes only the output.
        out = work / "output" / "debian-i6300esb"
        run = Run([wdimage, "build", "debian"], env, work)  # the default --output, relative to the cwd
        assert run.finish() == 0, run.text()[-3000:]
        assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out).returncode == 0
        assert list(work.iterdir()) == [work / "output"] and list(out.parent.iterdir()) == [out]
        assert list(tmp.iterdir()) == []

        _launch_stub_leaves_the_image_alone(out, tmp, env)

        # A drill interrupted during its fault: QEMU stopped, no socket, overlay or directory left.
        drill = Run([wdimage, "drill", str(out), "--fault", "panic"], env, work)
        drill.wait_for(lambda: re.search(r"'panic': SysRq crash|Fault 'panic'", drill.text()), "the panic fault",
                       seconds=900)
        time.sleep(2)  # the guest has crashed; the watchdog has not fired yet
        assert _processes_mentioning(str(tmp)), "expected the drill's QEMU to be running"
        drill.proc.send_signal(signal.SIGTERM)
        assert drill.finish(120) == 143, drill.text()[-3000:]
        assert_nothing_left(tmp)

        # The next drill succeeds, from the installed tool.
        report = work / "drill.json"
        drill = Run([wdimage, "drill", str(out), "--fault", "panic", "--json", str(report)], env, work)
        assert drill.finish(900) == 0, drill.text()[-3000:] + drill.stdout
        assert '"passed": true' in report.read_text()
        assert_nothing_left(tmp)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)])
