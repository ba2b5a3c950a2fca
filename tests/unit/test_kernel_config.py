"""`wdimage kernel-config` run in-process on a tiny Kconfig tree: merge, check, explanations, bad input."""

import gzip
import json
from pathlib import Path

import pytest

from wdimage import log
from wdimage.cli import main
from wdimage.kconfig.config import check_config, merge_fragments
from wdimage.models import Model

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "kconfig" / "watchdog"
WATCHDOG_OFF = "CONFIG_MODULES=y\nCONFIG_PCI=y\nCONFIG_EXPERT=y\n# CONFIG_WATCHDOG is not set\n"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ARCH", raising=False)
    monkeypatch.setattr(log, "quiet", log.quiet)  # main(["-q", ...]) sets it: restore it for other tests


def config(tmp_path: Path, text: str = WATCHDOG_OFF, name: str = ".config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["-q", "kernel-config", *argv, "--arch", "x86"] if "--arch" not in argv else
              ["-q", "kernel-config", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def merge(capsys, cfg: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "--merge", "--kernel-src", str(TREE), "--config", str(cfg), *extra)


def values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_"):
            name, _, value = line.partition("=")
            out[name] = value
        elif line.startswith("# CONFIG_"):
            out[line.split()[1]] = "n"
    return out


def test_merge_writes_the_resolved_config_and_keeps_the_old_one(tmp_path, capsys):
    cfg = config(tmp_path)
    rc, out, _ = merge(capsys, cfg)
    assert rc == 0, out
    got = values(cfg)
    assert (got["CONFIG_WATCHDOG"], got["CONFIG_WATCHDOG_CORE"]) == ("y", "y")
    assert (got["CONFIG_I6300ESB_WDT"], got["CONFIG_IB700_WDT"], got["CONFIG_MAGIC_SYSRQ"]) == ("m", "m", "y")
    assert got["CONFIG_HZ"] == "250"  # resolved like olddefconfig: defaults filled in
    assert (tmp_path / ".config.old").read_text() == WATCHDOG_OFF
    assert "merged: 5 values took effect" in out
    assert not list(tmp_path.glob(".*.tmp"))


def test_merge_is_idempotent(tmp_path, capsys):
    cfg = config(tmp_path)
    assert merge(capsys, cfg)[0] == 0
    first = cfg.read_text()
    assert merge(capsys, cfg)[0] == 0
    assert cfg.read_text() == first


def test_unmet_dependency_exits_3_explains_and_writes_nothing(tmp_path, capsys):
    cfg = config(tmp_path, WATCHDOG_OFF.replace("CONFIG_PCI=y", "# CONFIG_PCI is not set"))
    rc, out, _ = merge(capsys, cfg, "--json")
    assert rc == 3
    assert cfg.read_text() == WATCHDOG_OFF.replace("CONFIG_PCI=y", "# CONFIG_PCI is not set")
    assert not (tmp_path / ".config.old").exists()
    report = json.loads(out)
    assert report["ok"] is False and report["written"] is False
    (bad,) = [s for s in report["symbols"] if not s["ok"]]
    assert (bad["symbol"], bad["requested"], bad["result"]) == ("CONFIG_I6300ESB_WDT", "m", "n")
    assert bad["source"].endswith("i6300esb.config:2")
    assert {"term": "PCI", "value": "n"} in bad["explanation"]["unmet_depends"]


def test_text_explanation_names_the_term_and_its_value(tmp_path, capsys):
    cfg = config(tmp_path, WATCHDOG_OFF.replace("CONFIG_PCI=y", "# CONFIG_PCI is not set"))
    rc, out, _ = merge(capsys, cfg, "--model", "itco")
    assert rc == 3
    assert "FAIL CONFIG_ITCO_WDT: requested m, got n" in out
    assert "unmet dependencies: PCI (=n)" in out
    assert "FAIL CONFIG_LPC_ICH: requested m, got n" in out
    assert "not merged" in out


def test_modules_off_rules_out_m_and_builtin_asks_for_y(tmp_path, capsys):
    text = WATCHDOG_OFF.replace("CONFIG_MODULES=y", "# CONFIG_MODULES is not set")
    cfg = config(tmp_path, text)
    rc, out, _ = merge(capsys, cfg, "--json")
    assert rc == 3
    bad = {s["symbol"]: s for s in json.loads(out)["symbols"] if not s["ok"]}
    assert set(bad) == {"CONFIG_I6300ESB_WDT", "CONFIG_IB700_WDT"}
    assert bad["CONFIG_IB700_WDT"]["explanation"]["modules_off"] is True
    assert cfg.read_text() == text
    rc, out, _ = merge(capsys, cfg, "--builtin")
    assert rc == 0, out
    assert values(cfg)["CONFIG_I6300ESB_WDT"] == "y"
    assert "--builtin: requested m, asked for y" in out


def test_selected_symbol_cannot_be_switched_off(tmp_path, capsys):
    cfg = config(tmp_path, WATCHDOG_OFF + "CONFIG_WATCHDOG=y\nCONFIG_BUILTIN_WDT_USER=y\n")
    off = config(tmp_path, "# CONFIG_I6300ESB_WDT is not set\n", "off.config")
    rc, out, _ = merge(capsys, cfg, "--fragment", str(off))
    assert rc == 3
    assert "FAIL CONFIG_I6300ESB_WDT: requested n, got y" in out
    assert "selected by: BUILTIN_WDT_USER (=y)" in out
    assert f"override: {off}:1: CONFIG_I6300ESB_WDT=n overrides CONFIG_I6300ESB_WDT=m" in out


def test_m_built_in_because_selected_is_accepted_with_a_note(tmp_path, capsys):
    cfg = config(tmp_path, WATCHDOG_OFF + "CONFIG_WATCHDOG=y\nCONFIG_BUILTIN_WDT_USER=y\n")
    rc, out, _ = merge(capsys, cfg)
    assert rc == 0, out
    assert "built in (=y) rather than m: selected by BUILTIN_WDT_USER (=y)" in out


def test_typo_in_a_fragment_exits_2_with_a_suggestion(tmp_path, capsys):
    cfg = config(tmp_path)
    frag = config(tmp_path, "# mine\nCONFIG_I6300ESB_WTD=m\n", "mine.config")
    rc, _, err = merge(capsys, cfg, "--fragment", str(frag))
    assert rc == 2
    assert f"{frag}:2: CONFIG_I6300ESB_WTD is not a symbol of this kernel" in err
    assert "did you mean CONFIG_I6300ESB_WDT" in err
    assert cfg.read_text() == WATCHDOG_OFF


@pytest.mark.parametrize("line, kind", [
    ("CONFIG_WATCHDOG=m", "bool"), ('CONFIG_HZ="fast"', "int"), ("CONFIG_CMDLINE=y", "string"),
    ("CONFIG_PHYSICAL_START=0xZZ", "hex"), ("CONFIG_I6300ESB_WDT=5", "tristate"), ("CONFIG_HZ=0x10", "int"),
    ("CONFIG_WATCHDOG=yes", "bool"),
])
def test_wrongly_typed_values_exit_2(tmp_path, capsys, line, kind):
    cfg = config(tmp_path)
    frag = config(tmp_path, line + "\n", "mine.config")
    rc, _, err = merge(capsys, cfg, "--fragment", str(frag))
    assert rc == 2
    assert f"{frag}:1:" in err
    if kind:
        assert f"is a {kind} symbol" in err
    assert cfg.read_text() == WATCHDOG_OFF


def test_output_elsewhere_leaves_the_config_alone(tmp_path, capsys):
    cfg = config(tmp_path)
    out_file = tmp_path / "merged.config"
    rc, _, _ = merge(capsys, cfg, "--output", str(out_file))
    assert rc == 0
    assert cfg.read_text() == WATCHDOG_OFF
    assert values(out_file)["CONFIG_WATCHDOG"] == "y"
    assert not (tmp_path / "merged.config.old").exists()


def test_missing_config_and_tree_exit_2(tmp_path, capsys):
    rc, _, err = merge(capsys, tmp_path / "nope")
    assert rc == 2 and "--config" in err and "nope" in err
    rc, _, err = run(capsys, "--merge", "--kernel-src", str(tmp_path), "--config", str(config(tmp_path)))
    assert rc == 2 and "no Kconfig file" in err


@pytest.mark.parametrize("argv, option", [
    (["--merge", "--strict"], "--strict"), (["--check", "--builtin"], "--builtin"),
    (["--check", "--output", "x"], "--output"), (["--check", "--running", "--config", "x"], "--running"),
])
def test_options_that_do_not_fit_the_mode_exit_2(tmp_path, capsys, argv, option):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and option in err


DEBIAN_LIKE = ("CONFIG_WATCHDOG=y\nCONFIG_WATCHDOG_CORE=m\nCONFIG_I6300ESB_WDT=m\nCONFIG_IB700_WDT=m\n"
               "CONFIG_MAGIC_SYSRQ=y\nCONFIG_PCI=y\nCONFIG_MODULES=y\n")


def test_check_accepts_m_for_y_unless_strict(tmp_path, capsys):
    cfg = config(tmp_path, DEBIAN_LIKE)
    rc, out, _ = run(capsys, "--check", "--config", str(cfg))
    assert rc == 0, out
    assert "watchdog-ready" in out
    rc, out, _ = run(capsys, "--check", "--config", str(cfg), "--strict")
    assert rc == 3
    assert "FAIL CONFIG_WATCHDOG_CORE: requested y, got m" in out
    assert cfg.read_text() == DEBIAN_LIKE


def test_check_without_a_tree_is_a_plain_comparison(tmp_path, capsys):
    cfg = config(tmp_path, DEBIAN_LIKE.replace("CONFIG_IB700_WDT=m\n", ""))
    rc, out, _ = run(capsys, "--check", "--config", str(cfg), "--json")
    assert rc == 3
    report = json.loads(out)
    (bad,) = [s for s in report["symbols"] if not s["ok"]]
    assert (bad["symbol"], bad["result"], bad["explanation"]) == ("CONFIG_IB700_WDT", None, None)
    rc, _, _ = run(capsys, "--check", "--config", str(cfg), "--model", "i6300esb")
    assert rc == 0


def test_check_with_a_tree_explains(tmp_path, capsys):
    cfg = config(tmp_path, DEBIAN_LIKE.replace("CONFIG_PCI=y", "# CONFIG_PCI is not set")
                 .replace("CONFIG_I6300ESB_WDT=m\n", ""))
    rc, out, _ = run(capsys, "--check", "--config", str(cfg), "--kernel-src", str(TREE))
    assert rc == 3
    assert "unmet dependencies: PCI (=n)" in out


def test_check_config_api(tmp_path):
    cfg = config(tmp_path, DEBIAN_LIKE)
    report = check_config(cfg, [Model.I6300ESB])
    assert report.ok
    assert [s["symbol"] for s in report.to_dict()["symbols"]] == [
        "CONFIG_WATCHDOG", "CONFIG_WATCHDOG_CORE", "CONFIG_I6300ESB_WDT", "CONFIG_MAGIC_SYSRQ"]
    assert "watchdog-ready" in report.explain()
    report = check_config(cfg, [Model.ITCO], strict=True)
    assert not report.ok
    assert {s.name for s in report.failed} == {"WATCHDOG_CORE", "LPC_ICH", "ITCO_WDT"}
    json.dumps(report.to_dict())


def test_merge_fragments_api(tmp_path):
    cfg = config(tmp_path)
    report = merge_fragments(cfg, [Model.IB700], kernel_src=TREE, arch="x86")
    assert report.ok and report.written
    assert values(cfg)["CONFIG_IB700_WDT"] == "m"
    assert "CONFIG_I6300ESB_WDT" not in values(cfg) or values(cfg)["CONFIG_I6300ESB_WDT"] == "n"


def test_running_config_prefers_proc_then_boot(tmp_path):
    import gzip
    import platform

    from wdimage.errors import WdimageError
    from wdimage.kconfig.config import running_config
    proc, boot = tmp_path / "config.gz", tmp_path / "boot"
    boot.mkdir()
    with pytest.raises(WdimageError, match="--running: neither"):
        running_config(proc, boot)
    (boot / f"config-{platform.release()}").write_text(DEBIAN_LIKE)
    assert running_config(proc, boot) == boot / f"config-{platform.release()}"
    proc.write_bytes(gzip.compress(DEBIAN_LIKE.encode()))
    assert running_config(proc, boot) == proc
    assert check_config(proc, [Model.I6300ESB]).ok


def test_output_that_cannot_be_written_exits_2_and_leaves_nothing_behind(tmp_path, capsys):
    cfg = config(tmp_path)
    target = tmp_path / "adir"
    target.mkdir()
    rc, _, err = merge(capsys, cfg, "--output", str(target))
    assert rc == 2 and "--output" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".config", "adir", "cache"]
    assert cfg.read_text() == WATCHDOG_OFF


def test_new_output_file_gets_ordinary_permissions(tmp_path, capsys):
    out_file = tmp_path / "new.config"
    assert merge(capsys, config(tmp_path), "--output", str(out_file))[0] == 0
    assert out_file.stat().st_mode & 0o044  # readable by others per the umask, not mkstemp's 0600


def test_unquoted_string_value_is_accepted_for_a_string_symbol(tmp_path, capsys):
    # As scripts/kconfig does (kernel/configs/android-base.config: CONFIG_ANDROID_BINDER_DEVICES=binder,...).
    cfg = config(tmp_path)
    frag = config(tmp_path, "CONFIG_CMDLINE=console=ttyS0,115200\n", "mine.config")
    rc, out, _ = merge(capsys, cfg, "--fragment", str(frag))
    assert rc == 0, out
    assert 'CONFIG_CMDLINE="console=ttyS0,115200"' in cfg.read_text().splitlines()


def test_a_kernel_without_sysrq_is_watchdog_ready_but_not_drillable(tmp_path, capsys):
    """Magic SysRq is what the drill's panic fault needs, not the watchdog: it does not decide the exit code."""
    cfg = config(tmp_path, DEBIAN_LIKE.replace("CONFIG_MAGIC_SYSRQ=y\n", "# CONFIG_MAGIC_SYSRQ is not set\n"))
    rc, out, _ = run(capsys, "--check", "--config", str(cfg))
    assert rc == 0, out
    assert "watchdog-ready: " in out and "not watchdog-ready" not in out
    assert "MISS CONFIG_MAGIC_SYSRQ: requested y, got n" in out and "the drill needs it, not the watchdog" in out
    assert "not drillable: CONFIG_MAGIC_SYSRQ missing" in out
    rc, out, _ = run(capsys, "--check", "--config", str(cfg), "--json")
    report = json.loads(out)
    assert rc == 0 and report["ok"] is True and report["drillable"] is False
    assert {s["symbol"]: s["needed_for"] for s in report["symbols"]}["CONFIG_MAGIC_SYSRQ"] == "drill"
    # Without the driver it is not ready, whatever SysRq says.
    cfg.write_text(DEBIAN_LIKE.replace("CONFIG_I6300ESB_WDT=m\n", ""))
    rc, out, _ = run(capsys, "--check", "--config", str(cfg), "--model", "i6300esb")
    assert rc == 3 and "not watchdog-ready: 1 of 3 watchdog values missing" in out and "not drillable" not in out


def test_running_kernel_without_sysrq_exits_0_and_says_not_drillable(tmp_path, capsys, monkeypatch):
    proc = tmp_path / "config.gz"
    proc.write_bytes(gzip.compress(DEBIAN_LIKE.replace("CONFIG_MAGIC_SYSRQ=y\n", "").encode()))
    monkeypatch.setattr("wdimage.commands.kernel_config.running_config", lambda: proc)
    rc, out, _ = run(capsys, "--check", "--running")
    assert rc == 0 and "watchdog-ready" in out and "not drillable" in out


def test_merge_still_demands_sysrq(tmp_path):
    """A kernel wdimage configures (merge, the source build) keeps SysRq so that its image can be drilled."""
    cfg = config(tmp_path)
    report = merge_fragments(cfg, [Model.I6300ESB], kernel_src=TREE, arch="x86")
    assert report.ok and {s.name: s.drill_only for s in report.symbols}["MAGIC_SYSRQ"] is True
    assert values(cfg)["CONFIG_MAGIC_SYSRQ"] == "y"


@pytest.mark.parametrize("text, why", [("", "it is empty"), ("hello\n", "no CONFIG_ line"),
                                        ("# a comment\nWATCHDOG=y\n", "no CONFIG_ line")])
def test_check_of_a_file_that_is_not_a_kernel_config_exits_2_naming_it(tmp_path, capsys, text, why):
    """Not "not drillable: CONFIG_MAGIC_SYSRQ missing" with exit 3: the file is not a config at all."""
    cfg = config(tmp_path, text, name="notes.txt")
    rc, out, err = run(capsys, "--check", "--config", str(cfg))
    assert rc == 2 and out == ""
    assert f"--config {cfg}: not a kernel config" in err and why in err
    assert "MAGIC_SYSRQ" not in err


def test_check_of_dev_null_exits_2(capsys):
    rc, _, err = run(capsys, "--check", "--config", "/dev/null")
    assert rc == 2 and "--config /dev/null: not a kernel config: it is empty" in err


def test_a_config_with_only_unset_lines_is_still_a_config(tmp_path, capsys):
    cfg = config(tmp_path, "# CONFIG_WATCHDOG is not set\n")
    rc, out, _ = run(capsys, "--check", "--config", str(cfg))
    assert rc == 3 and "CONFIG_WATCHDOG" in out
