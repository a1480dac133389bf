#!/bin/sh
# Install the Debian packages the tests use (real Modbus clients, FAT tools, Chromium),
# but only those that are missing. Needs root (CI and the dev machines run as root).
missing=""
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
echo "setup: installing Debian packages:$missing"
if [ "$(id -u)" != "0" ]; then
    SUDO=sudo
else
    SUDO=""
fi
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
