"""A private libvirtd (with its virtlogd) for the real tests, started and stopped by the tests themselves.

There is no systemd here, and the machine is shared. libvirtd running as root is the "system" daemon: its
paths (/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt) are compiled in,
and no option moves them all (`libvirtd -f` moves only its own config file). So both daemons run in a mount
namespace of their own (`unshare --mount --propagation private`) in which a private directory is bind-mounted
over each of those paths: their sockets, pid files, domain definitions and logs all live under one temporary
directory, and a libvirtd of the machine's (if any) is neither seen nor disturbed. Clients outside the
namespace reach the daemon through its socket there: `qemu:///system?socket=DIR/run/libvirt-sock`. The QEMU
processes it starts inherit the namespace; the images' host paths are the same inside.

Private configuration: QEMU runs as root with no security driver and no file relabelling (the tests' scratch
files are root's), no cgroup controllers (there is no systemd to delegate them), logs to files.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# The compiled-in paths of Debian's libvirt 9.0, each replaced by a private directory in the namespace.
SYSTEM_PATHS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
                "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}
DAEMONS = ("libvirtd", "virtlogd")

LIBVIRTD_CONF = 'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "logd"
"""

# Runs inside the namespace: bind the private directories, start virtlogd (it daemonises; its pid file, like
# libvirtd's, defaults to /run/NAME.pid outside the private paths, hence -p), then become libvirtd in the
# foreground so that its pid is the one we started.
_START = """\
set -eu
base=$1
for pair in etc=/etc/libvirt run=/run/libvirt lib=/var/lib/libvirt cache=/var/cache/libvirt log=/var/log/libvirt; do
    mkdir -p "${pair#*=}"
    mount --bind "$base/${pair%%=*}" "${pair#*=}"
done
virtlogd -d -p /run/libvirt/virtlogd.pid
exec libvirtd -p /run/libvirt/libvirtd.pid
"""


class PrivateLibvirtd:
    """`with PrivateLibvirtd() as daemon:` -> daemon.uri; on exit its domains are destroyed and it stops."""

    def __init__(self, base: Path | None = None, start_timeout: float = 30):
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="wdimage-libvirtd-"))
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.seconds_to_start = 0.0

    @property
    def socket(self) -> Path:
        return self.base / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def log(self, daemon: str = "libvirtd") -> str:
        try:
            return (self.base / "log" / f"{daemon}.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> "PrivateLibvirtd":
        missing = [d for d in (*DAEMONS, "unshare", "virsh") if shutil.which(d) is None]
        if missing:
            raise RuntimeError(f"not installed: {', '.join(missing)} (make deps installs libvirt)")
        for name in SYSTEM_PATHS:
            (self.base / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o700)
        (self.base / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (self.base / "etc" / "virtlogd.conf").write_text(VIRTLOGD_CONF)
        (self.base / "etc" / "qemu.conf").write_text(QEMU_CONF)
        started = time.monotonic()
        with open(self.base / "daemons.out", "wb") as out:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", _START, "sh", str(self.base)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = started + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._stop_virtlogd()
                raise RuntimeError(f"libvirtd exited with {self.process.returncode}: "
                                   f"{(self.base / 'daemons.out').read_text(errors='replace')}{self.log()[-2000:]}")
            if self.socket.exists() and subprocess.run(["virsh", "-c", self.uri, "version"],
                                                       capture_output=True).returncode == 0:
                self.seconds_to_start = time.monotonic() - started
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"libvirtd did not answer on {self.socket} within {self.start_timeout:.0f}s")

    def stop(self) -> None:
        """Destroy the domains it runs (libvirtd leaves them running when it exits), stop both daemons."""
        if self.process is None:
            return
        if self.process.poll() is None:
            listing = subprocess.run(["virsh", "-c", self.uri, "list", "--name"], capture_output=True, text=True)
            for name in listing.stdout.split():
                subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pidfile in (self.base / "run" / "qemu").glob("*.pid"):  # a domain it could not destroy
            _kill_pidfile(pidfile, "qemu-system")
        self._stop_virtlogd()
        self.process = None

    def _stop_virtlogd(self) -> None:
        _kill_pidfile(self.base / "run" / "virtlogd.pid", "virtlogd")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PrivateLibvirtd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _kill_pidfile(pidfile: Path, expected: str) -> None:
    """SIGTERM the process a pid file names, if it is still the one we started (its name starts as expected)."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return
    if not comm.startswith(expected[:15]):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
