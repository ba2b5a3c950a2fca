"""The QEMU Machine Protocol client: commands answered by `id`, asynchronous events (`WATCHDOG`, `RESET`, ...)
kept in arrival order, each with QEMU's own wall-clock timestamp (event_time)."""

import itertools
import time
from typing import Any

from wdimage.vm.jsonstream import JsonStream, ProtocolError


class QmpClient:
    """QEMU Machine Protocol: commands answered by id, events kept in arrival order until taken."""

    def __init__(self, stream: JsonStream):
        self._stream = stream
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self.greeting: dict = {}

    def negotiate(self, timeout: float = 10) -> None:
        self.greeting = self._stream.receive(time.monotonic() + timeout)
        if "QMP" not in self.greeting:
            raise ProtocolError(f"not a QMP greeting: {self.greeting}")
        self.execute("qmp_capabilities", timeout=timeout)

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10) -> Any:
        request_id = f"wdimage-{next(self._ids)}"
        request: dict = {"execute": command, "id": request_id}
        if arguments:
            request["arguments"] = arguments
        self._stream.send(request)
        deadline = time.monotonic() + timeout
        while True:
            message = self._stream.receive(deadline)
            if "event" in message:
                self.events.append(message)
            elif message.get("id") == request_id:
                if "error" in message:
                    error = message["error"]
                    raise ProtocolError(f"QMP {command}: {error.get('class')}: {error.get('desc')}")
                return message.get("return")

    def wait_event(self, names: set[str], deadline: float) -> dict | None:
        """Take the first event named in `names`, reading until the deadline; None if none came.

        Other events stay in `events`. A closed connection (QEMU exited) ends the wait like the deadline.
        """
        while True:
            for i, event in enumerate(self.events):
                if event["event"] in names:
                    return self.events.pop(i)
            if not self.pump(deadline):
                return None

    def pump(self, deadline: float) -> bool:
        """Read one message, keeping it in `events` if it is one; False at the deadline or when QEMU closed the
        connection (it exited)."""
        try:
            message = self._stream.receive(deadline)
        except (TimeoutError, ConnectionError):
            return False
        if "event" in message:
            self.events.append(message)
        return True

    def close(self) -> None:
        self._stream.close()


def event_time(event: dict) -> float:
    """QEMU's wall-clock time of an event, as time.time() counts it."""
    stamp = event.get("timestamp", {})
    return stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
