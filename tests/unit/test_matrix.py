"""The CI matrix as data (`wdimage matrix`) and the index of a matrix run (`wdimage index`)."""

import json
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.ci import matrix
from wdimage.image import distros
from wdimage.models import Arch, Model, info, models_on


def all_cells():
    """distro x the architectures it builds x the models that exist there, from the tables themselves."""
    return [(d, a, m) for d in matrix.DISTROS for a in distros.get(d).arches for m in models_on(a)]


def test_every_distro_arch_and_model_is_a_cell_once_and_every_exclusion_says_why():
    cells = matrix.cells()
    assert [(c.distro, c.arch, c.model) for c in cells] == all_cells()
    assert len({c.name for c in cells}) == len(cells)
    for cell in cells:
        if not cell.built:
            assert not cell.drill
            assert len(cell.why) > 40, f"{cell.name}: exclusion without a real reason"
    assert set(matrix.EXCLUDED) <= {(d, m) for d in matrix.DISTROS for m in Model}
    # Every distro, and every model wdimage does not refuse on an architecture CI has runners for, is built
    # somewhere; arm64 is built.
    assert {c.distro for c in cells if c.built} == set(matrix.DISTROS)
    assert {c.model for c in cells if c.built} == {
        m for m in Model if not info(m).refused and set(info(m).arches) & set(matrix.RUNNERS)}
    assert ("debian", Arch.ARM64, Model.I6300ESB) in {(c.distro, c.arch, c.model) for c in cells if c.built}


def test_the_refused_model_and_the_runnerless_arch_are_excluded_with_their_reasons(capsys):
    by_name = {c.name: c for c in matrix.cells()}
    assert not by_name["debian-arm64-sbsa-gwdt"].built and "firmware" in by_name["debian-arm64-sbsa-gwdt"].why
    assert not by_name["debian-s390x-diag288"].built and "s390x runner" in by_name["debian-s390x-diag288"].why
    assert "centos-arm64-i6300esb" not in by_name  # wdimage builds CentOS for x86_64 only: not a cell at all
    assert cli.main(["matrix", "--json", "--arch", "aarch64"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(e["name"], e["arch"], e["runner"]) for e in data["include"]] == [
        ("debian-arm64-i6300esb", "arm64", "ubuntu-24.04-arm")]
    assert cli.main(["matrix", "--arch", "vax"]) == 2
    assert "--arch vax" in capsys.readouterr().err


@pytest.mark.parametrize("entry", matrix.build_matrix()["include"], ids=lambda e: e["name"])
def test_every_built_cell_is_a_valid_build_command_line(tmp_path, capsys, entry):
    """What CI runs for the cell, as a dry run: the options and their combination are accepted."""
    name = entry["name"]
    argv = ["build", entry["distro"], "--arch", entry["arch"], "--model", entry["model"], "--name", name,
            "--output", str(tmp_path / name),
            "--dry-run", "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dry_run"] is True
    assert f"={info(entry['model']).module}" in result["command"]  # the cell's driver goes into the image
    assert result["output"] == str(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_json_is_the_built_cells_in_github_matrix_shape(capsys):
    assert cli.main(["matrix", "--json"]) == 0
    out = capsys.readouterr().out
    assert "\n" not in out.strip(), "one line, so it fits a GITHUB_OUTPUT line"
    data = json.loads(out)
    assert list(data) == ["include"]
    built = [c for c in matrix.cells() if c.built]
    assert [(e["distro"], e["arch"], e["model"]) for e in data["include"]] == [
        (c.distro, str(c.arch), str(c.model)) for c in built]
    for entry in data["include"]:
        arch = "" if entry["arch"] == "x86_64" else f"{entry['arch']}-"
        assert entry["name"] == f"{entry['distro']}-{arch}{entry['model']}"
        assert entry["runner"] == matrix.RUNNERS[Arch(entry["arch"])]
        assert isinstance(entry["drill"], bool)
        assert isinstance(entry["minutes"], int) and 0 < entry["minutes"] <= 360  # GitHub's job limit


def test_text_lists_all_cells_with_the_exclusion_reasons(capsys):
    assert cli.main(["matrix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["cell", "CI", "platform"] and len(lines) == 1 + len(all_cells())
    for (distro, model), reason in matrix.EXCLUDED.items():
        line = next(line for line in lines if line.startswith(f"{distro}-{model} "))
        assert "excluded" in line and reason in line


def test_text_names_the_platform_files_each_built_cell_publishes(capsys):
    """From the models' platform columns with CI's action: KubeVirt takes only i6300esb, Proxmox no itco."""
    assert cli.main(["matrix"]) == 0
    files = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]}
    assert files["debian-i6300esb"] == "kubevirt+proxmox" and files["debian-ib700"] == "proxmox"
    assert files["debian-itco"] == "-" and files["gentoo-ib700"] == "-"  # itco: neither; gentoo-ib700: not built


def write_output(root: Path, name: str, distro: str, model: str, drill: dict | None) -> Path:
    directory = root / name
    directory.mkdir()
    manifest = {
        "schema": 1, "name": name, "distro": distro, "release": "bookworm", "model": model, "action": "reset",
        "timeout": 15,
        "packages": {"kernel": {"name": "linux-image-amd64", "version": "6.1.140-1"},
                     "watchdog": {"name": "watchdog", "version": "5.16-1+b2"}},
        "files": {"image": f"{name}.raw", "sbom": "sbom.cdx.json"}, "checksums": {f"{name}.raw": "ab" * 32},
        "platforms": {"kubevirt": {"file": f"{name}.kubevirt.yaml"}} if model == "i6300esb"
        else {"kubevirt": {"left_out": f"{model}: KubeVirt has no such watchdog"}},
        "build": {"seconds": 120.0},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    if drill is not None:
        report = {"schema": 2, "name": name, "checks": [], **drill}  # the keys every drill report has
        (directory / matrix.DRILL_REPORT).write_text(json.dumps(report))
    return directory


def test_index_gathers_manifests_and_drill_results(tmp_path, capsys):
    passed = {"passed": True, "accel": "tcg",
              "faults": [{"fault": "panic", "passed": True, "seconds_to_reset": 16.2}]}
    failed = {"passed": False, "accel": "tcg", "error": "agent did not answer", "faults": []}
    dirs = [write_output(tmp_path, "debian-itco", "debian", "itco", failed),
            write_output(tmp_path, "debian-i6300esb", "debian", "i6300esb", passed),
            write_output(tmp_path, "centos-i6300esb", "centos", "i6300esb", None)]
    assert cli.main(["index", *map(str, dirs)]) == 0
    index = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in index["images"]] == ["centos-i6300esb", "debian-i6300esb", "debian-itco"]
    by_name = {row["name"]: row for row in index["images"]}
    assert by_name["debian-i6300esb"]["drill"]["result"] == "passed"
    assert by_name["debian-i6300esb"]["versions"]["watchdog"] == "5.16-1+b2"
    assert by_name["debian-itco"]["drill"]["result"] == "FAILED"
    assert by_name["debian-itco"]["drill"]["error"] == "agent did not answer"
    assert by_name["centos-i6300esb"]["drill"]["result"] == "not run"
    assert by_name["debian-i6300esb"]["platforms"] == {"kubevirt": {"file": "debian-i6300esb.kubevirt.yaml"}}
    assert by_name["debian-itco"]["platforms"]["kubevirt"]["left_out"].startswith("itco:")
    assert cli.main(["index", "--markdown", *map(str, dirs)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| image |") and len(table) == 2 + 3
    assert table[3] == ("| debian-i6300esb | debian bookworm | i6300esb | reset / 15 s | 6.1.140-1 | 5.16-1+b2 "
                        "| kubevirt | passed (tcg) | panic 16.2 s |")
    assert table[4] == ("| debian-itco | debian bookworm | itco | reset / 15 s | 6.1.140-1 | 5.16-1+b2 "
                        "| kubevirt: left out | FAILED (tcg) | - |")


def test_markdown_cells_cannot_break_the_table():
    index = {"images": [{"name": "a|b\nc", "distro": "debian", "release": None, "model": "ib700",
                         "action": "reset", "timeout": 15, "versions": {},
                         "drill": {"result": "not run", "faults": []}}]}
    row = matrix.render_index_markdown(index).splitlines()[2]
    assert row.startswith("| a\\|b c | debian | ib700 |")
    assert row.count(" | ") == 8


def test_index_of_a_directory_without_manifest_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["index", str(tmp_path / "empty")]) == 2
    assert f"{tmp_path / 'empty' / 'manifest.json'}: no such file" in capsys.readouterr().err
    assert cli.main(["index", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
