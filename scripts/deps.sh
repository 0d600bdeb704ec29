#!/bin/sh
# scripts/deps.sh - make sure the Debian 12 packages pop3d needs to build,
# test and demo are installed.
#
# As root: installs what is missing (apt-get update only when something is).
# Not root: if something is missing, prints the command to run and exits 1.
# Quick and silent apart from one line when everything is already there.
# On a system without dpkg it only warns: install the equivalents yourself.
# Honours DEBIAN_FRONTEND (default noninteractive). POSIX sh.
set -eu

# systemd: systemd-socket-activate; util-linux: setpriv; procps: pgrep/ps.
PKGS="gcc clang make pkg-config libc6-dev libcrypt-dev libsystemd-dev python3 curl systemd util-linux procps"

say() { printf 'deps.sh: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
	say "no dpkg-query: not Debian; make sure these (or your system's equivalents) are installed:"
	say "  $PKGS"
	exit 0
fi

# One dpkg-query call for all packages; unknown packages only print to stderr.
# shellcheck disable=SC2086  # word splitting of the package list is intended
installed=" $(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null |
	awk '$(NF-1) == "ok" && $NF == "installed" { printf "%s ", $1 }') "

missing=
for p in $PKGS; do
	case $installed in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done
missing=${missing# }

if [ -z "$missing" ]; then
	say "all required packages are installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	say "missing packages: $missing"
	say "install them as root, e.g.:"
	printf '  sudo apt-get update && sudo apt-get install -y --no-install-recommends %s\n' "$missing" >&2
	exit 1
fi

: "${DEBIAN_FRONTEND:=noninteractive}"
export DEBIAN_FRONTEND
say "missing packages: $missing"
say "running: apt-get update"
apt-get update >&2
say "running: apt-get install -y --no-install-recommends $missing"
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing >&2
say "done"
