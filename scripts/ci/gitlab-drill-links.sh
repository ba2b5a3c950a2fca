#!/bin/bash
# GitLab: the drill's reports of one build job as an annotations report (links in the job's sidebar:
# https://docs.gitlab.com/ci/yaml/artifacts_reports/#artifactsreportsannotations), since GitLab has no job
# summary: the HTML page (a timeline per scenario; GitLab shows it in the browser where the instance serves
# artifacts through Pages, and offers it as a download otherwise), the Markdown summary and the directory.
# Prints the JSON; only the reports that exist are linked.
#
# Usage: gitlab-drill-links.sh OUT_DIR NAME     (needs CI_JOB_URL)
set -euo pipefail

if [ "$#" -ne 2 ] || [ -z "${CI_JOB_URL:-}" ]; then
    echo "usage: gitlab-drill-links.sh OUT_DIR NAME, with CI_JOB_URL set" >&2
    exit 2
fi
out=$1 name=$2
if ! [[ "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]] || ! [[ "$out" =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]{0,200}$ ]] \
        || [[ "$out" == *..* ]]; then
    echo "gitlab-drill-links.sh: '$out/$name' is not an output directory name this script links" >&2
    exit 2
fi
if ! [[ "$CI_JOB_URL" =~ ^https?://[^\"\\[:space:]]+$ ]]; then
    echo "gitlab-drill-links.sh: CI_JOB_URL is not a URL: $CI_JOB_URL" >&2
    exit 2
fi
links=()
for entry in "drill.html:the drill's page (timelines, checks, fixes)" "drill.md:the drill's summary (Markdown)"; do
    file=${entry%%:*} label=${entry#*:}
    if [ -f "$out/$name/$file" ]; then
        links+=("{\"external_link\": {\"label\": \"$name: $label\", \"url\": \"$CI_JOB_URL/artifacts/file/$out/$name/$file\"}}")
    fi
done
links+=("{\"external_link\": {\"label\": \"$name: the output directory\", \"url\": \"$CI_JOB_URL/artifacts/browse/$out/$name/\"}}")
printf '{"wdimage drill": [%s' "${links[0]}"
printf ', %s' "${links[@]:1}"
printf ']}\n'
