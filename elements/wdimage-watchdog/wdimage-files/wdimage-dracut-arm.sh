#!/bin/sh
# wdimage: arm /dev/watchdog as soon as the driver is up (dracut's cmdline hook, sourced: no exit here);
# the real root's keepalive takes it over. Writes /run/wdimage/armed-at (uptime) and armed-by (initramfs),
# as the initramfs-tools script does; /run moves to the real root, with wd_keepalive's pidfile.

wdimage_arm() {
    # shellcheck disable=SC2013  # one module name per word
    for _wd_module in $(cat /etc/wdimage/initramfs-modules 2> /dev/null); do
        modprobe -q "${_wd_module}" || return 0
    done
    [ -c /dev/watchdog ] || return 0
    # Its own output away from init's: dracut's log pipe would never see its end otherwise. Found through PATH as
    # "@wd_keepalive" (module-setup.sh links it), so that its argv[0] starts with '@': at the switch to the real
    # root the initrd's systemd sends every remaining process SIGTERM, wd_keepalive's magic close, except those.
    PATH="/usr/sbin:${PATH}" @wd_keepalive < /dev/null > /dev/null 2>&1 || return 0
    # wd_keepalive forks before it opens the device: wait (up to 2 s) for the driver to say it runs, or where the
    # driver cannot say (no sysfs state), for the keepalive's pidfile, written before it opens the device.
    _wd_state=/sys/class/watchdog/watchdog0/state
    _wd_i=0
    while [ "${_wd_i}" -lt 20 ]; do
        if [ -r "${_wd_state}" ]; then
            [ "$(cat "${_wd_state}")" = active ] && break
        elif [ -s /run/wd_keepalive.pid ]; then
            break
        fi
        sleep 0.1
        _wd_i=$((_wd_i + 1))
    done
    [ "${_wd_i}" -lt 20 ] || return 0
    mkdir -p /run/wdimage
    read -r _wd_uptime _ < /proc/uptime
    echo "${_wd_uptime}" > /run/wdimage/armed-at
    echo initramfs > /run/wdimage/armed-by
    echo "<30>wdimage: /dev/watchdog armed by wd_keepalive in the dracut initramfs" > /dev/kmsg
}

wdimage_arm
unset -f wdimage_arm
unset _wd_module _wd_state _wd_i _wd_uptime
