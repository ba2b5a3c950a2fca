"""The QEMU guest agent client (qemu-ga, a daemon inside the guest, reached through a virtio-serial channel).

The agent has no request ids: it answers in order, so after a timeout the stream is resynchronised with
`guest-sync-delimited` (wdimage.vm.jsonstream.SENTINEL). Programs run in the guest give a
wdimage.vm.guest.ExecResult.
"""

import base64
import random
import shlex
import time
from typing import Any

from wdimage.vm.guest import ExecResult
from wdimage.vm.jsonstream import SENTINEL, JsonStream, ProtocolError


class GuestAgent:
    """The QEMU guest agent (qemu-ga) inside the guest, reached through its virtio-serial channel."""

    def __init__(self, stream: JsonStream, synced: bool = False):
        self._stream = stream
        self._synced = synced  # False: the next command first resynchronises

    def sync(self, timeout: float, attempt_timeout: float = 1.0) -> None:
        """Resynchronise until the agent echoes our token: while the guest boots, nobody reads the channel.

        Every attempt uses a new token; answers to earlier attempts (read late) are skipped.
        """
        deadline = time.monotonic() + timeout
        while True:
            # Back off: nobody drains the channel while the guest boots, and a unix socket takes only about
            # 200 unread writes before sendall() blocks (a boot of minutes on a loaded host).
            attempt_timeout = min(attempt_timeout * 1.5, 10.0)
            token = random.randrange(1, 2**31)
            attempt_deadline = min(deadline, time.monotonic() + attempt_timeout)
            try:
                self._stream.send({"execute": "guest-sync-delimited", "arguments": {"id": token}}, prefix=SENTINEL,
                                  timeout=max(attempt_deadline - time.monotonic(), 0.01))
                while True:
                    self._stream.skip_past_sentinel(attempt_deadline)
                    if self._stream.receive(attempt_deadline).get("return") == token:
                        self._synced = True
                        return
            except (TimeoutError, ProtocolError):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the guest agent did not answer within {timeout:.0f}s") from None

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10) -> Any:
        if not self._synced:
            self.sync(timeout)
        request: dict = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._stream.send(request)
        try:
            message = self._stream.receive(time.monotonic() + timeout)
        except TimeoutError:
            self._synced = False  # a late answer would be taken for the next command's
            raise
        if "error" in message:
            error = message["error"]
            raise ProtocolError(f"guest agent {command}: {error.get('class')}: {error.get('desc')}")
        if "return" not in message:
            self._synced = False
            raise ProtocolError(f"guest agent {command}: unexpected answer {message}")
        return message["return"]

    def spawn(self, argv: list[str], capture: bool = True) -> int:
        """Start a program in the guest; its guest pid, for exec_status()."""
        arguments = {"path": argv[0], "arg": argv[1:], "capture-output": capture}
        return self.execute("guest-exec", arguments)["pid"]

    def exec_status(self, pid: int) -> ExecResult | None:
        status = self.execute("guest-exec-status", {"pid": pid})
        if not status.get("exited"):
            return None
        return ExecResult(
            exitcode=status.get("exitcode"),
            stdout=_decode(status.get("out-data", "")),
            stderr=_decode(status.get("err-data", "")),
            signal=status.get("signal"),
        )

    def exec(self, argv: list[str], timeout: float = 30) -> ExecResult:
        """Run a program in the guest to completion and return its exit code and output."""
        pid = self.spawn(argv)
        deadline = time.monotonic() + timeout
        while (result := self.exec_status(pid)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shlex.join(argv)} still running in the guest after {timeout:.0f}s")
            time.sleep(0.05)
        return result

    def shell(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        """Run a POSIX sh script in the guest; values go in as positional parameters, never into the text."""
        return self.exec(["/bin/sh", "-c", script, "sh", *args], timeout=timeout)

    def close(self) -> None:
        self._stream.close()


def _decode(data: str) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""
