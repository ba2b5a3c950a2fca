"""Only the data files live here (everything else is in pyproject.toml): elements/ and kconfig-fragments/,
installed under <prefix>/share/wdimage/ (found by wdimage.datadir). setuptools' install_data keeps each
file's mode, so the elements' phase scripts stay executable in the wheel and after `pip install`
(package-data would not). pyproject.toml's data-files table cannot walk a tree, hence this file."""

from pathlib import Path

from setuptools import Distribution, setup

install_data = Distribution().get_command_class("install_data")  # its module moved between setuptools releases


HERE = Path(__file__).parent


def tree(top: str) -> list[tuple[str, list[str]]]:
    """(install directory, files) for every directory under `top`, as data_files wants them."""
    entries = []
    for directory in sorted(p for p in [HERE / top, *(HERE / top).rglob("*")] if p.is_dir()):
        files = sorted(str(f.relative_to(HERE)) for f in directory.iterdir() if f.is_file())
        if files and "__pycache__" not in directory.parts:
            entries.append((str(Path("share", "wdimage", directory.relative_to(HERE))), files))
    return entries


class InstallData(install_data):
    """install_data, with every file of an element's phase directories executable in the installed tree.

    The repository keeps environment.d files 0644 (dib-lint refuses executable ones; DIB sources them, so
    their mode never matters at run time). Installed, every *.d/ file carries the run bit, so one rule holds
    for the whole installed elements tree: anything under a phase directory can be run."""

    def run(self):
        super().run()
        for path in map(Path, self.get_outputs()):
            if path.is_file() and "elements" in path.parts and path.parent.name.endswith(".d"):
                path.chmod(path.stat().st_mode | 0o111)


setup(data_files=tree("elements") + tree("kconfig-fragments"), cmdclass={"install_data": InstallData})
