#!/bin/bash
# GitLab, on a tag: upload one drilled output directory as NAME.tar to the project's generic package registry,
# where the release links to it. Job artifacts would expire and are capped in size (1 GB on GitLab.com,
# https://docs.gitlab.com/user/gitlab_com/); the package registry is GitLab's place for release files
# (https://docs.gitlab.com/user/packages/generic_packages/), and a CI job token may write to it.
#
# Usage: gitlab-publish.sh OUT_DIR NAME     (needs CI_JOB_TOKEN and PACKAGES_URL, the package version's URL)
set -euo pipefail

if [ "$#" -ne 2 ] || [ -z "${CI_JOB_TOKEN:-}" ] || [ -z "${PACKAGES_URL:-}" ]; then
    echo "usage: gitlab-publish.sh OUT_DIR NAME, with CI_JOB_TOKEN and PACKAGES_URL set" >&2
    exit 2
fi
out=$1 name=$2
if ! [[ "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]] || [ ! -f "$out/$name/manifest.json" ]; then
    echo "gitlab-publish.sh: $out/$name is not a build output directory" >&2
    exit 2
fi
tar -C "$out" -cf "$name.tar" "$name"
curl --fail --silent --show-error --header "JOB-TOKEN: $CI_JOB_TOKEN" --upload-file "$name.tar" \
    "$PACKAGES_URL/$name.tar"
echo "published $PACKAGES_URL/$name.tar"
