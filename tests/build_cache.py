"""The real tests' image cache: one real `wdimage build` per set of inputs, reused while the result would not change.

An image is keyed by what decides its bytes, and by nothing else, so that a change to the drill or a report does
not rebuild seven images (about 75 s each) whose contents it cannot touch:
- the build's arguments and the DIB command line and environment its dry run prints (mirrors, element list,
  the content-addressed inputs such as watchdog.conf), with this checkout's and the output's paths left out;
- the source of every wdimage module the build imports, directly or not, anywhere in a module (lazy imports in
  functions too; read with ast, nothing is imported), and the package data beside those packages (templates);
- `elements/` and `kconfig-fragments/`;
- the versions of diskimage-builder and of the Debian tools the build runs.
A rerun with nothing changed reuses the cached output after checking its SHA256SUMS. Concurrent sessions
serialise on a lock file.
"""

import ast
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wdimage import cli
from wdimage.fileio import cache_dir

REPO = Path(__file__).resolve().parents[1]
BUILD_ENTRY = "wdimage.commands.build"  # the `wdimage build` command: what it imports is the build's code
DATA_TREES = ("elements", "kconfig-fragments")
DEBIAN_TOOLS = ("debootstrap", "qemu-utils", "e2fsprogs", "squashfs-tools")  # what DIB runs to make the image
# Variables of the dry-run command that say how fast the build will be, not what it makes: DIB reuses its
# debootstrap tarball only while it is fresh, so the first build of a cold cache would otherwise key differently
# from every later computation of the same key.
SPEED_HINTS = ("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE",)


def module_file(name: str, root: Path = REPO) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return [n for n in names if n.split(".")[0] == "wdimage"]


def import_closure(entry: str = BUILD_ENTRY, root: Path = REPO) -> list[Path]:
    """The source files of `entry` and of every wdimage module it imports, transitively, with their packages'
    __init__ files and the package data (non-Python files) of each package in the closure."""
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, root)
        if path is None:  # `from wdimage.x import a_function`: not a module
            continue
        files.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imported(ast.parse(path.read_text(), str(path)))
        if path.name == "__init__.py":
            files.update(_package_data(path.parent))
    return sorted(files)


def _package_data(package: Path) -> list[Path]:
    """A package's files that are not Python (templates/, ...), leaving out those of its subpackages."""
    data = []
    for path in package.rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        owner = path.parent
        while owner != package and not (owner / "__init__.py").is_file():
            owner = owner.parent
        if owner == package:
            data.append(path)
    return data


def _data_files(root: Path) -> list[Path]:
    files = []
    for name in DATA_TREES:
        top = root / name
        files += sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def _tool_versions() -> str:
    versions = {"diskimage-builder": importlib.metadata.version("diskimage-builder")}
    for package in DEBIAN_TOOLS:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        versions[package] = out.stdout.strip() if out.returncode == 0 else "absent"
    return json.dumps(versions, sort_keys=True)


def dry_run_command(args: tuple[str, ...], root: Path = REPO) -> str:
    """What `wdimage build ARGS --dry-run --json` says it would run, with the paths that differ between
    checkouts and outputs replaced by placeholders."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "out"
        proc = subprocess.run([sys.executable, "-m", "wdimage", "build", *args, "--dry-run", "--json",
                               "--output", str(output)], cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, f"wdimage build {' '.join(args)} --dry-run failed:\n{proc.stderr}"
        words = shlex.split(json.loads(proc.stdout)["command"])
        words = [w for w in words if w.split("=", 1)[0] not in SPEED_HINTS]
        return shlex.join(words).replace(str(output), "<output>").replace(str(root), "<repo>")


def build_key(args: tuple[str, ...], root: Path = REPO) -> str:
    digest = hashlib.sha256(repr(args).replace(str(root), "<repo>").encode() + b"\0"
                            + dry_run_command(args, root).encode())
    digest.update(_tool_versions().encode())
    for path in [*import_closure(BUILD_ENTRY, root), *_data_files(root)]:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _intact(directory: Path) -> bool:
    if not (directory / "manifest.json").is_file() or not (directory / "SHA256SUMS").is_file():
        return False
    return subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=directory,
                          capture_output=True).returncode == 0


def cached_build(args: tuple[str, ...], name: str) -> Path:
    key = build_key(args)
    base = cache_dir() / "test-builds"
    base.mkdir(parents=True, exist_ok=True)
    output = base / key / name
    with open(base / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building the same thing: wait for it
        if _intact(output):
            os.utime(output.parent)  # in use: keep it from pruning
        else:
            code = cli.main(["build", *args, "--output", str(output)])
            assert code == 0, f"wdimage build {' '.join(args)} failed with exit code {code}"
    _prune(base, keep=key)
    return output


def _prune(base: Path, keep: str, max_age: float = 2 * 24 * 3600) -> None:
    """Drop cached builds of older inputs that nobody used for two days (about 200 MB each)."""
    now = time.time()
    for entry in base.iterdir():
        if entry.is_dir() and entry.name != keep and now - entry.stat().st_mtime > max_age:
            shutil.rmtree(entry, ignore_errors=True)
            (base / f"{entry.name}.lock").unlink(missing_ok=True)
