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
# Deployment tests (tests/clients.py, tests/fail2ban.py): real POP3 clients
# fetchmail, mpop, getmail6, perl (Net::POP3 is in perl-modules); mandoc
# (mandoc -T lint) and man-db (man -l) for the man pages; fail2ban
# (fail2ban-regex); systemd also gives systemd-analyze.
PKGS="gcc clang make pkg-config libc6-dev libcrypt-dev libsystemd-dev libssl-dev python3 curl systemd util-linux procps"
PKGS="$PKGS fetchmail mpop getmail6 perl fail2ban mandoc man-db"
# Crash tests (tests/crash.py): procmail delivers into the mbox being killed.
PKGS="$PKGS procmail"
# Security tests (tests/security.py): ss (iproute2) for the TCP keepalive check,
# valgrind for the memcheck session; tests/attacks.py and tests/run.py kill
# updates with strace's fault injection. xxhsum (xxhash): the reference XXH3
# that tests/xxh3check.sh, tests/mboxlib.py (mbox UIDLs) and
# tests/mboxcheck.py (journals) check pop3d's against.
PKGS="$PKGS iproute2 valgrind strace xxhash"
# TLS tests (tests/tls.py, tests/testssl.py): the openssl command makes the
# test certificates and is a client (s_client); testssl.sh rates the policy.
PKGS="$PKGS openssl testssl.sh"
# Proxy tests (tests/engines.py): nginx's mail proxy and HAProxy in front of
# pop3d. Installed with their services kept from starting (see below).
PKGS="$PKGS nginx-light libnginx-mod-mail haproxy"
# Migration tests (tests/migrate.py, -U) and the bench: the servers pop3d
# takes over from. Dovecot runs from its package's binaries with a private
# configuration (its service kept from starting, see below). GNU mailutils'
# pop3d and popa3d are not installed: their .debs are fetched with
# `apt-get download` and unpacked into $PEERS (unpack_peers below), because
# Debian's popa3d conflicts with dovecot-pop3d and mailutils-pop3d would
# enable a POP3 daemon on port 110; libmailutils9, libmu-dbm9, libnsl2 and
# libwrap0 (with what they pull in) are what the unpacked mailutils pop3d
# links against.
PKGS="$PKGS dovecot-core dovecot-pop3d libmailutils9 libmu-dbm9 libnsl2 libwrap0"
PEERS_UNPACKED="popa3d mailutils-pop3d"

# Small hosts (issue 14): musl-tools (the static musl build check),
# debhelper, dpkg-dev and lintian (make deb, tests/deb.py).
PKGS="$PKGS musl-tools debhelper dpkg-dev lintian"

# --cross (make cross, .ci/run; never make check): the arm64 and armhf cross
# compilers and C libraries, Debian's multiarch arm64 and armhf libraries
# pop3d links (libc6 too: qemu-user forks with it, not with the cross
# toolchain's own copy), and qemu-user-static to run the tests.
CROSS_ARCHS="arm64 armhf"
CROSS_PKGS="gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user-static"
for a in $CROSS_ARCHS; do
	CROSS_PKGS="$CROSS_PKGS libc6:$a libcrypt-dev:$a libssl-dev:$a libsystemd-dev:$a"
done

# --bench (make bench only, never make check): nothing more than the above
# today (the bench's peers are the migration tests' too).
BENCH_PKGS=""
PEERS=/var/cache/pop3d-bench
bench=no
if [ "${1:-}" = "--bench" ]; then
	bench=yes
	PKGS="$PKGS $BENCH_PKGS"
fi
cross=no
if [ "${1:-}" = "--cross" ]; then
	cross=yes
	PKGS="$PKGS $CROSS_PKGS"
fi

say() { printf 'deps.sh: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
	say "no dpkg-query: not Debian; make sure these (or your system's equivalents) are installed:"
	say "  $PKGS"
	exit 0
fi

# One dpkg-query call for all packages; unknown packages only print to stderr.
# shellcheck disable=SC2086  # word splitting of the package list is intended
installed=" $(dpkg-query -W -f='${binary:Package} ${Status}\n' $PKGS 2>/dev/null |
	awk '$(NF-1) == "ok" && $NF == "installed" { printf "%s ", $1 }') "

missing=
for p in $PKGS; do
	case $installed in
	*" $p "*) ;;
	*" $p:$(dpkg --print-architecture) "*) ;;      # (binary:Package of M-A: same)
	*) missing="$missing $p" ;;
	esac
done
missing=${missing# }

# The unpacked peers, in $PEERS/NAME (root only; skipped with a note
# otherwise: the tests that need one skip, as the bench does).
unpack_peers() {
	for name in $PEERS_UNPACKED; do
		bin=$PEERS/$name/usr/sbin/popa3d
		[ "$name" = mailutils-pop3d ] && bin=$PEERS/$name/usr/sbin/pop3d
		[ -x "$bin" ] && continue
		if [ "$(id -u)" -ne 0 ]; then
			say "$name is not unpacked in $PEERS (needs root): tests/migrate.py and the bench skip it"
			continue
		fi
		mkdir -p "$PEERS"
		say "fetching $name (apt-get download; unpacked, not installed) into $PEERS"
		if ! (cd "$PEERS" && apt-get download "$name" >&2) 2>/dev/null; then
			apt-get update >&2
			(cd "$PEERS" && apt-get download "$name" >&2) ||
				{ say "could not fetch $name: the tests that need it skip"; continue; }
		fi
		for f in "$PEERS/${name}"_*.deb; do
			[ -f "$f" ] || continue
			mv -f "$f" "$PEERS/$name.deb"
		done
		rm -rf "${PEERS:?}/$name"
		dpkg-deb -x "$PEERS/$name.deb" "$PEERS/$name"
	done
}

if [ -z "$missing" ]; then
	say "all required packages are installed"
	unpack_peers
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
if [ "$cross" = yes ]; then
	for a in $CROSS_ARCHS; do
		if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
			say "running: dpkg --add-architecture $a"
			dpkg --add-architecture "$a"
		fi
	done
fi
say "running: apt-get update"
apt-get update >&2
say "running: apt-get install -y --no-install-recommends $missing"
# Packages with a daemon (nginx, haproxy, dovecot) must not start it: the
# tests run their own instances on loopback ports. policy-rc.d(8) says so to
# invoke-rc.d for the length of the install, unless the system has one.
policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\n# pop3d scripts/deps.sh: no service starts during its install\nexit 101\n' > "$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing >&2
if [ -n "$policy" ]; then
	rm -f "$policy"
	trap - EXIT
fi
unpack_peers
say "done"
