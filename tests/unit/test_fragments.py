"""Fragment files: parsing with file:line errors, ordering and overrides, wdimage's own fragments."""

import gzip
from pathlib import Path

import pytest

from wdimage.errors import ExitCode, WdimageError
from wdimage.kconfig.fragments import (
    config_values,
    fragment_paths,
    merge,
    nearest_names,
    parse_fragment,
    read_config_text,
)
from wdimage.models import MODELS, Model


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parses_every_kind_of_line(tmp_path):
    f = write(tmp_path, "a.config", "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n"
                                     'CONFIG_D="x \\"q\\" \\\\ y"\nCONFIG_E=-5\nCONFIG_F=0x1f\n'
                                     "CONFIG_G=binder,hwbinder\n")
    got = [(a.name, a.value, a.quoted, a.line) for a in parse_fragment(f)]
    assert got == [("A", "y", False, 3), ("B", "n", False, 4), ("C", "m", False, 5),
                   ("D", 'x "q" \\ y', True, 6), ("E", "-5", False, 7), ("F", "0x1f", False, 8),
                   ("G", "binder,hwbinder", False, 9)]


def test_config_line_round_trips(tmp_path):
    f = write(tmp_path, "a.config", 'CONFIG_D="x \\"q\\" \\\\ y"\n# CONFIG_B is not set\nCONFIG_C=m\n')
    lines = [a.config_line() for a in parse_fragment(f)]
    assert lines == ['CONFIG_D="x \\"q\\" \\\\ y"', "# CONFIG_B is not set", "CONFIG_C=m"]


@pytest.mark.parametrize("line, message", [
    ("WATCHDOG=y", "malformed line"),
    ("CONFIG_WATCHDOG y", "malformed line"),
    ("CONFIG_WATCHDOG=", "no value"),
    ('CONFIG_CMDLINE="unterminated', "malformed string"),
    ('CONFIG_CMDLINE="a"b"', "malformed string"),
])
def test_bad_lines_exit_2_naming_file_and_line(tmp_path, line, message):
    f = write(tmp_path, "bad.config", f"CONFIG_OK=y\n{line}\n")
    with pytest.raises(WdimageError) as e:
        parse_fragment(f)
    assert e.value.code == ExitCode.USAGE
    assert f"{f}:2:" in e.value.message and message in e.value.message


def test_missing_prefix_hint(tmp_path):
    f = write(tmp_path, "bad.config", "WATCHDOG=y\n")
    with pytest.raises(WdimageError) as e:
        parse_fragment(f)
    assert "CONFIG_WATCHDOG=y" in e.value.hint


def test_missing_fragment_names_the_option(tmp_path):
    with pytest.raises(WdimageError, match="--fragment .*nope.config: no such file"):
        parse_fragment(tmp_path / "nope.config")


def test_later_fragments_override_earlier_ones_and_say_so(tmp_path):
    a = write(tmp_path, "a.config", "CONFIG_X=m\nCONFIG_Y=y\n")
    b = write(tmp_path, "b.config", "CONFIG_X=y\nCONFIG_Y=y\n")
    fs = merge([a, b])
    assert [(x.name, x.value, x.where) for x in fs.assignments] == [("X", "y", f"{b}:1"), ("Y", "y", f"{b}:2")]
    assert len(fs.overrides) == 1  # Y was asked for twice with the same value: not an override
    assert fs.overrides[0].describe() == f"{b}:1: CONFIG_X=y overrides CONFIG_X=m from {a}:1"


def test_fragment_paths_core_models_sysrq():
    names = [p.name for p in fragment_paths([Model.ITCO])]
    assert names == ["watchdog.config", "itco.config", "sysrq.config"]
    assert [p.name for p in fragment_paths()] == ["watchdog.config", "i6300esb.config", "ib700.config",
                                                  "sysrq.config"]
    assert all(p.is_file() for p in fragment_paths(list(Model)))


def test_every_model_fragment_enables_its_driver():
    for model, info in MODELS.items():
        (path,) = [p for p in fragment_paths([model]) if p.name == info.fragment]
        assert any(a.name == info.kconfig_symbol and a.value in ("y", "m") for a in parse_fragment(path))


def test_nearest_names():
    assert nearest_names("I6300ESB_WTD", ["I6300ESB_WDT", "IB700_WDT", "WATCHDOG"])[0] == "I6300ESB_WDT"
    assert nearest_names("ZZZZ", ["I6300ESB_WDT"]) == []


def test_config_values_and_gzip(tmp_path):
    text = '# CONFIG_A is not set\nCONFIG_B=m\nCONFIG_S="a b"\n# comment\n'
    plain = write(tmp_path, "config", text)
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    assert read_config_text(packed) == read_config_text(plain) == text
    assert config_values(text) == {"A": "n", "B": "m", "S": "a b"}


def test_unreadable_config_exits_2(tmp_path):
    with pytest.raises(WdimageError, match="--config .*: no such file") as e:
        read_config_text(tmp_path / "missing")
    assert e.value.code == ExitCode.USAGE
