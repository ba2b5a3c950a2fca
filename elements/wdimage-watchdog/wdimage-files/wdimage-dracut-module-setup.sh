#!/bin/bash
# dib-lint: disable=sete setu setpipefail dibdebugtrace
# (dracut sources this file into its own shell and calls its functions: no set -e, -u or DIB tracing here.)
# wdimage: arm /dev/watchdog from a dracut initramfs (installed as
# /usr/lib/dracut/modules.d/04wdimage-watchdog/module-setup.sh; requested by /etc/dracut.conf.d/50-wdimage-watchdog.conf).
# The chosen driver (and lpc_ich for iTCO_wdt), wd_keepalive and /etc/watchdog.conf go into the initramfs; the cmdline
# hook (wdimage-watchdog.sh) loads the driver and starts wd_keepalive before udev starts. The keepalive outlives
# the switch to the real root, where the real root's keepalive takes the device over with SIGKILL (never a magic close).
# The drivers are listed, one word each, in /etc/wdimage/initramfs-modules (written at build time by wdimage).

# called by dracut
check() {
    require_binaries wd_keepalive || return 1
    [ -f "${dracutsysrootdir-}/etc/watchdog.conf" ] || return 1
    [ -f "${dracutsysrootdir-}/etc/wdimage/initramfs-modules" ] || return 1
    # Only when asked for (add_dracutmodules in /etc/dracut.conf.d/50-wdimage-watchdog.conf), as 04watchdog.
    return 255
}

# called by dracut
depends() {
    return 0
}

# The names the build validated; anything else in the file is ignored.
wdimage_modules() {
    local name
    # shellcheck disable=SC2013  # one module name per word
    for name in $(cat "${dracutsysrootdir-}/etc/wdimage/initramfs-modules"); do
        [[ "${name}" =~ ^[A-Za-z0-9_-]+$ ]] && echo "${name}"
    done
}

# called by dracut
installkernel() {
    local modules
    modules=$(wdimage_modules)
    # shellcheck disable=SC2086  # one module name per word
    [ -n "${modules}" ] && hostonly='' instmods ${modules}
    return 0
}

# called by dracut
install() {
    inst_multiple wd_keepalive
    # Started as "@wd_keepalive" (argv[0] starting with '@'): the initrd's systemd spares such processes when it
    # sends every remaining one SIGTERM at the switch to the real root (wd_keepalive's SIGTERM is a magic close).
    ln_r /usr/sbin/wd_keepalive /usr/sbin/@wd_keepalive
    inst_simple /etc/watchdog.conf
    inst_simple /etc/wdimage/initramfs-modules
    # The other watchdog drivers stay out in the initramfs too (a non-host-only initramfs holds every one).
    if [ -f "${dracutsysrootdir-}/etc/modprobe.d/wdimage-watchdog-blacklist.conf" ]; then
        inst_simple /etc/modprobe.d/wdimage-watchdog-blacklist.conf
    fi
    # cmdline is the first hook of both dracut inits (systemd's dracut-cmdline.service, KillMode=process: the
    # keepalive it leaves behind is not killed when the unit stops; the shell init.sh), before udev starts.
    # shellcheck disable=SC2154  # dracut sets moddir, this module's directory
    inst_hook cmdline 00 "${moddir}/wdimage-watchdog.sh"
}
