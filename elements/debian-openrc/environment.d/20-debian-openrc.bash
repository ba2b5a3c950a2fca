# debian-minimal's 10-debian-minimal.bash says systemd; this image boots OpenRC.
export DIB_INIT_SYSTEM=openrc
