"""Reading the JSON files wdimage writes, with errors that name the file.

Each kind of document (manifest.json, drill report, index) is a JsonKind: the schema version this wdimage
writes, the versions it still reads, and the keys every version has. `read` returns the document's object (a
usage error, exit 2, naming the file otherwise); `recognizes` says whether a file is one (before replacing it).
"""

import dataclasses
import json
from pathlib import Path

from wdimage.errors import usage_error


def read_json_object(path: Path, hint: str | None = None) -> dict:
    """The JSON object in `path`; a usage error (exit 2) naming the file, and the line for bad JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise usage_error(f"{path}: no such file", hint) from None
    except json.JSONDecodeError as e:
        raise usage_error(f"{path}: line {e.lineno}: not valid JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise usage_error(f"{path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise usage_error(f"{path}: expected a JSON object at the top level")
    return data


@dataclasses.dataclass(frozen=True)
class JsonKind:
    """One kind of JSON document wdimage writes."""

    noun: str  # in messages: "manifest", "drill report"
    schema: int  # the version this wdimage writes
    readable: tuple[int, ...]  # the versions it reads (older ones included)
    keys: tuple[str, ...] = ()  # top-level keys every readable version has

    def accepts(self, data: object) -> bool:
        return (isinstance(data, dict) and data.get("schema") in self.readable
                and all(key in data for key in self.keys))

    def recognizes(self, path: Path) -> bool:
        """Whether `path` holds a document of this kind (any readable version)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return self.accepts(data)

    def read(self, path: Path, hint: str | None = None) -> dict:
        """The document's object; a usage error naming the file when it is no readable version of this kind."""
        data = read_json_object(path, hint)
        if data.get("schema") not in self.readable:
            versions = ", ".join(str(v) for v in self.readable)
            raise usage_error(f"{path}: {self.noun} schema {data.get('schema')!r} is not supported",
                              f"this wdimage reads schema {versions}")
        missing = [key for key in self.keys if key not in data]
        if missing:
            raise usage_error(f"{path}: not a wdimage {self.noun}: no key {missing[0]!r}", hint)
        return data


# manifest.json of a build output directory (wdimage.image.manifest reads it into a Manifest).
MANIFEST = JsonKind("manifest", schema=1, readable=(1,))
# `wdimage drill --json`; schema 2 since the scenario table (outcome, path, window per fault); 3 since the
# timelines (each fault's moments, the first boot, the drill's start), the machine and versions, console tails.
DRILL_REPORT = JsonKind("drill report", schema=3, readable=(1, 2, 3), keys=("name", "checks", "faults", "passed"))
# `wdimage index` (JSON form).
INDEX = JsonKind("index", schema=1, readable=(1,), keys=("images",))
# `wdimage audit --json` (docs/audit.md has the schema).
AUDIT = JsonKind("audit report", schema=1, readable=(1,), keys=("hosts", "domains", "summary"))
