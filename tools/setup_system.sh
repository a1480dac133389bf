#!/bin/sh
# The system packages the tests use (real Modbus clients, FAT tools, Chromium), given as Debian
# package names. With apt-get (Debian, Ubuntu, WSL): install those that are missing (root, or
# sudo). Without apt-get (macOS, other Linux): check for the programs they provide, and list
# what is missing with what to install; exit 1 then. `make run` never needs any of them.

# The program (or pkg-config module, "pc:NAME") that shows a package is there.
provides() {
    case "$1" in
        mtools) echo mcopy ;;
        dosfstools) echo mkfs.fat ;;
        chromium) echo chromium ;;
        chromium-driver) echo chromedriver ;;
        libmodbus-dev) echo pc:libmodbus ;;
        nodejs) echo node ;;
        *) echo "$1" ;;
    esac
}

have() {
    case "$1" in
        pc:*) pkg-config --exists "${1#pc:}" 2>/dev/null ;;
        chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
                  || command -v google-chrome >/dev/null 2>&1 ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
    missing=""
    for pkg in "$@"; do
        # installed, or its program is there another way (npm comes with NodeSource's nodejs,
        # and Debian's npm package then cannot be installed beside it)
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || have "$(provides "$pkg")" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && exit 0
    echo "setup: installing Debian packages for the tests:$missing"
    if [ "$(id -u)" != "0" ]; then
        SUDO=sudo
    else
        SUDO=""
    fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    exit $?
fi

missing=""
for pkg in "$@"; do
    what=$(provides "$pkg")
    have "$what" || missing="$missing
  - $pkg (Debian name; provides ${what#pc:}$(case "$what" in pc:*) echo ' for pkg-config';; esac))"
done
[ -z "$missing" ] && exit 0
echo "setup: no apt-get here, so make test cannot install its system packages itself."
echo "Missing (make run does not need them; the tests do):$missing"
echo "Install them with your system's package manager (macOS: Homebrew), then run make test again."
exit 1
