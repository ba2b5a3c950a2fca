"""The shell the CI files run, run for real with bash against fixture output directories and the real wdimage
(only `gh` and `curl` to GitLab's API are replaced by recorders: the release APIs cannot be reached from a test).

The artifact shapes are those of actions/download-artifact with a `pattern`: each matched artifact in its own
folder, except when exactly one matches, which is extracted straight into the download path."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from wdimage.ci import matrix

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
    distro, *arch, model = name.split("-")  # distro-model, or distro-arch-model off x86_64 (ci/matrix.Cell)
    directory = root / name
    directory.mkdir(parents=True)
    manifest = {"schema": 1, "name": name, "distro": distro, "release": "r", "model": model, "action": "reset",
                "timeout": 15, "packages": {}, "files": {"image": f"{name}.raw", "launch_stub": f"run-{name}.sh"},
                "checksums": {}, **({"arch": arch[0]} if arch else {})}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / f"{name}.raw").write_bytes(b"\0" * 512)
    (directory / f"run-{name}.sh").write_text("#!/bin/sh\n")  # as downloaded: artifacts keep no file modes
    if drill_passed is not None:
        faults = [{"fault": "panic", "passed": drill_passed, "seconds_to_reset": 14.7 if drill_passed else None}]
        (directory / "drill.json").write_text(json.dumps({"schema": 2, "name": name, "checks": [],
                                                          "passed": drill_passed, "accel": "tcg", "faults": faults}))
    return directory


def upload_path() -> str:
    step = next(s for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["image"]["steps"]
                if s.get("name") == "Upload the output directory")
    return step["with"]["path"]


def download_images(tmp_path: Path, cells: dict[str, bool | None], into: str = "images") -> Path:
    """Each cell's image job builds out/NAME in its own workspace and uploads the workflow's upload path as
    image-NAME; then download-artifact with `pattern: image-*` extracts them into `into` in its two shapes."""
    artifacts = {}
    for name, drill in cells.items():
        workspace = tmp_path / "jobs" / name
        make_output(workspace / "out", name, drill)
        artifacts[f"image-{name}"] = workspace / upload_path()
    target = tmp_path / into
    for artifact, content in artifacts.items():
        shutil.copytree(content, target if len(artifacts) == 1 else target / artifact, dirs_exist_ok=True)
    return target


def test_matrix_step_writes_the_matrix_to_github_output(tmp_path):
    output, summary = tmp_path / "output", tmp_path / "summary"
    result = run_bash(github_step("matrix", step_id="matrix")["run"], tmp_path,
                      {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    key, _, value = output.read_text().strip().partition("=")
    assert key == "matrix" and json.loads(value) == matrix.build_matrix()
    assert "excluded" in summary.read_text()




def run_github_index(tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    summary = tmp_path / "summary"
    script = github_step("index", "Gather")["run"] + "\n" + github_step("index", step_id="decide")["run"]
    output = tmp_path / "github-output"
    result = run_bash(script, tmp_path, {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)})
    return result, summary


def link_scripts(tmp_path: Path) -> None:
    """The steps call scripts/ci/*.sh relative to the checkout: give the fixture workspace the real ones."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    if not (tmp_path / "scripts" / "ci").exists():
        (tmp_path / "scripts" / "ci").symlink_to(ROOT / "scripts" / "ci")


def test_github_index_step_gathers_several_downloaded_artifacts(tmp_path):
    link_scripts(tmp_path)
    images = download_images(tmp_path, {"debian-i6300esb": True, "debian-itco": False})
    assert (images / "image-debian-itco" / "debian-itco" / "manifest.json").is_file()  # the nested shape
    result, summary = run_github_index(tmp_path)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert [(row["directory"], row["drill"]["result"]) for row in index["images"]] == [
        ("debian-i6300esb", "passed"), ("debian-itco", "FAILED")]
    table = (tmp_path / "index.md").read_text()
    assert table.count("\n") == 4 and summary.read_text().startswith(table)
    assert (tmp_path / "releasable.txt").read_text() == "debian-i6300esb\n"
    assert (tmp_path / "github-output").read_text() == "count=1\n"


def test_github_index_step_gathers_a_single_downloaded_artifact(tmp_path):
    """One matched artifact is extracted flat into `images`: the index must still find it."""
    link_scripts(tmp_path)
    images = download_images(tmp_path, {"centos-itco": True})
    assert (images / "centos-itco" / "manifest.json").is_file() and not (images / "image-centos-itco").exists()
    result, _ = run_github_index(tmp_path)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert [row["name"] for row in index["images"]] == ["centos-itco"]


def test_github_index_step_fails_when_nothing_was_built(tmp_path):
    link_scripts(tmp_path)
    (tmp_path / "images").mkdir()
    result = run_bash(github_step("index", "Gather")["run"], tmp_path, {"GITHUB_STEP_SUMMARY": "/dev/null"})
    assert result.returncode == 1 and "no image was built" in result.stderr


def fake_gh(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$GH_ARGS"\n')
    (bin_dir / "gh").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GH_ARGS": str(tmp_path / "gh-args"), "TAG": "v1.0"}


def test_release_with_a_failed_cell_publishes_only_the_drilled_images(tmp_path):
    """A tag run where centos-itco's drill failed and gentoo-i6300esb built nothing: the release carries the
    images that passed, and its notes name the two others and why."""
    link_scripts(tmp_path)
    cells = {e["name"]: True for e in matrix.build_matrix()["include"]}
    cells["centos-itco"] = False
    del cells["gentoo-i6300esb"]
    download_images(tmp_path, cells)
    result, _ = run_github_index(tmp_path)
    assert result.returncode == 0, result.stderr
    index_artifact = tmp_path / "index"  # the release job downloads the index artifact by name
    index_artifact.mkdir()
    for file in ("index.json", "index.md", "releasable.txt", "release-notes.md"):
        shutil.move(tmp_path / file, index_artifact / file)
    result = run_bash(github_step("release", "Attach")["run"], tmp_path, fake_gh(tmp_path))
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "gh-args").read_text().splitlines()
    assert args[:4] == ["release", "create", "v1.0", "--verify-tag"]
    assert args[args.index("--notes-file") + 1] == "index/release-notes.md"
    assets = args[args.index("--notes-file") + 2:]
    published = sorted(set(cells) - {"centos-itco"})
    assert assets == sorted([f"assets/{n}.tar" for n in published] + ["assets/index.json", "assets/index.md"])
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "assets" / "debian-i6300esb.tar")],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    names = {line.split()[-1]: line.split()[0] for line in listing}
    assert "debian-i6300esb/manifest.json" in names and "debian-i6300esb/drill.json" in names
    assert names["debian-i6300esb/run-debian-i6300esb.sh"].count("x") == 3  # executable again
    notes = (index_artifact / "release-notes.md").read_text()
    assert notes.startswith(f"Published: {len(published)} of {len(matrix.build_matrix()['include'])} images")
    assert "| centos-itco | the drill FAILED (panic) |" in notes
    assert "| gentoo-i6300esb | no output: the build failed" in notes


def test_release_of_a_run_where_every_drill_failed_fails_and_says_so(tmp_path):
    link_scripts(tmp_path)
    download_images(tmp_path, {"debian-i6300esb": False, "debian-ib700": False})
    result, _ = run_github_index(tmp_path)
    assert result.returncode == 0, result.stderr
    (tmp_path / "index").mkdir()
    for file in ("index.json", "index.md", "releasable.txt", "release-notes.md"):
        shutil.move(tmp_path / file, tmp_path / "index" / file)
    result = run_bash(github_step("release", "Attach")["run"], tmp_path, fake_gh(tmp_path))
    assert result.returncode == 1 and "no image passed its drill" in result.stderr
    assert not (tmp_path / "gh-args").exists()


def gitlab_build_job(tmp_path: Path, name: str, drill: bool | None) -> None:
    """What a build-image job leaves for the index job: out/NAME/ and links/NAME.url."""
    make_output(tmp_path / "out", name, drill)
    (tmp_path / "links").mkdir(exist_ok=True)
    (tmp_path / "links" / f"{name}.url").write_text(f"https://gitlab.test/p/-/jobs/{len(name)}\n")


def test_gitlab_index_script_gathers_the_build_outputs(tmp_path):
    link_scripts(tmp_path)
    gitlab_build_job(tmp_path, "gentoo-i6300esb", None)
    gitlab_build_job(tmp_path, "debian-ib700", True)
    script = "\n".join(yaml.safe_load(GITLAB_CI.read_text())["index"]["script"])
    result = run_bash(script, tmp_path, {"CI_COMMIT_TAG": "", "CI_JOB_URL": "https://gitlab.test/p/-/jobs/99"})
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert [row["name"] for row in index["images"]] == ["debian-ib700", "gentoo-i6300esb"]
    assert "| debian-ib700 |" in result.stdout  # the table is printed into the job log
    assert (tmp_path / "releasable.txt").read_text() == "debian-ib700\n"
    assert (tmp_path / "links.md").read_text().splitlines() == [
        "- debian-ib700: https://gitlab.test/p/-/jobs/12/artifacts/browse",
        "- gentoo-i6300esb: https://gitlab.test/p/-/jobs/15/artifacts/browse"]
    notes = (tmp_path / "release-notes.md").read_text()
    assert "Downloads" not in notes and "https://gitlab.test/p/-/jobs/99/artifacts/browse" in notes
    for path in yaml.safe_load(GITLAB_CI.read_text())["index"]["artifacts"]["paths"]:
        assert (tmp_path / path).is_file(), path  # every artifact path is a small file the script wrote


def test_gitlab_index_on_a_tag_links_the_drilled_images_in_the_package_registry(tmp_path):
    link_scripts(tmp_path)
    gitlab_build_job(tmp_path, "debian-ib700", True)
    gitlab_build_job(tmp_path, "debian-itco", False)
    script = "\n".join(yaml.safe_load(GITLAB_CI.read_text())["index"]["script"])
    packages = "https://gitlab.test/api/v4/projects/7/packages/generic/wdimage/v2.0"
    result = run_bash(script, tmp_path, {"CI_COMMIT_TAG": "v2.0", "PACKAGES_URL": packages,
                                         "CI_JOB_URL": "https://gitlab.test/p/-/jobs/99"})
    assert result.returncode == 0, result.stderr
    notes = (tmp_path / "release-notes.md").read_text()
    assert f"- [debian-ib700.tar]({packages}/debian-ib700.tar)" in notes
    assert "debian-itco.tar" not in notes and "| debian-itco | the drill FAILED (panic) |" in notes


def test_gitlab_release_script_refuses_a_release_without_drilled_images(tmp_path):
    script = "\n".join(yaml.safe_load(GITLAB_CI.read_text())["release"]["script"])
    (tmp_path / "releasable.txt").write_text("")
    result = subprocess.run(["sh", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "CI_COMMIT_TAG": "v1"})
    assert result.returncode == 1 and "no image passed its drill" in result.stderr
    (tmp_path / "releasable.txt").write_text("debian-ib700\ndebian-itco\n")
    result = subprocess.run(["sh", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "CI_COMMIT_TAG": "v1"})
    assert result.returncode == 0 and "with 2 drilled image(s)" in result.stdout


def test_week_step_gives_an_iso_week(tmp_path):
    output = tmp_path / "output"
    result = run_bash(github_step("image", step_id="week")["run"], tmp_path, {"GITHUB_OUTPUT": str(output)})
    assert result.returncode == 0, result.stderr
    import re
    assert re.fullmatch(r"week=\d{4}-W\d{2}\n", output.read_text())


def _drill_pages(directory: Path, passed: bool) -> None:
    """The Markdown and HTML `wdimage drill` writes, rendered by the real renderers."""
    from wdimage.drill import pages

    report = {"schema": 3, "name": directory.name, "model": "i6300esb", "action": "reset", "timeout": 15,
              "checks": [], "passed": passed,
              "faults": [{"fault": "panic", "passed": passed, "outcome": "fire", "seconds_to_reset": 14.7,
                          "expected_window": [10, 15], "detail": "WATCHDOG reset",
                          "timeline": {"boot": 0.0, "armed": 7.4, "fault": 20.0, "event": 34.7, "reset": 34.7,
                                       "armed_again": 43.0, "end": 44.0}}]}
    (directory / "drill.md").write_text(pages.render_markdown(report))
    (directory / "drill.html").write_text(pages.render_html(report))


def test_github_summary_step_appends_the_drills_markdown(tmp_path):
    step = github_step("image", name_start="Show the drill in the job summary")
    summary = tmp_path / "summary"
    summary.write_text("earlier steps' summary\n")
    directory = make_output(tmp_path / "out", "debian-i6300esb", drill_passed=False)
    _drill_pages(directory, passed=False)
    result = run_bash(step["run"], tmp_path, env={"NAME": "debian-i6300esb", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("earlier steps' summary\n") and "### FAILED: wdimage drill of debian-i6300esb" in text
    assert "| panic | fire | FAIL | 14.7s | 10-15s |" in text and "```mermaid\ngantt\n" in text


def test_github_summary_step_without_a_drill_report_writes_nothing_and_passes(tmp_path):
    """The build failed, or the drill stopped before writing: the step must not fail the job a second time."""
    step = github_step("image", name_start="Show the drill in the job summary")
    summary = tmp_path / "summary"
    make_output(tmp_path / "out", "debian-i6300esb", drill_passed=None)
    result = run_bash(step["run"], tmp_path, env={"NAME": "debian-i6300esb", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0 and not summary.exists()


def test_gitlab_after_script_prints_the_summary_and_writes_the_links(tmp_path):
    lines = yaml.safe_load(GITLAB_CI.read_text())["build-image"]["after_script"]
    mine = [line for line in lines if "drill" in line]
    directory = make_output(tmp_path / "out", "debian-i6300esb", drill_passed=True)
    _drill_pages(directory, passed=True)
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    result = run_bash("\n".join(mine), tmp_path, env={"DISTRO": "debian", "MODEL": "i6300esb",
                                                      "CI_JOB_URL": "https://gitlab.test/g/p/-/jobs/7"})
    assert result.returncode == 0, result.stderr
    assert "### PASSED: wdimage drill of debian-i6300esb" in result.stdout
    links = json.loads((tmp_path / "drill-links.json").read_text())["wdimage drill"]
    assert links[0]["external_link"]["url"] == "https://gitlab.test/g/p/-/jobs/7/artifacts/file/out/debian-i6300esb/drill.html"
