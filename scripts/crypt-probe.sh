#!/bin/sh
# scripts/crypt-probe.sh - which crypt(3) $CC can build pop3d with (cryptlib.h),
# by test compiles; the Makefile runs it when CRYPT= is not given.
#
#   CC=cc sh scripts/crypt-probe.sh         prints xcrypt, libc or none
#   CC=cc sh scripts/crypt-probe.sh libs    prints the libraries the libc
#                                           backend links with ("" or -lcrypt)
#
# xcrypt: <crypt.h> is libxcrypt's (it defines CRYPT_OUTPUT_SIZE); libc: a
# <crypt.h> and a crypt_r that links (musl on Alpine and OpenWrt, in libc
# itself); none: neither (Debian's musl, packaged without crypt).
set -u
: "${CC:=cc}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pop3d-crypt-probe.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

printf '#include <crypt.h>\nint size = CRYPT_OUTPUT_SIZE;\n' > "$tmp/x.c"
printf '#include <crypt.h>\nint main(void) { struct crypt_data d = { 0 };\n  return crypt_r("a", "$6$x", &d) == 0; }\n' > "$tmp/r.c"

# shellcheck disable=SC2086  # CC may hold flags
links() { $CC -o "$tmp/r" "$tmp/r.c" "$@" >/dev/null 2>&1; }

if [ "${1:-}" = libs ]; then
	if links; then
		echo ""
	else
		echo "-lcrypt"
	fi
	exit 0
fi
# shellcheck disable=SC2086
if $CC -c -o "$tmp/x.o" "$tmp/x.c" >/dev/null 2>&1; then
	echo xcrypt
elif links || links -lcrypt; then
	echo libc
else
	echo none
fi
