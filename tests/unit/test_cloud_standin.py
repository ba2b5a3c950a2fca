"""The stock-image stand-in of the real cloud-init test is `wdimage build debian`'s DIB command with the watchdog
element swapped for the stand-in element, and nothing else of wdimage's watchdog setup."""

from tests.cloud_standin import ELEMENT, ELEMENTS, standin_command, standin_key
from wdimage.image import build, dib


def test_the_standin_is_the_builds_dib_command_without_the_watchdog_element(tmp_path):
    standin = standin_command(tmp_path)
    settings = build.make_settings("debian", output=tmp_path / "out")
    built = build.dib_command(settings, dib.Layout.DIRECT, build.write_inputs(settings, dib.Layout.DIRECT),
                              tmp_path / "x")
    assert "wdimage-watchdog" in built.elements and "wdimage-watchdog" not in standin.elements
    assert [e for e in built.elements if e != "wdimage-watchdog"] + [ELEMENT] == list(standin.elements)
    env = dict(standin.env)
    assert not [k for k in env if k.startswith("DIB_WATCHDOG")]
    assert env["ELEMENTS_PATH"].split(":")[-1] == str(ELEMENTS)
    shared = {k: v for k, v in built.env if not k.startswith("DIB_WATCHDOG") and k != "ELEMENTS_PATH"}
    assert {k: v for k, v in env.items() if k != "ELEMENTS_PATH"} == shared  # mirrors, release, layout


def test_the_standin_key_follows_its_element(tmp_path):
    key = standin_key()
    copy = tmp_path / ELEMENT
    for path in (ELEMENTS / ELEMENT).rglob("*"):
        if path.is_file():
            (copy / path.relative_to(ELEMENTS / ELEMENT)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(ELEMENTS / ELEMENT)).write_bytes(path.read_bytes())
    assert standin_key(tmp_path) == key  # the same files: the same key
    (copy / "package-installs.yaml").write_text("cloud-init:\n")
    assert standin_key(tmp_path) != key
