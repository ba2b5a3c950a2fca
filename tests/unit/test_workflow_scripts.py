"""The shell the CI files run, run for real with bash against fixture output directories and the real wdimage
(only `gh`, GitHub's API client, is replaced by a recorder: the release API cannot be reached from a test)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from wdimage import matrix

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"
GITLAB_CI = ROOT / ".gitlab-ci.yml"
WDIMAGE = Path(sys.executable).parent / "wdimage"


def github_step(job: str, name_start: str = "", step_id: str = "") -> dict:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]
    return next(s for s in steps
                if (step_id and s.get("id") == step_id) or (name_start and s.get("name", "").startswith(name_start)))


def run_bash(script: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `script` as GitHub runs a `run:` step (bash -e -o pipefail), with `.venv/bin/wdimage` the real one."""
    (cwd / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    link = cwd / ".venv" / "bin" / "wdimage"
    if not link.exists():
        link.symlink_to(WDIMAGE)
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=60)


def make_output(root: Path, name: str, drill_passed: bool | None) -> Path:
    distro, model = name.split("-", 1)
    directory = root / name
    directory.mkdir(parents=True)
    manifest = {"schema": 1, "name": name, "distro": distro, "release": "r", "model": model, "action": "reset",
                "timeout": 15, "packages": {}, "files": {"image": f"{name}.raw"}, "checksums": {}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / f"{name}.raw").write_bytes(b"\0" * 512)
    if drill_passed is not None:
        (directory / "drill.json").write_text(json.dumps({"passed": drill_passed, "faults": []}))
    return directory


def test_matrix_step_writes_the_matrix_to_github_output(tmp_path):
    output, summary = tmp_path / "output", tmp_path / "summary"
    result = run_bash(github_step("matrix", step_id="matrix")["run"], tmp_path,
                      {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    key, _, value = output.read_text().strip().partition("=")
    assert key == "matrix" and json.loads(value) == matrix.build_matrix()
    assert "excluded" in summary.read_text()


def test_github_index_step_gathers_the_downloaded_artifacts(tmp_path):
    make_output(tmp_path / "images", "image-debian-i6300esb", True)
    make_output(tmp_path / "images", "image-debian-itco", False)
    (tmp_path / "images" / "image-centos-itco").mkdir()  # a failed build uploads nothing useful
    summary = tmp_path / "summary"
    result = run_bash(github_step("index", "Gather")["run"], tmp_path, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert [(row["directory"], row["drill"]["result"]) for row in index["images"]] == [
        ("image-debian-i6300esb", "passed"), ("image-debian-itco", "FAILED")]
    table = (tmp_path / "index.md").read_text()
    assert table == summary.read_text() and table.count("\n") == 4


def test_github_index_step_fails_when_nothing_was_built(tmp_path):
    (tmp_path / "images").mkdir()
    result = run_bash(github_step("index", "Gather")["run"], tmp_path, {"GITHUB_STEP_SUMMARY": "/dev/null"})
    assert result.returncode == 1 and "no image was built" in result.stderr


def test_release_step_packs_each_image_and_attaches_the_index(tmp_path):
    artifacts = tmp_path / "artifacts"
    make_output(artifacts, "image-debian-i6300esb", True)
    make_output(artifacts, "image-centos-itco", None)
    (artifacts / "index").mkdir()
    (artifacts / "index" / "index.json").write_text("{}")
    (artifacts / "index" / "index.md").write_text("| table |\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$GH_ARGS"\n')
    (bin_dir / "gh").chmod(0o755)
    step = github_step("release", "Attach")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GH_ARGS": str(tmp_path / "gh-args"), "TAG": "v1.0"}
    result = run_bash(step["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "gh-args").read_text().splitlines()
    assert args[:4] == ["release", "create", "v1.0", "--verify-tag"]
    assert args[args.index("--notes-file") + 1] == "assets/index.md"
    assets = args[args.index("--notes-file") + 2:]
    assert assets == ["assets/centos-itco.tar", "assets/debian-i6300esb.tar", "assets/index.json",
                      "assets/index.md"]
    listing = subprocess.run(["tar", "-tf", str(tmp_path / "assets" / "debian-i6300esb.tar")],
                             capture_output=True, text=True, check=True).stdout.split()
    assert "image-debian-i6300esb/manifest.json" in listing
    assert "image-debian-i6300esb/drill.json" in listing


def test_gitlab_index_script_gathers_the_build_outputs(tmp_path):
    make_output(tmp_path / "out", "gentoo-i6300esb", None)
    make_output(tmp_path / "out", "debian-ib700", True)
    script = "\n".join(yaml.safe_load(GITLAB_CI.read_text())["index"]["script"])
    result = run_bash(script, tmp_path)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert [row["name"] for row in index["images"]] == ["debian-ib700", "gentoo-i6300esb"]
    assert "| debian-ib700 |" in result.stdout  # the table is printed into the job log
