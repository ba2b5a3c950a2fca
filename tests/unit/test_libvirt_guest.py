"""wdimage.vm.libvirt_guest against libvirt's own in-process test driver (test:///default): real libvirt-python
and real libvirt XML handling, no daemon. The QEMU-driver side (agent, watchdog events) is in
tests/real/test_libvirt.py against a real libvirtd."""

import re
import time
from pathlib import Path

import pytest

from wdimage.errors import ExitCode, WdimageError
from wdimage.image import render
from wdimage.models import Action, Model
from wdimage.vm import libvirt_guest
from wdimage.vm.guest import Capability, EventKind, Unsupported

TEST_URI = "test:///default"


@pytest.fixture(autouse=True, scope="module")
def _keep_the_test_driver():
    """The test driver's state lives while a connection to it is open: hold one for these tests."""
    conn = libvirt_guest.connect(TEST_URI)
    yield
    conn.close()


def _define(name: str, model: Model = Model.I6300ESB, action: Action = Action.RESET) -> str:
    guest = render.GuestFiles(name=name, model=model, action=action, image="x.qcow2", kernel=None, initrd=None,
                              cmdline=None, agent=True)
    return libvirt_guest.define(TEST_URI, render.render_libvirt_xml(guest, Path("/srv"), "qemu"))


def test_the_domains_watchdog_as_libvirt_reports_it():
    target = libvirt_guest.LibvirtTarget(_define("wd-ib700", Model.IB700, Action.POWEROFF), TEST_URI)
    try:
        assert target.watchdog() == {"model": "ib700", "action": "poweroff"}
        assert Capability.LINK in target.capabilities
    finally:
        target.close()


def test_itco_through_qemu_commandline_is_recognised():
    """The test driver drops the QEMU namespace, so this reads the XML as written (libvirt's QEMU driver keeps it)."""
    guest = render.GuestFiles(name="wd-itco", model=Model.ITCO, action=Action.PAUSE, image="x.qcow2", kernel=None,
                              initrd=None, cmdline=None, agent=True)
    xml = render.render_libvirt_xml(guest, Path("/srv"), "qemu")
    assert libvirt_guest.watchdogs(xml) == []
    assert libvirt_guest.domain_watchdog(xml) == {"model": "itco", "action": "pause"}


def test_a_domain_without_watchdog():
    target = libvirt_guest.LibvirtTarget("test", TEST_URI)  # the test driver's own domain has none
    try:
        assert target.watchdog() is None
    finally:
        target.close()


def test_watchdog_without_action_is_libvirts_default_reset():
    xml = "<domain><devices><watchdog model='i6300esb'/></devices></domain>"
    assert libvirt_guest.watchdogs(xml) == [{"model": "i6300esb", "action": "reset"}]


def test_pause_and_resume_come_back_as_events():
    target = libvirt_guest.LibvirtTarget("test", TEST_URI)
    guest = target.boot()
    try:
        guest.clear_events()
        guest.pause()
        assert guest.status() == "paused"
        stop = guest.wait_event({EventKind.STOP}, time.monotonic() + 5)
        guest.resume()
        resume = guest.wait_event({EventKind.RESUME}, time.monotonic() + 5)
        assert stop is not None and stop.reason == "paused" and stop.action is None
        assert resume is not None and resume.time >= stop.time
        assert guest.status() == "running"
    finally:
        guest.close()
        target.close()


def test_link_is_unsupported_where_the_driver_cannot():
    target = libvirt_guest.LibvirtTarget("test", TEST_URI)
    guest = target.boot()
    try:
        with pytest.raises(Unsupported):
            guest.set_link(False)
    finally:
        guest.close()
        target.close()


def test_unknown_domain_and_unreachable_daemon_are_usage_errors(tmp_path):
    with pytest.raises(WdimageError) as e:
        libvirt_guest.LibvirtTarget("no-such-domain", TEST_URI)
    assert e.value.code == ExitCode.USAGE and "--libvirt no-such-domain" in e.value.message
    with pytest.raises(WdimageError) as e:
        libvirt_guest.LibvirtTarget("x", f"qemu:///system?socket={tmp_path}/none")
    assert e.value.code == ExitCode.USAGE and e.value.message.startswith("--connect ")


def test_boot_starts_a_shut_off_domain_and_times_it_but_never_restarts_a_running_one():
    running = libvirt_guest.LibvirtTarget("test", TEST_URI)
    off = libvirt_guest.LibvirtTarget(_define("wd-off"), TEST_URI)
    try:
        guest = running.boot()
        assert running.started_at is None and guest.status() == "running"  # already running: not ours to time
        guest.close()
        assert off.domain.isActive() == 0
        before = time.monotonic()
        guest = off.boot()
        assert off.started_at is not None and off.started_at >= before and guest.started_at == off.started_at
        assert guest.status() == "running"
        guest.close()  # one handle at a time: libvirt tracks one callback per event and domain on a connection
        again = off.attach()
        assert again.started_at == off.started_at  # a new handle on the same run
        again.close()
    finally:
        off.domain.destroy()
        running.close()
        off.close()


def test_a_later_boot_resets_the_domain_the_runner_left_unusable():
    """The runner boots again only after a scenario left the guest crashed, paused or off."""
    target = libvirt_guest.LibvirtTarget(_define("wd-reset"), TEST_URI)
    try:
        first = target.boot()
        first_start = target.started_at
        first.pause()  # as the watchdog's pause action leaves it
        first.close()
        again = target.boot()
        assert again.status() == "running" and target.started_at > first_start  # reset, and resumed
        again.close()
    finally:
        target.domain.destroy()
        target.close()


def test_libvirts_watchdog_and_pause_callbacks_give_typed_actions():
    """libvirt's virDomainEventWatchdogAction numbers become QEMU's Actions (models.py's rows); a number it may add
    later gives no action, and the raw text names it."""
    target = libvirt_guest.LibvirtTarget("test", TEST_URI)
    guest = target.boot()
    try:
        guest.clear_events()
        for number in (2, 4, 6, 9):
            guest._on_watchdog(None, None, number, None)
        guest._on_lifecycle(None, None, 3, 3, None)  # suspended, detail watchdog: the pause action
        events = guest.events()
        assert [(e.kind, e.action) for e in events] == [
            (EventKind.WATCHDOG, Action.RESET), (EventKind.WATCHDOG, Action.SHUTDOWN),
            (EventKind.WATCHDOG, Action.INJECT_NMI), (EventKind.WATCHDOG, None), (EventKind.STOP, Action.PAUSE)]
        assert str(events[0]) == "libvirt watchdog reset reset" and events[3].raw == "libvirt watchdog 9"
        assert events[4].reason == "watchdog"
    finally:
        guest.close()
        target.close()


def test_the_hypervisor_and_machine_for_the_report():
    """libvirt's own test driver: its hypervisor and versions in words; a domain naming no machine gives ''."""
    target = libvirt_guest.LibvirtTarget("test", TEST_URI)
    try:
        assert re.fullmatch(r"TEST \d+\.\d+\.\d+ through libvirt \d+\.\d+\.\d+", target.hypervisor())
        assert target.machine() == ""  # the test driver's domain has <type>hvm</type> only
    finally:
        target.close()


def test_the_machine_is_read_off_the_os_type():
    xml = "<domain><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os></domain>"
    target = libvirt_guest.LibvirtTarget.__new__(libvirt_guest.LibvirtTarget)
    target.xml = lambda: xml
    assert target.machine() == "pc-i440fx-7.2"
