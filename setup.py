"""Only the data files live here (everything else is in pyproject.toml): elements/ and kconfig-fragments/,
installed under <prefix>/share/wdimage/ (found by wdimage.datadir). setuptools' install_data keeps each
file's mode, so the elements' phase scripts stay executable in the wheel and after `pip install`
(package-data would not). pyproject.toml's data-files table cannot walk a tree, hence this file."""

import re
from pathlib import Path

from setuptools import Distribution, setup

install_data = Distribution().get_command_class("install_data")  # its module moved between setuptools releases


HERE = Path(__file__).parent
# The names dib-run-parts runs, as in wdimage.datadir.PHASE_SCRIPT_NAME (setup.py does not import the package).
PHASE_SCRIPT_NAME = re.compile(r"[0-9A-Za-z_-]+")


def tree(top: str) -> list[tuple[str, list[str]]]:
    """(install directory, files) for every directory under `top`, as data_files wants them."""
    entries = []
    for directory in sorted(p for p in [HERE / top, *(HERE / top).rglob("*")] if p.is_dir()):
        files = sorted(str(f.relative_to(HERE)) for f in directory.iterdir() if f.is_file())
        if files and "__pycache__" not in directory.parts:
            entries.append((str(Path("share", "wdimage", directory.relative_to(HERE))), files))
    return entries


class InstallData(install_data):
    """install_data, with every phase script of the elements executable in the installed tree, whatever the
    checkout's modes (DIB's dib-run-parts runs only executable ones).

    A phase script is a file directly in a phase directory (`install.d`, ...; not environment.d, which DIB
    sources) whose name dib-run-parts runs. The guest files kept beside the scripts have a dot in their names
    and keep their repository mode, as every other element file does."""

    def run(self):
        super().run()
        for path in map(Path, self.get_outputs()):
            if path.is_file() and "elements" in path.parts and path.parent.name.endswith(".d") \
                    and path.parent.name != "environment.d" and PHASE_SCRIPT_NAME.fullmatch(path.name):
                path.chmod(path.stat().st_mode | 0o111)


setup(data_files=tree("elements") + tree("kconfig-fragments"), cmdclass={"install_data": InstallData})
