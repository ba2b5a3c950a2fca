"""The guest-agent client against exchanges recorded from qemu-ga 7.2 in the built Debian guest, replayed over
a real socketpair; and its resynchronisation, driven by an agent that answers late in the recorded format."""

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from wdimage.drill import runner as drill
from wdimage.vm.jsonstream import SENTINEL, JsonStream, ProtocolError
from wdimage.vm.qga import GuestAgent

RECORDINGS = Path(__file__).parent / "recordings"


def load(name: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1") if "\xff" in v else v.encode()) for k, v in
            json.loads((RECORDINGS / name).read_text())]


def request(data: bytes) -> dict:
    return json.loads(data.lstrip(SENTINEL))


class Replay:
    """The agent side of a recording: checks each request, answers with what the agent answered."""

    def __init__(self, recording):
        self.client_sock, self._server = socket.socketpair()
        self.mismatches: list[str] = []
        self._thread = threading.Thread(target=self._play, args=(recording,), daemon=True)
        self._thread.start()

    def _play(self, recording):
        reader = self._server.makefile("rb")
        for direction, data in recording:
            if direction == "recv":
                self._server.sendall(data)
            elif request(got := reader.readline()) != request(data):
                self.mismatches.append(f"expected {data[:120]!r}, got {got[:120]!r}")
                break
        self._server.shutdown(socket.SHUT_WR)

    def finish(self):
        self._thread.join(5)
        return self.mismatches


def test_recorded_probe_error_and_exit_code():
    recording = load("qga-exec-7.2.json")
    replay = Replay(recording)
    agent = GuestAgent(JsonStream(replay.client_sock), synced=True)
    recorded_argv = request(recording[0][1])["arguments"]["arg"]  # the probe script as it was when recorded
    assert recorded_argv[0] == "-c" and recorded_argv[2:] == ["sh", "i6300esb"]
    probe = agent.shell(recorded_argv[1], "i6300esb")
    assert probe.exitcode == 0
    checks = drill.evaluate_checks(drill.parse_sections(probe.stdout), drill.Model.I6300ESB, 15)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    with pytest.raises(ProtocolError, match="No such file or directory"):
        agent.exec(["/nonexistent/program"])
    result = agent.exec(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exitcode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert replay.finish() == []


class LateAgent:
    """An agent that starts after `silent` requests have queued up (the guest was still booting), then answers
    every queued request as qemu-ga 7.2 did: an error line for the 0xFF byte, then 0xFF and the echoed id."""

    def __init__(self, silent: int):
        recorded = dict(load("qga-sync-at-boot-7.2.json"))["recv"]  # a recorded answer chunk
        self.parse_error = next(line for line in recorded.split(b"\n") if b"JSON parse error" in line) + b"\n"
        self.client_sock, self._server = socket.socketpair()
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, args=(silent,), daemon=True)
        self._thread.start()

    def _serve(self, silent):
        reader = self._server.makefile("rb")
        queued = []
        for line in reader:
            self.requests += 1
            queued.append(request(line))
            if self.requests <= silent:
                continue
            for req in queued:
                answer = {"return": req["arguments"]["id"]}
                self._server.sendall(self.parse_error + SENTINEL + json.dumps(answer).encode() + b"\n")
            queued = []


def test_sync_waits_for_a_late_agent_and_skips_stale_answers():
    late = LateAgent(silent=3)
    agent = GuestAgent(JsonStream(late.client_sock))
    agent.sync(timeout=10, attempt_timeout=0.3)
    assert late.requests >= 4  # three attempts went unanswered, a later one found the agent
    # the three stale answers came before ours and were skipped; the stream is clean for the next command
    assert agent._stream._buffer == b""


def test_sync_gives_up_at_its_deadline():
    late = LateAgent(silent=10**6)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer within"):
        GuestAgent(JsonStream(late.client_sock)).sync(timeout=0.5, attempt_timeout=0.1)
    assert time.monotonic() - start < 3


def test_a_timed_out_command_resyncs_before_the_next():
    client, server = socket.socketpair()
    agent = GuestAgent(JsonStream(client), synced=True)
    reader = server.makefile("rb")

    def agent_side():
        assert request(reader.readline())["execute"] == "guest-info"
        time.sleep(0.4)  # too late for the client's timeout
        server.sendall(b'{"return": {"version": "7.2.22"}}\n')
        sync = request(reader.readline())
        assert sync["execute"] == "guest-sync-delimited"
        server.sendall(SENTINEL + json.dumps({"return": sync["arguments"]["id"]}).encode() + b"\n")
        assert request(reader.readline())["execute"] == "guest-ping"
        server.sendall(b'{"return": {}}\n')

    thread = threading.Thread(target=agent_side, daemon=True)
    thread.start()
    with pytest.raises(TimeoutError):
        agent.execute("guest-info", timeout=0.2)
    time.sleep(0.5)  # the late answer is now waiting in the socket
    assert agent.execute("guest-ping", timeout=5) == {}  # not the late guest-info answer
    thread.join(5)
