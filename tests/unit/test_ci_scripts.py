"""The helper scripts the CI files call (scripts/ci/), run for real: loop nodes made in a fake /dev, output
directories found in both artifact shapes, the GitLab package upload with a recorder in place of curl."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "ci"


def run(script: str, *args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_shellcheck_passes_on_the_ci_scripts():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck not installed: run 'make deps'")
    result = subprocess.run(["shellcheck", *map(str, sorted(SCRIPTS.glob("*.sh")))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- loop-nodes.sh ------------------------------------------------------------------------------------------

needs_mknod = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of device nodes needs root (CAP_MKNOD)")


@needs_mknod
def test_loop_nodes_are_created_where_missing(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "loop0").write_text("not a device: must be left alone")
    os.mknod(dev / "loop3", 0o600 | stat.S_IFBLK, os.makedev(7, 3))
    result = run("loop-nodes.sh", dev, 8)
    assert result.returncode == 0, result.stderr
    control = (dev / "loop-control").stat()
    assert stat.S_ISCHR(control.st_mode) and os.major(control.st_rdev) == 10 and os.minor(control.st_rdev) == 237
    for n in (1, 2, 4, 5, 6, 7):
        node = (dev / f"loop{n}").stat()
        assert stat.S_ISBLK(node.st_mode), n
        assert (os.major(node.st_rdev), os.minor(node.st_rdev)) == (7, n)
        assert stat.S_IMODE(node.st_mode) == 0o660
    assert (dev / "loop0").read_text() == "not a device: must be left alone"
    assert stat.S_IMODE((dev / "loop3").stat().st_mode) == 0o600  # existing node untouched
    assert not (dev / "loop8").exists()
    assert "created 7 node(s)" in result.stdout
    again = run("loop-nodes.sh", dev, 8)
    assert again.returncode == 0 and "created 0 node(s)" in again.stdout


@needs_mknod
def test_loop_nodes_default_count_is_eight(tmp_path):
    assert run("loop-nodes.sh", tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop-control"] + [f"loop{n}" for n in range(8)]


@pytest.mark.parametrize("args, message", [(("/no/such/dev",), "is not a directory"),
                                           ((".", "0"), "expected 1..256"), ((".", "8; rm -rf /"), "expected")])
def test_loop_nodes_refuses_bad_arguments(tmp_path, args, message):
    result = run("loop-nodes.sh", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- output-dirs.sh -----------------------------------------------------------------------------------------

def _output(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text("{}")
    return directory


def test_output_dirs_finds_both_download_shapes(tmp_path):
    several = tmp_path / "several"
    a = _output(several / "image-debian-itco" / "debian-itco")
    b = _output(several / "image-centos-ib700" / "centos-ib700")
    (several / "logs-gentoo-i6300esb").mkdir()  # no manifest: not an output directory
    _output(several / "image-x" / "x" / "too-deep")
    result = run("output-dirs.sh", several)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(b), str(a)]
    single = tmp_path / "single"
    c = _output(single / "debian-itco")
    assert run("output-dirs.sh", single).stdout.splitlines() == [str(c)]
    (tmp_path / "empty").mkdir()
    assert run("output-dirs.sh", tmp_path / "empty").stdout == ""


def test_output_dirs_refuses_a_missing_root(tmp_path):
    result = run("output-dirs.sh", tmp_path / "images")
    assert result.returncode == 2 and "is not a directory" in result.stderr


# --- gitlab-publish.sh --------------------------------------------------------------------------------------

def _fake_curl(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$CURL_ARGS"\n')
    (bin_dir / "curl").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CURL_ARGS": str(tmp_path / "curl-args"),
            "CI_JOB_TOKEN": "token-123", "PACKAGES_URL": "https://gitlab.test/api/v4/projects/7/packages/generic/wdimage/v1"}


def test_gitlab_publish_uploads_the_tarred_output_directory(tmp_path):
    env = _fake_curl(tmp_path)
    out = _output(tmp_path / "out" / "debian-ib700").parent
    result = run("gitlab-publish.sh", out, "debian-ib700", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "curl-args").read_text().splitlines()
    assert args[args.index("--header") + 1] == "JOB-TOKEN: token-123"
    assert args[args.index("--upload-file") + 1] == "debian-ib700.tar"
    assert args[-1] == env["PACKAGES_URL"] + "/debian-ib700.tar" and "--fail" in args
    listing = subprocess.run(["tar", "-tf", str(tmp_path / "debian-ib700.tar")], capture_output=True, text=True)
    assert "debian-ib700/manifest.json" in listing.stdout.split()


@pytest.mark.parametrize("name", ["no-such-image", "../out", "a b"])
def test_gitlab_publish_refuses_what_is_not_an_output_directory(tmp_path, name):
    env = _fake_curl(tmp_path)
    (tmp_path / "out").mkdir()
    result = run("gitlab-publish.sh", tmp_path / "out", name, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "is not a build output directory" in result.stderr
    assert not (tmp_path / "curl-args").exists()


# --- gitlab-trim-artifact.sh --------------------------------------------------------------------------------

def _built(tmp_path: Path, name: str, image_bytes: int) -> Path:
    directory = _output(tmp_path / "out" / name)
    (directory / f"{name}.qcow2").write_bytes(os.urandom(image_bytes))  # real blocks: du counts them
    (directory / "drill.json").write_text('{"passed": false}')
    return directory


def test_trim_leaves_the_image_out_of_an_oversize_artifact(tmp_path):
    directory = _built(tmp_path, "gentoo-i6300esb", 3 << 20)
    result = run("gitlab-trim-artifact.sh", "out", "gentoo-i6300esb", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (directory / "gentoo-i6300esb.qcow2").exists()
    assert (tmp_path / "oversize" / "gentoo-i6300esb.qcow2").stat().st_size == 3 << 20
    assert (directory / "manifest.json").is_file() and (directory / "drill.json").is_file()
    assert "over the artifact\nlimit of 2 MB" in (directory / "IMAGE-NOT-IN-ARTIFACT.txt").read_text()


def test_trim_keeps_an_artifact_within_the_limit_and_ignores_a_failed_build(tmp_path):
    directory = _built(tmp_path, "debian-ib700", 1 << 20)
    result = run("gitlab-trim-artifact.sh", "out", "debian-ib700", 5, cwd=tmp_path)
    assert result.returncode == 0 and "within the artifact limit" in result.stdout
    assert (directory / "debian-ib700.qcow2").is_file() and not (tmp_path / "oversize").exists()
    assert run("gitlab-trim-artifact.sh", "out", "centos-itco", 5, cwd=tmp_path).returncode == 0  # nothing built


@pytest.mark.parametrize("name, limit", [("../x", "5"), ("debian-ib700", "5 MB"), ("", "5")])
def test_trim_refuses_bad_arguments(tmp_path, name, limit):
    _built(tmp_path, "debian-ib700", 1 << 20)
    result = run("gitlab-trim-artifact.sh", "out", name, limit, cwd=tmp_path)
    assert result.returncode == 2


@pytest.mark.parametrize("script, args", [("output-dirs.sh", ()), ("gitlab-publish.sh", ("out",)),
                                          ("gitlab-trim-artifact.sh", ("out", "x"))])
def test_scripts_exit_2_on_a_wrong_command_line(tmp_path, script, args):
    result = run(script, *args, cwd=tmp_path, env={"CI_JOB_TOKEN": "t", "PACKAGES_URL": "https://gitlab.test/p"})
    assert result.returncode == 2 and "usage:" in result.stderr


# --- gitlab-drill-links.sh ----------------------------------------------------------------------------------

JOB_URL = "https://gitlab.test/group/project/-/jobs/42"


def test_drill_links_name_the_pages_that_exist_in_the_jobs_artifacts(tmp_path):
    import json

    directory = _output(tmp_path / "out" / "debian-ib700")
    (directory / "drill.html").write_text("<!DOCTYPE html>")
    result = run("gitlab-drill-links.sh", "out", "debian-ib700", env={"CI_JOB_URL": JOB_URL}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    links = [item["external_link"] for item in json.loads(result.stdout)["wdimage drill"]]
    assert [link["url"] for link in links] == [f"{JOB_URL}/artifacts/file/out/debian-ib700/drill.html",
                                               f"{JOB_URL}/artifacts/browse/out/debian-ib700/"]  # no drill.md yet
    (directory / "drill.md").write_text("<!-- wdimage drill report -->\n")
    result = run("gitlab-drill-links.sh", "out", "debian-ib700", env={"CI_JOB_URL": JOB_URL}, cwd=tmp_path)
    labels = [item["external_link"]["label"] for item in json.loads(result.stdout)["wdimage drill"]]
    assert labels[1] == "debian-ib700: the drill's summary (Markdown)" and len(labels) == 3


@pytest.mark.parametrize("out, name, url", [
    ("out", "a b", JOB_URL), ("out", '"x', JOB_URL), ("../out", "debian-ib700", JOB_URL),
    ("out", "debian-ib700", 'https://gitlab.test/"}]}'), ("out", "debian-ib700", "ftp://gitlab.test/x"),
])
def test_drill_links_refuse_what_would_break_the_json(tmp_path, out, name, url):
    result = run("gitlab-drill-links.sh", out, name, env={"CI_JOB_URL": url}, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""


def test_drill_links_need_the_job_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI_JOB_URL"}
    result = subprocess.run([str(SCRIPTS / "gitlab-drill-links.sh"), "out", "x"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "usage:" in result.stderr
