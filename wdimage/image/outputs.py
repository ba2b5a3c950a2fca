"""A build's output directory: what counts as a previous wdimage output, and publishing over one.

`--output DIR` may name a directory that already exists. wdimage replaces it (keeping it as DIR.old) only
when it is a previous wdimage output: a directory (not a symbolic link) whose manifest.json is wdimage's
(wdimage.image.manifest reads it; it names the image, its files and build.wdimage_version) and which holds
nothing but the files that manifest lists, manifest.json, SHA256SUMS and drill reports (JSON of any schema
wdimage reads, JUnit XML, HTML, Markdown). Anything else is refused with exit 2 naming it, so that `--output ~/images` never
deletes what the user kept there; `--force` replaces it anyway.
"""

import os
import shutil
import stat
from pathlib import Path
from xml.etree import ElementTree

from wdimage import log
from wdimage.errors import WdimageError, usage_error
from wdimage.fileio import fsync_directory
from wdimage.image.manifest import FILE, read_manifest
from wdimage.jsonfile import DRILL_REPORT


def is_drill_report(path: Path) -> bool:
    """A `wdimage drill --json` report, of any schema this wdimage reads."""
    return DRILL_REPORT.recognizes(path)


def is_junit_report(path: Path) -> bool:
    """A `wdimage drill --junit` report: JUnit XML whose test suites are wdimage's."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return False
    suites = [root] if root.tag == "testsuite" else list(root) if root.tag == "testsuites" else []
    return bool(suites) and all(s.tag == "testsuite" and s.get("name", "").startswith("wdimage drill ")
                                for s in suites)


# How wdimage's HTML and Markdown reports begin (wdimage.drill.pages writes them): how a previous one is known.
HTML_GENERATOR = '<meta name="generator" content="wdimage '
MARKDOWN_MARK = "<!-- wdimage drill report -->"


def _head(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def is_html_report(path: Path) -> bool:
    """A `wdimage drill --html` page (or another wdimage HTML report): its generator line says so."""
    head = _head(path)
    return head.startswith("<!DOCTYPE html>") and HTML_GENERATOR in head


def is_markdown_report(path: Path) -> bool:
    """A `wdimage drill --markdown` file: its first line is wdimage's mark."""
    return _head(path, len(MARKDOWN_MARK)) == MARKDOWN_MARK


def foreign_entry(directory: Path) -> str | None:
    """None when `directory` is a previous wdimage output; otherwise why not (naming the file at fault)."""
    manifest_path = directory / FILE
    if not manifest_path.exists():
        return f"it has no {FILE}"
    try:
        manifest = read_manifest(manifest_path)
    except WdimageError:
        manifest = None
    if not (manifest and manifest.name is not None and manifest.files is not None
            and manifest.build is not None and manifest.build.wdimage_version is not None):
        return f"{manifest_path} is not wdimage's manifest"
    ours = {*manifest.files.names(), FILE, "SHA256SUMS"}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name in ours and entry.is_file(follow_symlinks=False):
            continue
        if entry.is_file(follow_symlinks=False) and (
                entry.name.endswith(".json") and is_drill_report(Path(entry.path))
                or entry.name.endswith(".xml") and is_junit_report(Path(entry.path))
                or entry.name.endswith(".html") and is_html_report(Path(entry.path))
                or entry.name.endswith(".md") and is_markdown_report(Path(entry.path))):
            continue
        return f"{entry.path} is not part of it"
    return None


def check_output_dir(output: Path, force: bool = False, option: str = "--output") -> None:
    """Exit 2 unless `output` is absent, an empty directory, or a previous wdimage output (or `force`)."""
    try:
        st = os.lstat(output)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) and not force:
        raise usage_error(f"{option} {output}: is a symbolic link; wdimage replaces only its own output directories",
                          hint="name the directory itself, or pass --force to replace the link")
    if not output.is_dir():
        raise usage_error(f"{option} {output}: exists and is not a directory")
    if force or stat.S_ISLNK(st.st_mode) or not any(output.iterdir()):
        return
    why = foreign_entry(output)
    if why:
        raise usage_error(f"{option} {output}: exists and is not a previous wdimage output ({why}); "
                          "wdimage will not replace it",
                          hint="choose a new directory, or pass --force to replace it (kept as DIR.old)")


def publish(staging: Path, output: Path, force: bool = False) -> None:
    """Rename the finished staging directory into place. A previous output (checked again now: it may have
    changed during the build) is kept as `<output>.old`, replacing an earlier `.old` that is wdimage's too."""
    check_output_dir(output, force)
    os.chmod(staging, 0o755)
    if os.path.lexists(output):
        if output.is_dir() and not output.is_symlink() and not any(output.iterdir()):
            output.rmdir()
        else:
            old = output.with_name(output.name + ".old")
            if os.path.lexists(old):
                check_output_dir(old, force, option=f"--output {output}: the previous output's backup")
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                else:
                    old.unlink()
            output.rename(old)
            log.info(f"previous output kept as {old}")
    staging.rename(output)
    fsync_directory(output.parent)
