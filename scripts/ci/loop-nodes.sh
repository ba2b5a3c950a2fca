#!/bin/bash
# Create the loop device nodes diskimage-builder needs inside a privileged container.
#
# Usage: loop-nodes.sh [DEV_DIR [COUNT]]    (defaults: /dev 8)
#
# A privileged container gets a copy of the host's /dev/loop* nodes as they were when it started; a loop
# device the kernel adds later (losetup --find asks /dev/loop-control for one) has no node inside the
# container, so losetup fails (https://github.com/moby/moby/issues/27886). This creates DEV_DIR/loop-control
# and DEV_DIR/loop0 .. loop(COUNT-1) where they are missing, as the kernel numbers them (block major 7, minor
# N; loop-control is char 10:237, Documentation/admin-guide/devices.txt), and leaves existing nodes alone.
set -euo pipefail

dev=${1:-/dev}
count=${2:-8}
if [ ! -d "$dev" ]; then
    echo "loop-nodes.sh: $dev is not a directory" >&2
    exit 2
fi
if ! [[ "$count" =~ ^[0-9]{1,3}$ ]] || [ "$count" -lt 1 ] || [ "$count" -gt 256 ]; then
    echo "loop-nodes.sh: COUNT $count: expected 1..256" >&2
    exit 2
fi

created=()
if [ ! -e "$dev/loop-control" ]; then
    mknod -m 0660 "$dev/loop-control" c 10 237
    created+=(loop-control)
fi
for ((i = 0; i < count; i++)); do
    if [ ! -e "$dev/loop$i" ] && [ ! -L "$dev/loop$i" ]; then
        mknod -m 0660 "$dev/loop$i" b 7 "$i"
        created+=("loop$i")
    fi
done
# The disk group owns loop devices on Debian; a container without that group keeps root's.
if [ "${#created[@]}" -gt 0 ] && getent group disk > /dev/null; then
    for node in "${created[@]}"; do chgrp disk "$dev/$node"; done
fi
echo "loop-nodes.sh: created ${#created[@]} node(s) in $dev${created[*]:+: ${created[*]}}"
