"""Nothing of the user's is lost: output directories, report files, durable writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.errors import ExitCode, WdimageError
from wdimage.fileio import check_replaceable
from wdimage.image import outputs
from wdimage.jsonfile import DRILL_REPORT

MANIFEST = {"schema": 1, "name": "img", "files": {"image": "img.qcow2"}, "build": {"wdimage_version": "0.1.0"}}
REPORT = {"schema": 1, "name": "img", "checks": [], "faults": [], "passed": True}


def _previous_output(path: Path, extra: dict[str, str] = {}) -> Path:
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps(MANIFEST))
    (path / "img.qcow2").write_text("image")
    (path / "SHA256SUMS").write_text("sums")
    for name, text in extra.items():
        (path / name).write_text(text)
    return path


def _staging(tmp_path: Path, tag: str) -> Path:
    staging = tmp_path / f".staging-{tag}"
    staging.mkdir()
    (staging / "manifest.json").write_text(json.dumps(MANIFEST))
    (staging / "tag").write_text(tag)
    return staging


def test_a_previous_wdimage_output_is_replaced_and_kept_as_old(tmp_path):
    out = _previous_output(tmp_path / "out", {"drill.json": json.dumps(REPORT)})  # a drill report beside it
    outputs.check_output_dir(out)
    outputs.publish(_staging(tmp_path, "new"), out)
    assert (out / "tag").read_text() == "new"
    assert (tmp_path / "out.old" / "img.qcow2").read_text() == "image"


def test_an_empty_directory_is_used(tmp_path):
    (tmp_path / "out").mkdir()
    outputs.publish(_staging(tmp_path, "new"), tmp_path / "out")
    assert (tmp_path / "out" / "tag").read_text() == "new" and not (tmp_path / "out.old").exists()


@pytest.mark.parametrize("make, named", [
    (lambda d: (d.mkdir(), (d / "thesis.tex").write_text("mine")), "no manifest.json"),
    (lambda d: _previous_output(d, {"notes.txt": "mine"}), "notes.txt"),
    (lambda d: _previous_output(d, {"other.json": '{"schema": 1}'}), "other.json"),
    (lambda d: (d.mkdir(), (d / "manifest.json").write_text('{"name": "not ours"}')), "manifest.json"),
    (lambda d: (d.mkdir(), (d / "manifest.json").write_text('[1, 2')), "manifest.json"),
])
def test_anything_else_is_refused_naming_it(tmp_path, make, named):
    out = tmp_path / "out"
    make(out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(WdimageError) as e:
        outputs.publish(_staging(tmp_path, "new"), out)
    assert e.value.code == ExitCode.USAGE and f"--output {out}" in e.value.message and named in e.value.message
    assert sorted(p.name for p in out.iterdir()) == before and not (tmp_path / "out.old").exists()
    outputs.publish(_staging(tmp_path, "forced"), out, force=True)  # --force: they mean it
    assert (out / "tag").read_text() == "forced" and sorted(p.name for p in (tmp_path / "out.old").iterdir()) == before


def test_a_foreign_old_directory_is_not_deleted(tmp_path):
    """Before: publish deleted any `DIR.old`; now only a previous wdimage output."""
    out = _previous_output(tmp_path / "out")
    (tmp_path / "out.old").mkdir()
    (tmp_path / "out.old" / "precious").write_text("mine")
    with pytest.raises(WdimageError) as e:
        outputs.publish(_staging(tmp_path, "new"), out)
    assert "out.old" in e.value.message and (tmp_path / "out.old" / "precious").read_text() == "mine"


def test_a_symlinked_output_is_refused(tmp_path):
    target = _previous_output(tmp_path / "real")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(WdimageError) as e:
        outputs.check_output_dir(tmp_path / "link")
    assert "symbolic link" in e.value.message


def test_build_refuses_another_directory_before_any_work(tmp_path, capsys):
    theirs = tmp_path / "images"
    theirs.mkdir()
    (theirs / "vm.qcow2").write_bytes(b"precious")
    code = cli.main(["build", "debian", "--output", str(theirs)])  # not a dry run: refused before DIB
    assert code == ExitCode.USAGE
    assert f"--output {theirs}" in capsys.readouterr().err
    assert (theirs / "vm.qcow2").read_bytes() == b"precious" and not (tmp_path / "images.old").exists()


# --- report files (drill --json; the same check serves --junit) ----------------------------------------------

def _is_report(path):
    return outputs.is_drill_report(path)


def test_report_target_previous_report_is_replaceable(tmp_path):
    report = tmp_path / "drill.json"
    report.write_text(json.dumps(REPORT))
    check_replaceable(report, "--json", _is_report, "a wdimage drill report")
    check_replaceable(tmp_path / "new.json", "--json", _is_report, "a wdimage drill report")


@pytest.mark.parametrize("make", [
    lambda p: p.write_text('{"mine": 1}\n'),
    lambda p: p.write_text("plain text\n"),
    lambda p: (p.parent.joinpath("t").write_text(json.dumps(REPORT)), p.symlink_to(p.parent / "t")),
    lambda p: p.mkdir(),
    lambda p: os.mkfifo(p),
])
def test_report_target_refused(tmp_path, make):
    target = tmp_path / "drill.json"
    make(target)
    with pytest.raises(WdimageError) as e:
        check_replaceable(target, "--json", _is_report, "a wdimage drill report")
    assert e.value.code == ExitCode.USAGE and f"--json {target}" in e.value.message


def test_drill_json_refuses_a_user_file_before_booting_anything(tmp_path, capsys):
    mine = tmp_path / "results.json"
    mine.write_text('{"quarterly": [1, 2, 3]}\n')
    code = cli.main(["drill", str(tmp_path / "no-build"), "--json", str(mine)])
    assert code == ExitCode.USAGE and f"--json {mine}" in capsys.readouterr().err
    assert mine.read_text() == '{"quarterly": [1, 2, 3]}\n'


# --- durable writes ------------------------------------------------------------------------------------------

def test_write_atomically_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path):
    """Observed with strace on a real process: fsync of the temporary file, rename, fsync of the directory."""
    target = tmp_path / "out.txt"
    trace = tmp_path / "trace"
    code = f"from wdimage.fileio import write_atomically; write_atomically({str(target)!r}, 'data')"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=fsync,rename,openat", "-o", str(trace),
                    sys.executable, "-c", code], check=True)
    calls = [line for line in trace.read_text().splitlines() if str(tmp_path) in line or "fsync(" in line]
    fds = {}
    order = []
    for line in calls:
        if "openat(" in line and str(tmp_path) in line and "= " in line:
            fd = line.rsplit("= ", 1)[1].split()[0]
            fds[fd] = "dir" if "O_DIRECTORY" in line else "file"
        elif "fsync(" in line:
            fd = line.split("fsync(", 1)[1].split(")")[0]
            if fd in fds:
                order.append(f"fsync {fds[fd]}")
        elif "rename(" in line:
            order.append("rename")
    assert order == ["fsync file", "rename", "fsync dir"], calls
    assert target.read_text() == "data"


@pytest.mark.parametrize("option, name, theirs", [
    ("--html", "report.html", "<!DOCTYPE html>\n<html><head><title>my page</title></head></html>\n"),
    ("--markdown", "summary.md", "# Release notes\n<!-- wdimage drill report -->\n"),
])
def test_html_and_markdown_targets_only_a_previous_report_is_replaced(tmp_path, capsys, option, name, theirs):
    mine = tmp_path / name
    mine.write_text(theirs)
    code = cli.main(["drill", str(tmp_path / "no-build"), option, str(mine)])
    assert code == ExitCode.USAGE and f"{option} {mine}" in capsys.readouterr().err
    assert mine.read_text() == theirs


def test_two_report_options_naming_one_file_are_refused(tmp_path, capsys):
    code = cli.main(["drill", str(tmp_path / "no-build"), "--html", str(tmp_path / "r"), "--markdown",
                     str(tmp_path / "r")])
    assert code == ExitCode.USAGE and "different files" in capsys.readouterr().err


def test_junit_target_only_a_previous_wdimage_junit_report_is_replaced(tmp_path, capsys):
    ours = tmp_path / "drill.xml"
    ours.write_text('<?xml version="1.0"?>\n<testsuites><testsuite name="wdimage drill img" tests="1"/></testsuites>\n')
    assert outputs.is_junit_report(ours)
    theirs = tmp_path / "ci.xml"
    theirs.write_text('<testsuites><testsuite name="unit tests" tests="400"/></testsuites>\n')
    assert not outputs.is_junit_report(theirs)
    code = cli.main(["drill", str(tmp_path / "no-build"), "--junit", str(theirs)])
    assert code == ExitCode.USAGE and f"--junit {theirs}" in capsys.readouterr().err
    assert "400" in theirs.read_text()


# --- report files written again: the README's promise that a previous report is replaced ---------------------

def _drill_without_qemu(monkeypatch, accel: str) -> None:
    """`wdimage drill` as it runs, but run_drill returns a finished report instead of booting QEMU."""
    from tests.unit.test_drill import sections
    from wdimage.drill import runner

    def run_drill(build, faults, prepare=(), machine=None, scratch=None):
        setup = runner.setup_from_build(build)
        report = runner.DrillReport(target=str(build.directory), setup=setup, build=build,
                                    faults_requested=["panic"], accel=accel,
                                    checks=runner.evaluate_checks(sections(), setup.model, setup.timeout))
        report.faults = [runner.FaultResult("panic", True, "reset", 14.7, True, 20.1, "WATCHDOG reset",
                                            outcome="fire", path="watchdog")]
        return report

    monkeypatch.setattr(runner, "run_drill", run_drill)


def test_drill_reports_written_twice_to_the_same_files_replace_the_first(tmp_path, monkeypatch, capsys):
    from tests.unit.test_drill import write_build

    out = write_build(tmp_path)
    report, junit = tmp_path / "drill.json", tmp_path / "drill.xml"
    html, markdown = tmp_path / "drill.html", tmp_path / "drill.md"
    for accel in ("tcg", "kvm"):
        _drill_without_qemu(monkeypatch, accel)
        code = cli.main(["drill", str(out), "--fault", "panic", "--json", str(report), "--junit", str(junit),
                         "--html", str(html), "--markdown", str(markdown)])
        assert code == ExitCode.OK, capsys.readouterr().err
        written = json.loads(report.read_text())
        assert written["schema"] == DRILL_REPORT.schema and written["accel"] == accel and written["passed"] is True
        assert outputs.is_drill_report(report) and outputs.is_junit_report(junit)
        assert outputs.is_html_report(html) and outputs.is_markdown_report(markdown)
        assert f"<dd>{accel.upper()}</dd>" in html.read_text()  # the machine line: this run's accelerator
    assert 'name="wdimage drill debian-i6300esb"' in junit.read_text()


def test_an_output_directory_holding_its_drill_reports_is_a_previous_output(tmp_path, monkeypatch, capsys):
    from tests.unit.test_drill import write_build

    build = write_build(tmp_path)
    _drill_without_qemu(monkeypatch, "tcg")
    out = _previous_output(tmp_path / "out")
    assert cli.main(["drill", str(build), "--fault", "panic", "--json", str(out / "drill.json"),
                     "--junit", str(out / "drill.xml"), "--html", str(out / "drill.html"),
                     "--markdown", str(out / "drill.md")]) == ExitCode.OK
    assert json.loads((out / "drill.json").read_text())["schema"] == DRILL_REPORT.schema
    assert outputs.foreign_entry(out) is None
    outputs.check_output_dir(out)
    (out / "drill.md").write_text("# my notes\n")  # the user's own Markdown is not a report
    assert outputs.foreign_entry(out) == f"{out / 'drill.md'} is not part of it"
    (out / "drill.md").unlink()
    (out / "drill.json").write_text(json.dumps({**REPORT, "schema": DRILL_REPORT.schema + 1}))  # a later wdimage
    assert outputs.foreign_entry(out) == f"{out / 'drill.json'} is not part of it"
