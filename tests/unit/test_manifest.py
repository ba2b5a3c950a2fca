"""manifest.json as a typed Manifest: what the build writes reads back the same (byte for byte), each error names
the file and the dotted key, and each JSON document kind knows the schema versions it reads."""

import dataclasses
import json
import re

import pytest

from tests.unit.test_build import _assemble
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import dib, manifest
from wdimage.image.manifest import (
    Breaks,
    Files,
    HealthRecord,
    InstalledPackage,
    Package,
    read_manifest,
)
from wdimage.jsonfile import DRILL_REPORT, INDEX, MANIFEST
from wdimage.models import Action, Model

HEALTH = {"ping": ("10.0.2.2",), "max_load_1": 8,
          "health_options": {"min_memory": 16384, "retry_timeout": 10, "example": True}}


@pytest.mark.parametrize("options", [{}, {"layout": dib.Layout.DISK, "model": "itco"}, {"agent": False}, HEALTH])
def test_what_the_build_writes_reads_back_byte_for_byte(tmp_path, options):
    settings, staging, written = _assemble(tmp_path, **options)
    text = (staging / "manifest.json").read_text()
    read = read_manifest(staging)
    assert read.text() == text and read.to_json() == written
    assert read.model is settings.model and read.action is Action.RESET and read.timeout == 15
    assert read.files.image == f"{settings.name}.qcow2" and read.direct is (read.files.kernel is not None)
    assert (staging / read.files.sbom).is_file() and set(read.files.names()) <= set(read.checksums)
    assert read.health == manifest.health_record(settings.health)
    assert read.build.layout_option == "auto" and read.build.seconds == 12.3


def test_the_health_record_is_typed_with_its_break_commands(tmp_path):
    _, staging, _ = _assemble(tmp_path, **HEALTH)
    health = read_manifest(staging).health
    assert health.ping == ("10.0.2.2",) and health.max_load_1 == 8 and health.retry_timeout == 10
    assert health.breaks.test == "rm -f /run/wdimage-example/healthy" and "no-repair" in health.breaks.test_unrepairable
    assert health.test_binary.endswith("/wdimage-example-test") and health.example is True
    data = health.to_json()
    assert list(data)[-1] == "break" and data["break"] == health.breaks.to_json()


def test_a_health_record_without_the_stated_defaults_gets_the_daemons(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "health": {"ping": ["10.0.2.2"]}}))
    health = read_manifest(tmp_path).health
    assert health == HealthRecord(ping=("10.0.2.2",)) and health.retry_timeout == 60 and health.breaks == Breaks()


def test_absent_keys_read_as_none_and_unknown_keys_are_kept(tmp_path):
    data = {"schema": 1, "name": "img", "files": {"image": "img.qcow2", "signature": "img.sig"},
            "later_key": {"x": 1}}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    read = read_manifest(tmp_path / "manifest.json")
    assert read.model is None and read.health is None and read.packages is None
    assert read.files == Files(image="img.qcow2", extra={"signature": "img.sig"})
    assert read.files.names() == ["img.qcow2", "img.sig"]
    assert read.to_json()["later_key"] == {"x": 1} and read.to_json()["files"] == data["files"]


@pytest.mark.parametrize("changes, message", [
    ({"schema": 2}, "manifest schema 2 is not supported"),
    ({"model": "i8042"}, "key 'model': 'i8042' is not one of"),
    ({"timeout": True}, "key 'timeout': expected int, found True"),
    ({"timeout": 0}, "key 'timeout': 0 is outside i6300esb's range"),
    ({"boot": "pxe"}, "key 'boot': 'pxe' is not 'direct' or 'disk'"),
    ({"files": {"image": "../x.qcow2"}}, "key 'files.image': expected a file name inside the output directory"),
    ({"health": {"ping": "10.0.2.2"}}, "key 'health.ping': expected list"),
    ({"health": {"break": {"test": 1}}}, "key 'health.break.test': expected str, found 1"),
    ({"packages": {"watchdog": {"version": "5.16"}}}, "key 'packages.watchdog.name'"),
    ({"installed_packages": [{"version": "1"}]}, "key 'installed_packages[0]'"),
    ({"build": {"seconds": "12"}}, "key 'build.seconds': expected float"),
])
def test_a_bad_manifest_is_a_usage_error_naming_the_file_and_key(tmp_path, changes, message):
    data = {"schema": 1, "name": "img", "model": "i6300esb", "timeout": 15, **changes}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(WdimageError, match=re.escape(message)) as e:
        read_manifest(tmp_path)
    assert e.value.code == ExitCode.USAGE and e.value.message.startswith(f"{tmp_path / 'manifest.json'}: ")


def test_a_manifest_made_in_code_writes_the_build_keys_in_order(tmp_path):
    made = manifest.Manifest(name="img", model=Model.IB700, action=Action.PAUSE, timeout=30,
                             packages={"watchdog": Package("watchdog", "5.16")},
                             installed_packages=(InstalledPackage("watchdog", "5.16", "amd64"),),
                             files=Files(image="img.qcow2"), checksums={"img.qcow2": "ab"})
    made.write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert list(data)[:8] == ["schema", "name", "distro", "release", "model", "action", "timeout", "boot"]
    assert "kernel_source" not in data and data["model"] == "ib700" and data["action"] == "pause"
    assert read_manifest(tmp_path) == made
    assert read_manifest(tmp_path) != dataclasses.replace(made, timeout=31)


@pytest.mark.parametrize("kind, data, ours", [
    (DRILL_REPORT, {"schema": 2, "name": "x", "checks": [], "faults": [], "passed": True}, True),
    (DRILL_REPORT, {"schema": 1, "name": "x", "checks": [], "faults": [], "passed": False}, True),  # before 2
    (DRILL_REPORT, {"schema": 3, "name": "x", "checks": [], "faults": [], "passed": True}, True),  # timelines
    (DRILL_REPORT, {"schema": 4, "name": "x", "checks": [], "faults": [], "passed": True}, False),
    (DRILL_REPORT, {"schema": 2, "name": "x", "checks": [], "passed": True}, False),
    (DRILL_REPORT, {"name": "x", "checks": [], "faults": [], "passed": True}, False),
    (MANIFEST, {"schema": 1}, True),
    (MANIFEST, {"schema": "1"}, False),
    (INDEX, {"schema": 1, "images": []}, True),
    (INDEX, {"schema": 1}, False),
])
def test_each_document_kind_knows_the_schemas_it_reads(tmp_path, kind, data, ours):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(data))
    assert kind.recognizes(path) is ours
    if ours:
        assert kind.read(path) == data
    else:
        with pytest.raises(WdimageError) as e:
            kind.read(path)
        assert e.value.code == ExitCode.USAGE and str(path) in e.value.message


def test_what_this_wdimage_writes_is_what_it_reads():
    for kind in (MANIFEST, DRILL_REPORT, INDEX):
        assert kind.schema == max(kind.readable)
    assert manifest.SCHEMA == MANIFEST.schema
