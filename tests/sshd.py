"""A throwaway sshd on 127.0.0.1 for the real tests: libvirt's remote transport (qemu+ssh://) to a private libvirtd
on this machine, as an operator reaches another hypervisor.

Everything is generated in a private directory: the host key, a client key pair (authorized for root), the
sshd_config (a free port on 127.0.0.1 only, keys only, no PAM), and an ssh wrapper that libvirt runs
(`command=` in the URI) so that the host key is recorded in that directory's known_hosts, never in the user's
~/.ssh. sshd needs its privilege-separation directory /run/sshd; it is created if missing and removed again.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it must be started by its absolute path
PRIVSEP = Path("/run/sshd")

CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {base}/host_key
AuthorizedKeysFile {base}/authorized_keys
PidFile {base}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawaySshd:
    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="wdimage-sshd-"))
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self._made_privsep = False

    @property
    def key(self) -> Path:
        return self.base / "id_ed25519"

    @property
    def ssh_command(self) -> Path:
        return self.base / "ssh"

    def libvirt_uri(self, socket_path: Path) -> str:
        """qemu+ssh:// to the libvirtd listening on `socket_path` of this machine, through this sshd."""
        return (f"qemu+ssh://root@127.0.0.1:{self.port}/system?socket={socket_path}&keyfile={self.key}"
                f"&no_verify=1&proxy=netcat&command={self.ssh_command}")

    def start(self) -> "ThrowawaySshd":
        if not Path(SSHD).exists():
            raise RuntimeError("not installed: openssh-server (make deps installs it)")
        os.chmod(self.base, 0o700)
        for name in ("host_key", "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.base / name)], check=True)
        shutil.copy(self.base / "id_ed25519.pub", self.base / "authorized_keys")
        (self.base / "sshd_config").write_text(CONFIG.format(port=self.port, base=self.base))
        self.ssh_command.write_text(f"#!/bin/sh\nexec ssh -o UserKnownHostsFile={self.base}/known_hosts "
                                    f"-o BatchMode=yes \"$@\"\n")
        self.ssh_command.chmod(0o700)
        if not PRIVSEP.exists():
            PRIVSEP.mkdir(mode=0o755)
            self._made_privsep = True
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.base / "sshd_config")],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(self.base / "sshd.log", "wb"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.base / 'sshd.log').read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("sshd did not listen within 15s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._made_privsep:
            shutil.rmtree(PRIVSEP, ignore_errors=True)
            self._made_privsep = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "ThrowawaySshd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
