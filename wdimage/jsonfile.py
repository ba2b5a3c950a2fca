"""Reading the JSON files wdimage writes (manifest.json, drill reports), with errors that name the file."""

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
