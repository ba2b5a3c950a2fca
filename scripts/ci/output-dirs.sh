#!/bin/bash
# Print the build output directories (those holding manifest.json) under ROOT, one a line, sorted.
#
# Usage: output-dirs.sh ROOT
#
# Each image job uploads `out/`, so its artifact holds the directory NAME/ with its manifest.json.
# actions/download-artifact with a `pattern` extracts each matched artifact into ROOT/ARTIFACT/, except
# when exactly one artifact matches: then it extracts that one straight into ROOT (the README's note on
# patterns, https://github.com/actions/download-artifact/pull/424). So a directory is ROOT/ARTIFACT/NAME/
# or ROOT/NAME/; GitLab's build jobs leave ROOT/NAME/ (ROOT=out). Both shapes are found, nothing deeper.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: output-dirs.sh ROOT" >&2
    exit 2
fi
root=$1
if [ ! -d "$root" ]; then
    echo "output-dirs.sh: $root is not a directory" >&2
    exit 2
fi
shopt -s nullglob
for manifest in "$root"/*/manifest.json "$root"/*/*/manifest.json; do
    dirname "$manifest"
done | LC_ALL=C sort
