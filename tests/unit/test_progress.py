"""No silent stretch: diskimage-builder's phases read from its log as it grows (a real DIB 3.43.0 log of a
Debian build, its phase lines kept), the heartbeat of a wait that says what it waits for and for how long, and
the bar of a count (the audit's domains)."""

import io
import sys
import threading
import time
from pathlib import Path

import pytest

from wdimage import log
from wdimage.image import dibprogress
from wdimage.image.dibprogress import DibProgress

RECORDING = Path(__file__).parent / "recordings" / "dib-debian-bookworm.log"


def _messages(lines) -> list[str]:
    progress = DibProgress()
    return [m for line in lines for m in progress.feed(line)]


def test_each_phase_is_a_step_with_its_time_and_the_slow_scripts_are_named():
    said = _messages(RECORDING.read_text().splitlines())
    phases = [m[2:] for m in said if m.startswith("‣ ") and m.endswith(".d")]
    assert phases == ["root.d", "extra-data.d", "pre-install.d", "install.d", "post-install.d", "finalise.d",
                      "cleanup.d"]
    assert "  root.d done in 18.7s" in said and "  install.d done in 18.4s" in said
    assert "    75-debian-minimal-baseinstall: 17.0s" in said
    assert "    01-package-installs: 13.8s" in said
    assert not any("08-debootstrap: 0" in m or "99-clean-up-cache" in m for m in said)  # fast ones are left out
    assert said.index("‣ converting the image (qemu-img convert)") < said.index("‣ diskimage-builder finished")
    # every phase that started ended, in order
    assert [m.split()[0] for m in said if m.endswith("s") and "done in" in m] == phases


def test_lines_without_dib_stamps_or_with_noise_say_nothing():
    assert _messages(["", "random text", "2026-12-07 07:19:46.005 | Installing new version of config file x",
                      "dib-run-parts Running /x/root.d/08-debootstrap"]) == []


def test_follow_reads_the_log_as_it_grows_and_fills_quiet_stretches(tmp_path):
    logfile = tmp_path / "dib.log"
    lines = RECORDING.read_text().splitlines(keepends=True)
    said: list[tuple[float, str]] = []
    start = time.monotonic()

    def writer():
        time.sleep(0.3)  # the log does not exist yet when following starts
        with logfile.open("w") as f:
            for line in lines[:6]:
                f.write(line)
                f.flush()
            time.sleep(1.0)  # a quiet stretch inside a long script: the heartbeat speaks
            for line in lines[6:]:
                f.write(line)
            f.flush()

    with dibprogress.follow(logfile, say=lambda m: said.append((time.monotonic() - start, m)), heartbeat=0.4,
                            poll=0.05):
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
    texts = [m for _, m in said]
    assert texts[0] == "‣ expanding the elements"
    assert "‣ diskimage-builder finished" in texts  # the tail was read after the block ended
    beats = [m for m in texts if m.startswith("  … ")]
    assert beats and all("root.d" in m for m in beats), texts
    gaps = [b - a for (a, _), (b, _) in zip(said, said[1:])]
    assert max(gaps) < 0.9, said


def test_a_wait_says_what_and_how_long_and_beats_until_it_ends(capsys, monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    with log.waiting("the WATCHDOG event", at_most=20, heartbeat=0.2):
        time.sleep(0.5)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "… waiting for the WATCHDOG event (at most 20s)"
    beats = [line for line in err[1:] if "still waiting for the WATCHDOG event" in line]
    assert len(beats) >= 2 and beats[0].endswith("of at most 20s")
    time.sleep(0.3)
    assert capsys.readouterr().err == ""  # no beat after the block ended


def test_quiet_silences_the_wait(capsys, monkeypatch):
    monkeypatch.setattr(log, "quiet", True)
    with log.waiting("anything", at_most=1, heartbeat=0.05):
        time.sleep(0.2)
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_count_is_a_bar_redrawn_in_place_on_a_terminal(monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with log.progress(3, "domains") as bar:
        threads = [threading.Thread(target=bar.advance, args=(f"vm{i} armed",)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    text = screen.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1  # one line, redrawn
    assert "[" + "#" * log.Progress.BAR + "] 3/3 domains" in text and "1/3 domains" in text


def test_a_bar_cut_short_ends_its_line(monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with pytest.raises(RuntimeError), log.progress(5, "domains") as bar:
        bar.advance("vm1 armed")
        raise RuntimeError("host gone")
    assert screen.getvalue().endswith("1/5 domains  vm1 armed\n")


def test_a_count_is_plain_lines_in_a_pipe_and_nothing_with_quiet(capsys, monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    with log.progress(2, "domains") as bar:
        bar.advance("web1 armed")
        bar.advance("db1 not-armed")
    assert capsys.readouterr().err.splitlines() == ["1/2 domains: web1 armed", "2/2 domains: db1 not-armed"]
    monkeypatch.setattr(log, "quiet", True)
    with log.progress(1, "domains") as bar:
        bar.advance("web1 armed")
    assert capsys.readouterr().err == ""
