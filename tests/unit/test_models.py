"""The model and action rows: every vocabulary (QEMU, libvirt, OpenStack) read off one row, and the reverse
look-ups derived from the same rows."""

import pytest

from wdimage.models import (
    ACTIONS,
    MODELS,
    Action,
    Model,
    action_from_libvirt,
    action_from_libvirt_event,
    action_from_qemu,
    action_info,
    info,
    model_from_libvirt,
)


@pytest.mark.parametrize("model", list(Model))
def test_libvirt_model_names_map_back(model):
    assert model_from_libvirt(info(model).libvirt_model) is model


def test_a_libvirt_model_wdimage_does_not_drill():
    assert model_from_libvirt("diag288") is None
    assert sorted(m.libvirt_model for m in MODELS.values()) == ["i6300esb", "ib700", "itco"]


@pytest.mark.parametrize("action", [a for a in Action if action_info(a).libvirt])
def test_libvirt_action_names_map_back(action):
    assert action_from_libvirt(action_info(action).libvirt) is action


def test_libvirt_has_no_debug_and_carries_out_dump_as_qemus_pause():
    assert action_info(Action.DEBUG).libvirt is None
    assert action_from_libvirt("debug") is None
    assert action_from_libvirt("dump") is Action.PAUSE
    assert action_from_libvirt("explode") is None


def test_libvirt_watchdog_event_numbers():
    # virDomainEventWatchdogAction (libvirt-domain.h): NONE 0, PAUSE 1, RESET 2, POWEROFF 3, SHUTDOWN 4, DEBUG 5,
    # INJECTNMI 6
    assert [action_from_libvirt_event(n) for n in range(7)] == [
        Action.NONE, Action.PAUSE, Action.RESET, Action.POWEROFF, Action.SHUTDOWN, Action.DEBUG, Action.INJECT_NMI]
    assert action_from_libvirt_event(7) is None
    assert len({a.libvirt_event for a in ACTIONS.values()}) == len(ACTIONS)


def test_openstack_hw_watchdog_action():
    # OpenStack's values: disabled|reset|poweroff|pause|none; an ACPI shutdown is closest to its poweroff
    assert {a: action_info(a).openstack for a in Action} == {
        Action.RESET: "reset", Action.SHUTDOWN: "poweroff", Action.POWEROFF: "poweroff", Action.PAUSE: "pause",
        Action.NONE: "none", Action.DEBUG: None, Action.INJECT_NMI: None}


def test_qemus_action_words_come_back_as_actions():
    assert [action_from_qemu(a.value) for a in Action] == list(Action)
    assert action_from_qemu("dump") is None and action_from_qemu(None) is None
