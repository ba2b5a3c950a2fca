"""Bad input, counted: every command, each bad input refused with exit 2 (or 3) and a message naming the
option, file or line at fault, and every file the test gave it byte-identical (and same mode) afterwards.

Each row runs the real `wdimage` entry point (cli.main) in this process; `{d}` in an argument is the
test's scratch directory, which holds the input files made by `_inputs`.
"""

import json
import os
from pathlib import Path

import pytest

from wdimage import cli

MANIFEST = {"schema": 1, "name": "img", "distro": "debian", "release": "bookworm", "model": "i6300esb",
            "action": "reset", "timeout": 15, "boot": "direct", "agent": True,
            "kernel_cmdline": "root=LABEL=cloudimg-rootfs ro console=ttyS0",
            "files": {"image": "img.qcow2", "kernel": "img.vmlinuz", "initrd": "img.initrd"},
            "build": {"wdimage_version": "0.1.0"}, "checksums": {}, "packages": {}}


def _inputs(d: Path) -> None:
    """The files and directories the bad inputs point at."""
    (d / "a-file").write_text("not a directory\n")
    (d / "theirs").mkdir()
    (d / "theirs" / "thesis.tex").write_text("years of work\n")
    (d / "link-to-theirs").symlink_to(d / "theirs")
    (d / "looks-like-ours").mkdir()  # a wdimage manifest, but also a file of the user's
    (d / "looks-like-ours" / "manifest.json").write_text(json.dumps(MANIFEST))
    (d / "looks-like-ours" / "notes.txt").write_text("mine\n")
    (d / "bad-line.config").write_text("CONFIG_WATCHDOG=y\nWATCHDOG_CORE=y\n")
    (d / "no-value.config").write_text("# ok\nCONFIG_WATCHDOG=\n")
    (d / "open-string.config").write_text('CONFIG_CMDLINE="console=ttyS0\n')
    (d / "wrong-type.config").write_text("CONFIG_WATCHDOG=42\n")
    (d / "unknown.config").write_text("CONFIG_WATCHDOGG=y\n")
    (d / "binary.config").write_bytes(b"\xff\xfe\x00CONFIG\x80")
    (d / "good.config").write_text("CONFIG_WATCHDOG=y\n")
    (d / "one-word.txt").write_text("hello\n")
    (d / "empty.config").write_text("")
    (d / "empty-tree").mkdir()
    tree = d / "tree"  # a minimal Kconfig tree kconfiglib parses: the type errors are found against it
    (tree / "arch" / "x86").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION =\n")
    symbols = "".join(f'config {name}\n\t{kind} "{name}"\n' for name, kind in (
        ("MODULES", "bool"), ("WATCHDOG", "bool"), ("WATCHDOG_CORE", "bool"), ("I6300ESB_WDT", "tristate"),
        ("IB700_WDT", "tristate"), ("MAGIC_SYSRQ", "bool")))
    (tree / "Kconfig").write_text(f'mainmenu "t"\nsource "arch/$(SRCARCH)/Kconfig"\n{symbols}')
    (tree / "arch" / "x86" / "Kconfig").write_text('config X86\n\tdef_bool y\n')
    for name, edit in {"bad-json": None, "old-schema": {"schema": 7}, "bad-model": {"model": "i8042"},
                       "bad-timeout": {"model": "ib700", "timeout": 300}, "no-agent": {"agent": False},
                       "escape": {"files": {"image": "../../etc/passwd"}}}.items():
        build = d / name
        build.mkdir()
        text = "{\n  \"schema\": 1,\n  \"name\": \"img\",\n}\n" if edit is None else json.dumps({**MANIFEST, **edit})
        (build / "manifest.json").write_text(text)
    (d / "user-report.json").write_text('{"my": "data"}\n')
    (d / "report-link.json").symlink_to(d / "user-report.json")


BUILD = ["build", "debian", "--dry-run"]
# (arguments, exit code, what the message must name)
CASES = [
    # build: names, options, values that would reach a shell script, config file, XML or QEMU argument
    (BUILD + ["--name", "x\n"], 2, "--name"),
    (BUILD + ["--name", "a/b"], 2, "--name"),
    (BUILD + ["--name=-x"], 2, "--name"),
    (BUILD + ["--name", ".hidden"], 2, "--name"),
    (BUILD + ["--name", "n" * 65], 2, "--name"),
    (BUILD + ["--name", "a b"], 2, "--name"),
    (BUILD + ["--timeout", "0"], 2, "--timeout"),
    (BUILD + ["--model", "ib700", "--timeout", "31"], 2, "--timeout"),
    (BUILD + ["--model", "itco", "--timeout", "614"], 2, "--timeout"),
    (BUILD + ["--timeout", "ten"], 2, "--timeout"),
    (BUILD + ["--model", "i8042"], 2, "--model"),
    (BUILD + ["--action", "explode"], 2, "--action"),
    (BUILD + ["--mirror", "http://deb.example/debian x"], 2, "--mirror"),
    (BUILD + ["--mirror", "http://deb.example/debian\n"], 2, "--mirror"),
    (BUILD + ["--mirror", "gopher://deb.example/"], 2, "--mirror"),
    (BUILD + ["--mirror", "http://deb.example/'$(reboot)'"], 2, "--mirror"),
    (BUILD + ["--release", "bookworm;reboot"], 2, "--release"),
    (BUILD + ["--release", "bookworm\n"], 2, "--release"),
    (BUILD + ["--release", "../etc"], 2, "--release"),
    (BUILD + ["--ping", "gw example"], 2, "--ping"),
    (BUILD + ["--ping", "gw.example\n"], 2, "--ping"),
    (BUILD + ["--ping", "-gw.example"], 2, "--ping"),
    (BUILD + ["--interface", "eth0\n"], 2, "--interface"),
    (BUILD + ["--interface", "a-very-long-name0"], 2, "--interface"),
    (BUILD + ["--max-load", "0"], 2, "--max-load"),
    (BUILD + ["--kernel", "source"], 2, "--kernel"),
    (BUILD + ["--base-image", "{d}/a-file"], 2, "--base-image"),
    (["build", "centos", "--dry-run", "--base-image", "{d}/missing.qcow2"], 2, "--base-image"),
    (["build", "centos", "--dry-run", "--init", "openrc"], 2, "--init"),
    # build: output paths that are files, symbolic links or other people's directories
    (BUILD + ["--output", "{d}/a-file"], 2, "{d}/a-file"),
    (BUILD + ["--output", "{d}/theirs"], 2, "{d}/theirs"),
    (BUILD + ["--output", "{d}/link-to-theirs"], 2, "{d}/link-to-theirs"),
    (BUILD + ["--output", "{d}/looks-like-ours"], 2, "{d}/looks-like-ours/notes.txt"),
    # kernel-config: configs, fragments (file:line), kernel trees that are not trees
    (["kernel-config", "--check", "--config", "{d}/missing.config"], 2, "--config {d}/missing.config"),
    (["kernel-config", "--check", "--config", "{d}/binary.config"], 2, "--config {d}/binary.config"),
    (["kernel-config", "--check", "--config", "{d}/one-word.txt"], 2, "--config {d}/one-word.txt: not a kernel"),
    (["kernel-config", "--check", "--config", "{d}/empty.config"], 2, "--config {d}/empty.config: not a kernel"),
    (["kernel-config", "--check", "--config", "{d}/good.config", "--fragment", "{d}/bad-line.config"], 2,
     "{d}/bad-line.config:2"),
    (["kernel-config", "--check", "--config", "{d}/good.config", "--fragment", "{d}/no-value.config"], 2,
     "{d}/no-value.config:2"),
    (["kernel-config", "--check", "--config", "{d}/good.config", "--fragment", "{d}/open-string.config"], 2,
     "{d}/open-string.config:1"),
    (["kernel-config", "--check", "--config", "{d}/good.config", "--fragment", "{d}/missing.config"], 2,
     "--fragment {d}/missing.config"),
    (["kernel-config", "--merge", "--kernel-src", "{d}/empty-tree", "--config", "{d}/good.config"], 2,
     "{d}/empty-tree"),
    (["kernel-config", "--merge", "--kernel-src", "{d}/a-file", "--config", "{d}/good.config"], 2, "{d}/a-file"),
    (["kernel-config", "--merge", "--kernel-src", "{d}/tree", "--config", "{d}/good.config",
      "--fragment", "{d}/wrong-type.config"], 2, "{d}/wrong-type.config:1"),
    (["kernel-config", "--merge", "--kernel-src", "{d}/tree", "--config", "{d}/good.config",
      "--fragment", "{d}/unknown.config"], 2, "{d}/unknown.config:1"),
    (["kernel-config", "--merge", "--kernel-src", "{d}/tree", "--config", "{d}/good.config", "--arch", "vax"], 2,
     "--arch vax"),
    (["kernel-config", "--check", "--merge", "--config", "{d}/good.config"], 2, "--merge"),
    (["kernel-config", "--check", "--config", "{d}/good.config", "--running"], 2, "--running"),
    # drill: hand-edited manifests, report targets that are the user's files or links
    (["drill", "{d}/missing-build"], 2, "{d}/missing-build"),
    (["drill", "{d}/bad-json"], 2, "{d}/bad-json/manifest.json: line 4"),
    (["drill", "{d}/old-schema"], 2, "{d}/old-schema/manifest.json"),
    (["drill", "{d}/bad-model"], 2, "'model'"),
    (["drill", "{d}/bad-timeout"], 2, "'timeout'"),
    (["drill", "{d}/no-agent"], 2, "'agent'"),
    (["drill", "{d}/escape"], 2, "files.image"),
    (["drill", "{d}/looks-like-ours", "--json", "{d}/user-report.json"], 2, "--json {d}/user-report.json"),
    (["drill", "{d}/looks-like-ours", "--json", "{d}/report-link.json"], 2, "--json {d}/report-link.json"),
    (["drill", "{d}/looks-like-ours", "--json", "{d}/theirs"], 2, "--json {d}/theirs"),
    (["drill", "{d}/looks-like-ours", "--json", "{d}/no-dir/r.json"], 2, "--json {d}/no-dir/r.json"),
    (["drill", "{d}/looks-like-ours", "--fault", "meltdown"], 2, "--fault"),
    # diff, index, matrix
    (["diff", "{d}/bad-json", "{d}/looks-like-ours"], 2, "{d}/bad-json/manifest.json: line 4"),
    (["diff", "{d}/old-schema", "{d}/looks-like-ours"], 2, "{d}/old-schema/manifest.json"),
    (["diff", "{d}/missing-build", "{d}/looks-like-ours"], 2, "{d}/missing-build"),
    (["index", "{d}/a-file"], 2, "{d}/a-file"),
    (["index", "{d}/bad-json"], 2, "{d}/bad-json/manifest.json"),
    (["matrix", "--distro", "debian"], 2, "--distro"),
]


def _snapshot(d: Path) -> dict[str, tuple]:
    """Every path under `d`: its kind, mode and content (or link target)."""
    state = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            path = Path(root, name)
            st = os.lstat(path)
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                state[str(path)] = ("dir", st.st_mode)
            else:
                state[str(path)] = ("file", st.st_mode, path.read_bytes())
    return state


def test_there_are_at_least_30_bad_inputs_across_every_command():
    commands = {args[0] for args, _, _ in CASES}
    assert len(CASES) >= 30 and commands == {"build", "kernel-config", "drill", "diff", "index", "matrix"}


@pytest.mark.parametrize("args,code,names", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_refused_naming_it_and_changes_nothing(tmp_path, monkeypatch, capsys, args, code, names):
    d = tmp_path / "in"
    d.mkdir()
    _inputs(d)
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(d)
    before = _snapshot(d)
    argv = [a.replace("{d}", str(d)) for a in args]
    try:
        got = cli.main(argv)
    except SystemExit as e:  # argparse's own usage errors
        got = e.code
    err = capsys.readouterr().err
    assert got == code, f"wdimage {argv}: exit {got}, expected {code}; stderr: {err}"
    assert names.replace("{d}", str(d)) in err, f"the message does not name {names!r}: {err}"
    assert "Traceback" not in err
    assert _snapshot(d) == before, "an input file or directory changed"
