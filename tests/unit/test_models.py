"""The model and action rows: every vocabulary (QEMU, libvirt, OpenStack) read off one row, and the reverse
look-ups derived from the same rows."""

import pytest

from wdimage.models import (
    ACTIONS,
    ARCHES,
    MODELS,
    Action,
    Arch,
    Model,
    arch_from_name,
    arch_from_uname,
    default_models,
    machines_of,
    model_on_arch_error,
    models_on,
    action_from_libvirt,
    action_from_libvirt_event,
    action_from_qemu,
    action_info,
    info,
    model_from_libvirt,
)


@pytest.mark.parametrize("model", [m for m in Model if info(m).libvirt_model])
def test_libvirt_model_names_map_back(model):
    assert model_from_libvirt(info(model).libvirt_model) is model


def test_a_libvirt_model_wdimage_does_not_drill():
    assert model_from_libvirt("pcwd") is None and model_from_libvirt("") is None
    # libvirt's words (docs: formatdomain, watchdog); the SBSA watchdog of sbsa-ref has none
    assert sorted(m.libvirt_model for m in MODELS.values()) == ["", "diag288", "i6300esb", "ib700", "itco"]


def test_each_model_lives_on_its_architectures_and_machines():
    assert {m: info(m).machines for m in Model} == {
        Model.I6300ESB: {Arch.X86_64: ("pc", "q35"), Arch.ARM64: ("virt",)},
        Model.IB700: {Arch.X86_64: ("pc",)},
        Model.ITCO: {Arch.X86_64: ("q35",)},
        Model.DIAG288: {Arch.S390X: ("s390-ccw-virtio",)},
        Model.SBSA_GWDT: {Arch.ARM64: ("sbsa-ref",)},
    }
    assert models_on(Arch.ARM64) == (Model.I6300ESB, Model.SBSA_GWDT)
    assert machines_of(Model.IB700, Arch.ARM64) == ()
    # the default machine stays each model's first, as x86 builds have always recorded it
    assert [info(m).machine for m in (Model.I6300ESB, Model.IB700, Model.ITCO)] == ["pc", "pc", "q35"]


def test_a_model_on_another_architecture_is_refused_naming_those_that_exist_there():
    message = model_on_arch_error(Model.IB700, Arch.ARM64)
    assert "ib700 does not exist on --arch arm64" in message and "only on x86_64" in message
    assert message.endswith("on arm64: i6300esb")  # sbsa-gwdt is refused, so not offered
    assert model_on_arch_error(Model.DIAG288, Arch.X86_64).endswith("on x86_64: i6300esb, ib700, itco")
    refused = model_on_arch_error(Model.SBSA_GWDT, Arch.ARM64)
    assert "refused" in refused and "firmware" in refused and "Debian" in refused
    assert model_on_arch_error(Model.I6300ESB, Arch.ARM64) is None
    assert model_on_arch_error(Model.DIAG288, Arch.S390X) is None


def test_diag288_is_read_off_qemu_and_linux():
    about = info(Model.DIAG288)
    # drivers/watchdog/diag288_wdt.c: MIN_INTERVAL 15, MAX_INTERVAL 3600, identity "z Watchdog"; QEMU's
    # wdt_diag288.c fires once when the programmed time runs out (one stage)
    assert (about.kconfig_symbol, about.module, about.qemu_device, about.libvirt_model) == (
        "DIAG288_WATCHDOG", "diag288_wdt", "diag288", "diag288")
    assert about.timeout_range == (15, 3600) and about.identity == "z Watchdog" and about.stages == 1


def test_default_models_per_architecture():
    assert default_models(Arch.X86_64) == (Model.I6300ESB, Model.IB700)  # the seed article's menu, unchanged
    assert default_models(Arch.ARM64) == (Model.I6300ESB,)
    assert default_models(Arch.S390X) == (Model.DIAG288,)


def test_architecture_names_and_aliases():
    assert [arch_from_name(n) for n in ("x86_64", "x86", "amd64", "arm64", "aarch64", "s390x", "s390")] == [
        Arch.X86_64, Arch.X86_64, Arch.X86_64, Arch.ARM64, Arch.ARM64, Arch.S390X, Arch.S390X]
    assert arch_from_name("riscv64") is None
    assert arch_from_uname("aarch64") is Arch.ARM64 and arch_from_uname("arm64") is None
    names = [n for a in ARCHES.values() for n in (a.arch, *a.aliases)]
    assert len(names) == len(set(names)), "an alias names two architectures"


def test_the_architecture_rows():
    rows = {a: (r.kernel_arch, r.debian, r.qemu_system, r.default_machine, r.cpu_tcg, r.console, r.cross_compile)
            for a, r in ARCHES.items()}
    assert rows == {
        Arch.X86_64: ("x86", "amd64", "qemu-system-x86_64", "pc", None, "ttyS0", "x86_64-linux-gnu-"),
        Arch.ARM64: ("arm64", "arm64", "qemu-system-aarch64", "virt", "max", "ttyAMA0", "aarch64-linux-gnu-"),
        Arch.S390X: ("s390", "s390x", "qemu-system-s390x", "s390-ccw-virtio", None, "ttysclp0",
                     "s390x-linux-gnu-"),
    }
    for about in MODELS.values():  # every machine a model names is one its architecture's emulator has
        assert set(about.machines) <= set(ARCHES)


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
