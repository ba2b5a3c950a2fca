"""The accelerator's answer is kept under a key of what it depends on: the guest's kernel bytes and the launch,
not the per-run paths; a kept answer that is too old, or not one, is not used."""

import dataclasses
import json
import time
from pathlib import Path

import pytest

from wdimage.drill import runner
from wdimage.errors import WdimageError
from wdimage.models import Action, Model
from wdimage.vm import accel
from wdimage.vm.launch import LaunchSpec
from wdimage.vm.qemu_guest import QemuTarget


def _spec(tmp_path: Path, kernel: bytes = b"kernel one") -> LaunchSpec:
    (tmp_path / "vmlinuz").write_bytes(kernel)
    return LaunchSpec(model=Model.I6300ESB, action=Action.RESET, image=tmp_path / "x.qcow2",
                      kernel=tmp_path / "vmlinuz", cmdline="root=LABEL=cloudimg-rootfs ro console=ttyS0")


def test_the_key_follows_the_kernel_and_the_launch_not_the_run(tmp_path):
    spec = _spec(tmp_path)
    key = accel.probe_key(spec)
    assert accel.probe_key(dataclasses.replace(spec, qmp_socket=tmp_path / "q.sock",
                                               serial=f"file:{tmp_path / 'c.log'}")) == key
    assert accel.probe_key(dataclasses.replace(spec, machine="q35")) != key
    assert accel.probe_key(dataclasses.replace(spec, cmdline="console=ttyS0")) != key
    assert accel.probe_key(_spec(tmp_path, b"kernel two")) != key


def test_a_kept_answer_is_used_only_while_fresh_and_well_formed(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path))
    (tmp_path / "accel").mkdir()
    path = tmp_path / "accel" / "k.json"
    path.write_text(json.dumps({"accel": "tcg", "why": "KVM probe: hung", "when": time.time() - 60}))
    accel_name, why = accel._kept("k")
    assert accel_name == "tcg" and why.startswith("KVM probe: hung; kept from") and str(path) in why
    path.write_text(json.dumps({"accel": "tcg", "why": "old", "when": time.time() - accel.KEPT_SECONDS - 1}))
    assert accel._kept("k") is None
    for broken in ("{", json.dumps({"accel": "xen", "why": "?", "when": time.time()}), json.dumps([1])):
        path.write_text(broken)
        assert accel._kept("k") is None, broken
    assert accel._kept("missing") is None


def test_wdimage_accel_forces_the_answer_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_ACCEL", "tcg")
    assert accel.choose_accel(_spec(tmp_path), tmp_path) == ("tcg", "WDIMAGE_ACCEL=tcg")
    monkeypatch.setenv("WDIMAGE_ACCEL", "hvf")
    with pytest.raises(WdimageError, match="WDIMAGE_ACCEL='hvf'"):
        accel.choose_accel(_spec(tmp_path), tmp_path)


class _Guest:
    def __init__(self, number: int):
        self.number, self.closed = number, False

    def close(self) -> None:
        self.closed = True


class _Target(QemuTarget):
    """QemuTarget's bookkeeping with a stand-in for launching QEMU."""

    def _launch(self):
        self.boots += 1
        return _Guest(self.boots)


@pytest.mark.parametrize("answer", [("tcg", "KVM probe: hung"), ("kvm", "KVM probe: booted"), KeyboardInterrupt])
def test_the_first_boot_starts_under_tcg_beside_the_probe_and_is_kept_only_for_tcg(tmp_path, monkeypatch, answer):
    target = _Target(_spec(tmp_path), tmp_path, "t")
    running_during_probe = []

    def probe(spec, workdir):
        running_during_probe.append(target.early is not None and not target.early.closed)
        if answer is KeyboardInterrupt:
            raise KeyboardInterrupt
        return answer

    monkeypatch.setattr(accel, "known", lambda spec: None)
    monkeypatch.setattr(accel, "probe", probe)
    if answer is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            runner._accelerator(_spec(tmp_path), target)
        assert running_during_probe == [True] and target.early is None and target.boots == 1
        return
    assert runner._accelerator(_spec(tmp_path), target) == answer and running_during_probe == [True]
    first = target.boot()
    if answer[0] == "tcg":  # the boot that ran beside the probe is the drill's first boot
        assert first.number == 1 and not first.closed
    else:  # stopped; the drill boots afresh (under KVM)
        assert first.number == 2 and target.boots == 2
    assert target.early is None and target.boot().number == first.number + 1


def test_a_known_answer_starts_nothing_beside_it(tmp_path, monkeypatch):
    target = _Target(_spec(tmp_path), tmp_path, "t")
    monkeypatch.setattr(accel, "known", lambda spec: ("tcg", "no usable /dev/kvm"))
    monkeypatch.setattr(accel, "probe", lambda spec, workdir: pytest.fail("probed although the answer was known"))
    assert runner._accelerator(_spec(tmp_path), target) == ("tcg", "no usable /dev/kvm")
    assert target.early is None and target.boots == 0
