#!/bin/sh
# wdimage: end the wd_keepalive in /run/wd_keepalive.pid without its magic close (SIGKILL), so that
# /dev/watchdog stays armed for whoever opens it next. Nothing to do when no keepalive runs.
pidfile=/run/wd_keepalive.pid
[ -s "${pidfile}" ] || exit 0
read -r pid < "${pidfile}" || exit 0
case "${pid}" in
    '' | *[!0-9]*) exit 0 ;;
esac
# "@wd_keepalive": the one a dracut initramfs started (argv[0] with '@', spared by the initrd's systemd).
case "$(cat "/proc/${pid}/comm" 2>/dev/null)" in
    wd_keepalive | @wd_keepalive)
        kill -KILL "${pid}"
        i=0
        while [ -e "/proc/${pid}" ] && [ "${i}" -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        ;;
esac
rm -f "${pidfile}"
