"""The QMP client against exchanges recorded from a real QEMU 7.2, replayed over a real socketpair."""

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from wdimage.vm.jsonstream import JsonStream, ProtocolError
from wdimage.vm.qmp import QmpClient, event_time

RECORDINGS = Path(__file__).parent / "recordings"


class QmpReplay:
    """The QEMU side of a recorded exchange: checks each request the client sends, then sends what QEMU sent."""

    def __init__(self, recording: list[tuple[str, str]]):
        self.client_sock, self._server = socket.socketpair()
        self.mismatches: list[str] = []
        self._thread = threading.Thread(target=self._play, args=(recording,), daemon=True)
        self._thread.start()

    def _play(self, recording) -> None:
        reader = self._server.makefile("rb")
        for direction, data in recording:
            if direction == "recv":
                self._server.sendall(data.encode())
            else:
                got = reader.readline()
                if json.loads(got) != json.loads(data):
                    self.mismatches.append(f"expected {data!r}, client sent {got!r}")
                    break
        self._server.shutdown(socket.SHUT_WR)

    def client(self) -> QmpClient:
        return QmpClient(JsonStream(self.client_sock))

    def finish(self) -> list[str]:
        self._thread.join(5)
        return self.mismatches


def load(name: str) -> list[tuple[str, str]]:
    return [tuple(entry) for entry in json.loads((RECORDINGS / name).read_text())]


def test_bare_qemu_session_commands_and_events():
    replay = QmpReplay(load("qmp-bare-qemu-7.2.json"))
    qmp = replay.client()
    qmp.negotiate()
    assert qmp.greeting["QMP"]["version"]["qemu"]["major"] == 7
    assert qmp.execute("query-status")["status"] == "running"
    qmp.execute("stop")
    qmp.execute("cont")
    qmp.execute("system_reset")
    # Events that arrived before a command's answer are kept, in order, for wait_event.
    assert [e["event"] for e in qmp.events] == ["STOP", "RESUME", "RESET"]
    reset = qmp.wait_event({"RESET"}, time.monotonic() + 1)
    assert reset["data"]["reason"] == "host-qmp-system-reset"
    assert event_time(reset) == pytest.approx(1795550163.018317)
    assert [e["event"] for e in qmp.events] == ["STOP", "RESUME"]
    with pytest.raises(ProtocolError, match="CommandNotFound"):
        qmp.execute("no-such-command")
    qmp.execute("quit")
    assert [e["event"] for e in qmp.events][-1] == "SHUTDOWN"
    assert replay.finish() == []


def test_wait_event_returns_none_when_qemu_goes_away():
    replay = QmpReplay(load("qmp-bare-qemu-7.2.json")[:3])  # greeting and capabilities, then EOF
    qmp = replay.client()
    qmp.negotiate()
    assert qmp.wait_event({"WATCHDOG"}, time.monotonic() + 5) is None
    assert replay.finish() == []


def test_wait_event_times_out():
    recording = load("qmp-bare-qemu-7.2.json")[:3]
    client_sock, server = socket.socketpair()
    for _, data in recording[:1]:
        server.sendall(data.encode())
    qmp = QmpClient(JsonStream(client_sock))
    qmp._stream.receive(time.monotonic() + 1)  # the greeting
    start = time.monotonic()
    assert qmp.wait_event({"WATCHDOG"}, start + 0.3) is None
    assert 0.25 < time.monotonic() - start < 2
    server.close()


def test_garbage_is_a_protocol_error_not_a_crash():
    client_sock, server = socket.socketpair()
    server.sendall(b"this is not json\r\n")
    qmp = QmpClient(JsonStream(client_sock))
    with pytest.raises(ProtocolError, match="not a JSON message"):
        qmp.negotiate(timeout=1)
    server.close()


def test_a_greeting_that_is_not_qmp_is_refused():
    client_sock, server = socket.socketpair()
    server.sendall(b'{"return": {}}\n')
    with pytest.raises(ProtocolError, match="not a QMP greeting"):
        QmpClient(JsonStream(client_sock)).negotiate(timeout=1)
    server.close()


def test_recorded_watchdog_reset_after_a_sysrq_crash():
    """The Debian guest crashed through SysRq with its daemon holding i6300esb (timeout 15 s, action reset)."""
    replay = QmpReplay(load("qmp-watchdog-reset-7.2.json"))
    qmp = replay.client()
    qmp.negotiate()
    event = qmp.wait_event({"WATCHDOG"}, time.monotonic() + 5)
    assert event["data"] == {"action": "reset"}
    assert qmp.execute("query-status")["status"] == "running"  # reset, not paused: the guest reboots in place
    resets = [e for e in qmp.events if e["event"] == "RESET"]
    assert resets and all(e["data"]["reason"] == "guest-reset" for e in resets)
    assert event_time(resets[0]) - event_time(event) == pytest.approx(0.005, abs=0.005)
    assert replay.finish() == []


def test_recorded_qmp_events_become_guest_events_with_qemus_timestamps():
    from wdimage.models import Action
    from wdimage.vm.guest import EventKind
    from wdimage.vm.qemu_guest import to_event

    replay = QmpReplay(load("qmp-watchdog-reset-7.2.json"))
    qmp = replay.client()
    qmp.negotiate()
    qmp.execute("query-status")
    events = [to_event(m) for m in qmp.events]
    assert [(e.kind, e.action, e.reason) for e in events] == [
        (EventKind.WATCHDOG, "reset", None), (EventKind.RESET, None, "guest-reset"),
        (EventKind.RESET, None, "guest-reset")]
    assert events[0].action is Action.RESET  # QMP's word, typed
    assert events[0].time == pytest.approx(1795551163.339295)
    assert str(events[0]) == "WATCHDOG reset" and str(events[1]) == "RESET guest-reset"
    assert replay.finish() == []


def test_a_watchdog_action_this_wdimage_does_not_know_is_no_action():
    from wdimage.models import Action
    from wdimage.vm.qemu_guest import to_event

    known = to_event({"event": "WATCHDOG", "data": {"action": "inject-nmi"}, "timestamp": {"seconds": 1}})
    unknown = to_event({"event": "WATCHDOG", "data": {"action": "self-destruct"}, "timestamp": {"seconds": 1}})
    assert known.action is Action.INJECT_NMI and unknown.action is None
    assert to_event({"event": "RESET", "data": {"reason": "guest-reset"}}).action is None


def test_an_event_written_just_before_qemu_exited_is_still_seen():
    """Action poweroff: QEMU writes the WATCHDOG event and exits at once. A guest that finds QEMU gone must
    read what is left in the socket before it says nothing came (seen once in make test: "no WATCHDOG event
    within 30s of the fault; status: exited" after an ib700 poweroff)."""
    from wdimage.vm.guest import EventKind
    from wdimage.vm.qemu_guest import QemuGuest

    client_sock, server = socket.socketpair()
    watchdog = {"event": "WATCHDOG", "data": {"action": "poweroff"}, "timestamp": {"seconds": 5, "microseconds": 0}}
    shutdown = {"event": "SHUTDOWN", "data": {"guest": False, "reason": "host-signal"},
                "timestamp": {"seconds": 5, "microseconds": 10}}
    server.sendall((json.dumps(watchdog) + "\n" + json.dumps(shutdown) + "\n").encode())
    server.close()  # QEMU is gone

    class Exited:
        qmp = QmpClient(JsonStream(client_sock))

        def alive(self) -> bool:
            return False

    guest = QemuGuest.__new__(QemuGuest)  # no QEMU: only its event bookkeeping
    guest.process, guest._events = Exited(), []
    event = guest.wait_event({EventKind.WATCHDOG, EventKind.EXITED}, time.monotonic() + 5)
    assert event is not None and event.kind is EventKind.WATCHDOG and event.action == "poweroff", event
    assert guest.wait_event({EventKind.WATCHDOG}, time.monotonic() + 5) is None  # nothing more, and no hang
