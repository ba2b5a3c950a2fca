"""What a tagged CI run publishes (wdimage.ci.release, `wdimage index --releasable/--release-notes`) and the
build's `--layout auto|direct|disk`, which the CI files set."""

import json
import shlex

import pytest

from tests.unit.test_build import KERNEL_CONFIG, _fake_dib_output
from tests.unit.test_workflow_scripts import make_output
from wdimage import cli
from wdimage.ci import matrix, release
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import build, dib

# --- the release decision -----------------------------------------------------------------------------------

def _index(tmp_path, cells: dict[str, bool | None]) -> dict:
    return matrix.build_index([make_output(tmp_path, name, drill) for name, drill in cells.items()])


def test_a_failed_drill_and_a_missing_cell_are_withheld_and_named(tmp_path):
    index = _index(tmp_path, {"debian-i6300esb": True, "debian-itco": False, "centos-ib700": None})
    cells = [{"name": n} for n in ("debian-i6300esb", "debian-itco", "centos-ib700", "gentoo-i6300esb")]
    plan = release.release_plan(index, cells)
    assert plan["publish"] == ["debian-i6300esb"]
    assert plan["withheld"] == [
        {"name": "centos-ib700", "why": "not drilled: no drill.json beside the image"},
        {"name": "debian-itco", "why": "the drill FAILED (panic)"},
        {"name": "gentoo-i6300esb", "why": release.NO_OUTPUT}]
    notes = release.render_release_notes(index, plan)
    assert notes.startswith("Published: 1 of 4 images, each one whose watchdog drill passed.\n")
    table, _, withheld = notes.partition("Not published:")
    assert "| debian-i6300esb |" in table and "debian-itco" not in table
    assert "| debian-itco | the drill FAILED (panic) |" in withheld
    assert "| gentoo-i6300esb | no output: the build failed, timed out or was cancelled" in withheld


def test_everything_passed(tmp_path):
    index = _index(tmp_path, {"debian-i6300esb": True})
    plan = release.release_plan(index, [{"name": "debian-i6300esb"}])
    assert plan == {"publish": ["debian-i6300esb"], "withheld": []}
    assert release.render_release_notes(index, plan).endswith(
        "Every cell of the matrix was built and passed its drill.\n")


def test_a_directory_name_that_is_not_a_plain_word_is_never_published(tmp_path):
    index = _index(tmp_path, {"debian-i6300esb": True})
    index["images"][0]["directory"] = "a b;rm"
    plan = release.release_plan(index, [])
    assert plan["publish"] == [] and "not a plain image name" in plan["withheld"][0]["why"]


def test_the_drill_error_is_the_reason_when_no_fault_ran(tmp_path):
    directory = make_output(tmp_path, "debian-ib700", None)
    (directory / "drill.json").write_text(json.dumps({"schema": 2, "name": "debian-ib700", "checks": [], "faults": [],
                                                      "passed": False, "error": "no KVM, TCG too slow"}))
    plan = release.release_plan(matrix.build_index([directory]), [])
    assert plan["withheld"] == [{"name": "debian-ib700", "why": "the drill FAILED (no KVM, TCG too slow)"}]


def test_index_cli_prints_the_releasable_directories_and_the_notes(tmp_path, capsys):
    dirs = [str(make_output(tmp_path, n, d)) for n, d in (("debian-ib700", True), ("debian-itco", False))]
    assert cli.main(["index", "--releasable", *dirs]) == 0
    assert capsys.readouterr().out == "debian-ib700\n"
    assert cli.main(["index", "--release-notes", *dirs]) == 0
    notes = capsys.readouterr().out
    total = len(matrix.build_matrix()["include"])  # the other matrix cells produced nothing here
    assert notes.startswith(f"Published: 1 of {total} images") and "| debian-itco | the drill FAILED" in notes
    with pytest.raises(SystemExit) as exit_:
        cli.make_parser().parse_args(["index", "--markdown", "--releasable", *dirs])
    assert exit_.value.code == 2


# --- --layout -----------------------------------------------------------------------------------------------

def test_resolve_layout_auto_follows_device_mapper(tmp_path, monkeypatch):
    assert dib.resolve_layout("auto", mapper_control=tmp_path / "none")[0] is dib.Layout.DIRECT
    monkeypatch.setattr(dib, "device_mapper_works", lambda control: True)  # no device-mapper on this machine
    layout, why = dib.resolve_layout("auto")
    assert layout is dib.Layout.DISK and why.startswith("auto: device-mapper works here")
    assert dib.resolve_layout("direct")[0] is dib.Layout.DIRECT  # direct is taken even where disk could be


def test_disk_layout_without_device_mapper_fails_before_building_but_dry_runs(tmp_path):
    with pytest.raises(WdimageError) as error:
        dib.resolve_layout("disk", mapper_control=tmp_path / "none")
    assert error.value.code == ExitCode.FAILED and "--layout disk needs device-mapper" in error.value.message
    assert dib.resolve_layout("disk", dry_run=True, mapper_control=tmp_path / "none")[0] is dib.Layout.DISK


def test_a_bad_layout_is_a_usage_error_naming_the_option(tmp_path, capsys):
    with pytest.raises(WdimageError) as error:
        build.make_settings("debian", layout="partitioned", output=tmp_path / "o")
    assert error.value.code == ExitCode.USAGE and error.value.message.startswith("--layout 'partitioned'")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["build", "debian", "--layout", "partitioned", "--dry-run"])
    assert exit_.value.code == 2 and "--layout" in capsys.readouterr().err
    with pytest.raises(WdimageError):
        dib.resolve_layout("Direct")


@pytest.mark.parametrize("option, element", [("direct", "baremetal"), ("disk", "vm")])
def test_layout_option_chooses_the_dib_elements(tmp_path, capsys, option, element):
    assert cli.main(["build", "debian", "--layout", option, "--dry-run", "--json",
                     "--output", str(tmp_path / "o")]) == 0
    result = json.loads(capsys.readouterr().out)
    words = shlex.split(result["command"])
    assert result["layout"] == option and element in words
    assert any(w.startswith("DIB_BLOCK_DEVICE_CONFIG=") for w in words) is (option == "direct")


def test_manifest_records_the_layout_and_how_it_was_chosen(tmp_path):
    import datetime
    for option in ("direct", "auto"):
        settings = build.make_settings("debian", output=tmp_path / option / "out", layout=option)
        staging = tmp_path / option / "staging"
        _fake_dib_output(staging, settings.name, KERNEL_CONFIG)
        command = build.dib_command(settings, dib.Layout.DIRECT, {"watchdog.conf": staging}, staging / "x")
        manifest = build.assemble(settings, dib.Layout.DIRECT, command, staging,
                                  datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), 1.0)
        assert manifest.boot == "direct" and manifest.build.layout == "direct"
        assert manifest.build.layout_option == option
        assert json.loads((staging / "manifest.json").read_text())["build"]["layout_option"] == option
