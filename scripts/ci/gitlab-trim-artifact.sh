#!/bin/bash
# GitLab: keep a build job's artifact under the instance's maximum artifact size by moving the disk image out of
# the output directory when the directory is larger than LIMIT_MB. The manifest, drill result, SBOM, checksums
# and launch files stay, so the index still sees the cell and its drill result; a note says where the image is.
# GitLab.com's maximum is 1 GB per job (https://docs.gitlab.com/user/gitlab_com/); a larger artifact is
# rejected and the job fails, and the index would then report the cell as having produced nothing.
#
# Usage: gitlab-trim-artifact.sh OUT_DIR NAME LIMIT_MB     (run as after_script: also after a failed drill)
set -euo pipefail

if [ "$#" -ne 3 ]; then
    echo "usage: gitlab-trim-artifact.sh OUT_DIR NAME LIMIT_MB" >&2
    exit 2
fi
out=$1 name=$2 limit=$3
if ! [[ "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]] || ! [[ "$limit" =~ ^[0-9]{1,7}$ ]]; then
    echo "gitlab-trim-artifact.sh: expected an image name and a size in MB, got '$name' '$limit'" >&2
    exit 2
fi
dir=$out/$name
if [ ! -f "$dir/manifest.json" ]; then
    exit 0  # nothing was built: the artifact holds logs only
fi
size=$(du -sm "$dir" | cut -f1)
if [ "$size" -le "$limit" ]; then
    echo "$dir: $size MB, within the artifact limit of $limit MB"
    exit 0
fi
mkdir -p oversize
mv "$dir/$name.qcow2" oversize/
cat > "$dir/IMAGE-NOT-IN-ARTIFACT.txt" <<NOTE
$name.qcow2 was left out of this job's artifact: the output directory was $size MB, over the artifact
limit of $limit MB. On a tag whose drill passed, the whole directory is $name.tar in the project's
package registry (linked from the release notes); otherwise rebuild it with the command in the README.
NOTE
echo "$dir: $size MB, over $limit MB: $name.qcow2 left out of the artifact"
