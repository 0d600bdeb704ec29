#!/usr/bin/env bash
# tests/check.sh [--asan] - the body of `make check` (run after the build).
#
#   1. the C unit tests (./tests/unit, or ./tests/unit-asan with --asan)
#   2. build checks, each one test, in fresh copies of the sources:
#        make CC=gcc   CFLAGS_EXTRA=-Werror
#        make CC=clang CFLAGS_EXTRA=-Werror
#        make SYSTEMD=no CFLAGS_EXTRA=-Werror   (and the binary must not use libsystemd)
#        make TLS=no CFLAGS_EXTRA=-Werror       (and the binary must not use OpenSSL)
#        make CFLAGS_EXTRA="-Werror -DMBOX_PORTABLE_SCAN"   (and its unit tests run)
#      (skipped with --asan: `make check` already did them)
#   3. the integration tests, tests/run.py
#   2a. tests/xxh3check.sh: xxh3.c against the reference xxhsum -H2 (one test)
#   2b. small hosts: a static musl build (its unit tests, tests/run.py against
#       it), a CRYPT=libc build (the crypt scheme tests), tests/deb.py (the
#       Debian package); the arm64/armhf tests are `make cross` (tests/cross.py)
#   3a. tests/security.py (privilege separation, abuse limits, timeouts, garbage,
#       valgrind: issue 5 point 8), tests/tls.py (POP3S and STLS: issue 12),
#       tests/testssl.py (testssl.sh, not with --asan), tests/proxy.py (the
#       PROXY protocol: issue 13), tests/engines.py (nginx and HAProxy in
#       front, not with --asan) and tests/attacks.py (the security reviews'
#       attacks: issue 11)
#   3a'. tests/migrate.py (-U: the UIDLs of Dovecot, GNU mailutils and popa3d
#       kept, against the real servers where installed: issue 15)
#   3b. tests/clients.py (hash tool, install, units, man pages, real clients),
#       tests/fail2ban.py (the fail2ban filter on real log lines) and
#       tests/demo.py (make demo, fetched with curl and poplib)
#   3c. tests/faults.py (disk full, injected I/O errors) and tests/crash.py
#       (SIGKILL during UPDATE, short mode; `make check-slow` runs --long)
#   4. as root: tests/run.py, tests/security.py, tests/tls.py, tests/proxy.py,
#      tests/attacks.py and tests/migrate.py once more as an unprivileged user
#      (uid/gid 65534)
#   5. a closing line "N passed, N failed"; exit status 1 if anything failed.
#
# $POP3D overrides the server binary (default ./pop3d, ./pop3d-asan with --asan).
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
TOP=$(pwd)

ASAN=no
for a in "$@"; do
	case $a in
	--asan) ASAN=yes ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
	*) echo "check.sh: unknown argument: $a" >&2; exit 2 ;;
	esac
done

if [ "$ASAN" = yes ]; then
	: "${POP3D:=$TOP/pop3d-asan}"
	UNIT=$TOP/tests/unit-asan
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
	: "${POP3D:=$TOP/pop3d}"
	UNIT=$TOP/tests/unit
fi
case $POP3D in /*) ;; *) POP3D=$TOP/$POP3D ;; esac
export POP3D

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
WORK=$(mktemp -d /tmp/pop3d-check.XXXXXX) || exit 1
trap 'rm -rf "$WORK"' EXIT

say() { printf '%s\n' "$*"; }

pass() { PASSED=$((PASSED + 1)); say "ok $1"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); say "FAIL $1${2:+: $2}"; }

# add_counts NAME LOGFILE RC: take the last "N passed, N failed[, N skipped]"
# line of a test program's output; no such line counts as one failure.
add_counts() {
	local name=$1 log=$2 rc=$3 line p f s
	line=$(grep -E '(^|[^0-9])[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		fail "$name" "no \"N passed, N failed\" line (exit status $rc)"
		return
	fi
	p=$(printf '%s\n' "$line" | grep -oE '[0-9]+ passed' | tail -n 1 | grep -oE '[0-9]+')
	f=$(printf '%s\n' "$line" | grep -oE '[0-9]+ failed' | tail -n 1 | grep -oE '[0-9]+')
	s=$(printf '%s\n' "$line" | grep -oE '[0-9]+ skipped' | tail -n 1 | grep -oE '[0-9]+')
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	SKIPPED=$((SKIPPED + ${s:-0}))
	[ "$f" -gt 0 ] && FAILED_NAMES+=("$name($f)")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		fail "$name" "exit status $rc although it reported no failure"
	fi
}

# suite NAME.py SECONDS [ARGS...]: run tests/NAME.py as this user within
# SECONDS, its output shown and kept in $WORK/NAME.log, its counts added
suite() {
	local name=$1 secs=$2
	shift 2
	timeout "$secs" /usr/bin/python3 "$TOP/tests/$name" "$@" 2>&1 | tee "$WORK/${name%.py}.log"
	add_counts "$name" "$WORK/${name%.py}.log" "${PIPESTATUS[0]}"
}

# ---------------------------------------------------------------- 1. unit tests
say "# unit tests: ${UNIT#"$TOP"/}"
if [ -x "$UNIT" ]; then
	timeout 300 "$UNIT" >"$WORK/unit.log" 2>&1
	rc=$?
	cat "$WORK/unit.log"
	add_counts unit "$WORK/unit.log" "$rc"
else
	say "# (no ${UNIT#"$TOP"/}: skipped)"
fi

# ---------------------------------------------------------------- 2. build checks
copy_sources() {   # copy_sources DEST
	local dest=$1
	mkdir -p "$dest"
	if git -C "$TOP" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		# tracked and new (not ignored) files: what a commit would hold
		git -C "$TOP" ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do
				[ -f "$TOP/$f" ] && printf '%s\0' "$f"
			done |
			tar -C "$TOP" --null -T - -cf - | tar -C "$dest" -xf -
	else
		(cd "$TOP" && cp -p -- *.c *.h Makefile "$dest"/) &&
			mkdir -p "$dest/tests" && { cp -p "$TOP"/tests/*.c "$dest/tests/" 2>/dev/null || :; }
	fi
	# never reuse build products
	rm -f "$dest"/*.o "$dest/pop3d" "$dest/pop3d-asan" "$dest/pop3passwd" "$dest/tests/unit" "$dest/tests/unit-asan"
}

build_check() {    # build_check NAME MAKE-ARGS...
	local name=$1 dir="$WORK/build-$1"
	shift
	copy_sources "$dir"
	if (cd "$dir" && timeout 300 make -j2 "$@" all tests/unit) >"$dir.log" 2>&1 &&
		[ -x "$dir/pop3d" ] && "$dir/pop3d" -V >/dev/null 2>&1; then
		if [ "$name" = systemd-no ] && ldd "$dir/pop3d" 2>/dev/null | grep -q libsystemd; then
			fail "build.$name" "SYSTEMD=no binary still links libsystemd"
			return
		fi
		if [ "$name" = tls-no ] && ldd "$dir/pop3d" 2>/dev/null | grep -qE 'libssl|libcrypto'; then
			fail "build.$name" "TLS=no binary still links OpenSSL"
			return
		fi
		pass "build.$name"
	else
		fail "build.$name" "make $*"
		tail -n 40 "$dir.log" | sed 's/^/    /'
	fi
}

if [ "$ASAN" = no ]; then
	say "# build checks (-Werror) in fresh copies of the sources"
	if command -v gcc >/dev/null 2>&1; then
		build_check gcc-Werror CC=gcc CFLAGS_EXTRA=-Werror
	else
		fail build.gcc-Werror "gcc not installed"
	fi
	if command -v clang >/dev/null 2>&1; then
		build_check clang-Werror CC=clang CFLAGS_EXTRA=-Werror
	else
		fail build.clang-Werror "clang not installed"
	fi
	build_check systemd-no SYSTEMD=no CFLAGS_EXTRA=-Werror
	build_check tls-no TLS=no CFLAGS_EXTRA=-Werror
	# the mbox body scan without SSE2 (as on other CPUs): its unit tests too
	build_check portable-scan "CFLAGS_EXTRA=-Werror -DMBOX_PORTABLE_SCAN"
	if [ -x "$WORK/build-portable-scan/tests/unit" ]; then
		timeout 300 "$WORK/build-portable-scan/tests/unit" >"$WORK/unit-portable.log" 2>&1
		add_counts unit-portable "$WORK/unit-portable.log" "$?"
	fi
fi

# ---------------------------------------------------------------- 2a. XXH3
if [ "$ASAN" = no ]; then
	say "# xxh3.c against xxhsum -H2: tests/xxh3check.sh"
	if timeout 600 bash "$TOP/tests/xxh3check.sh" >"$WORK/xxh3.log" 2>&1 &&
		tail -n 1 "$WORK/xxh3.log" | grep -qE '^[0-9]+ passed, 0 failed$'; then
		pass "xxh3check: $(tail -n 1 "$WORK/xxh3.log" | grep -oE '^[0-9]+') builds x inputs match"
	else
		fail xxh3check "$(tail -n 1 "$WORK/xxh3.log")"
		grep -E 'FAIL|error' "$WORK/xxh3.log" | head -n 20 | sed 's/^/    /'
	fi
fi

# ---------------------------------------------------------------- 2b. small hosts (issue 14)
# A static musl pop3d (make CC=musl-gcc STATIC=1; Debian's musl has no crypt,
# so CRYPT=none): one static binary, its unit tests, and tests/run.py against
# it over pipes and sockets (tests needing crypt skip, saying why). A glibc
# build with CRYPT=libc (the C library's crypt_r path of cryptlib.h): the
# crypt scheme tests against it. tests/deb.py: the Debian package (build,
# lintian; as root dpkg -i, a session, dpkg -r, dpkg -P).
if [ "$ASAN" = no ]; then
	say "# small hosts: static musl, CRYPT=libc, the Debian package"
	if command -v musl-gcc >/dev/null 2>&1; then
		build_check musl-static CC=musl-gcc STATIC=1 CFLAGS_EXTRA=-Werror
		M=$WORK/build-musl-static
		if [ -x "$M/pop3d" ]; then
			if file "$M/pop3d" | grep -q 'statically linked'; then
				pass "musl-static: one static binary ($(stat -c %s "$M/pop3d") octets; $("$M/pop3d" -V | sed -n 's/^crypt: //p'))"
			else
				fail musl-static "not statically linked: $(file -b "$M/pop3d")"
			fi
			timeout 300 "$M/tests/unit" >"$WORK/unit-musl.log" 2>&1
			add_counts unit-musl "$WORK/unit-musl.log" "$?"
			say "# tests/run.py against the static musl pop3d"
			chmod 0755 "$WORK" "$M"
			POP3D=$M/pop3d timeout 900 /usr/bin/python3 "$TOP/tests/run.py" >"$WORK/run-musl.log" 2>&1
			rc=$?
			grep -E '^(FAIL|skip)' "$WORK/run-musl.log" | sort | uniq -c | sed 's/^/    /'
			tail -n 1 "$WORK/run-musl.log"
			add_counts run.py-musl "$WORK/run-musl.log" "$rc"
		fi
	else
		fail build.musl-static "musl-gcc not installed (musl-tools: scripts/deps.sh)"
	fi
	build_check crypt-libc CRYPT=libc CFLAGS_EXTRA=-Werror
	if [ -x "$WORK/build-crypt-libc/pop3d" ]; then
		POP3D=$WORK/build-crypt-libc/pop3d timeout 300 /usr/bin/python3 "$TOP/tests/run.py" \
			-k '*crypt_schemes*' -k '*no_timestamp_without_plain_entry*' >"$WORK/run-crypt-libc.log" 2>&1
		rc=$?
		cat "$WORK/run-crypt-libc.log"
		add_counts run.py-crypt-libc "$WORK/run-crypt-libc.log" "$rc"
	fi
	say "# the Debian package: tests/deb.py"
	suite deb.py 900
fi

# ---------------------------------------------------------------- 3. integration tests
say "# integration tests: tests/run.py ($(id -un 2>/dev/null || id -u))"
suite run.py 900

# ---------------------------------------------------------------- 3a. security tests
say "# security tests: tests/security.py"
suite security.py 300

say "# TLS: tests/tls.py"
suite tls.py 900
if [ "$ASAN" = no ]; then
	say "# testssl.sh: tests/testssl.py"
	suite testssl.py 900
fi

say "# PROXY protocol: tests/proxy.py"
suite proxy.py 600

if [ "$ASAN" = no ]; then
	say "# nginx and HAProxy in front: tests/engines.py"
	suite engines.py 600
fi

say "# attack tests: tests/attacks.py"
suite attacks.py 600

say "# taking over from other servers (-U): tests/migrate.py"
suite migrate.py 900

# ---------------------------------------------------------------- 3b. deployment, real clients, fail2ban
# tests/clients.py: pop3passwd, make install/uninstall, units, man pages, and
# fetchmail, mpop, getmail6, Net::POP3 and curl against the server;
# tests/fail2ban.py: the fail2ban filter on log lines the server wrote.
# With --asan only the client runs (no pop3passwd or ./pop3d build there).
if [ "$ASAN" = yes ]; then
	CLIENT_ARGS=(-k Clients)
else
	CLIENT_ARGS=()
fi
say "# real clients and deployment: tests/clients.py ${CLIENT_ARGS[*]}"
suite clients.py 300 "${CLIENT_ARGS[@]}"
say "# fail2ban filter: tests/fail2ban.py"
suite fail2ban.py 300
# tests/demo.py: `make demo` serves its demo mbox; curl and poplib fetch it.
if [ "$ASAN" = no ]; then
	say "# the demo: tests/demo.py"
	suite demo.py 120
fi

# ---------------------------------------------------------------- 3c. crash consistency
# tests/faultinject.so (LD_PRELOAD) makes pwrite/fsync/ftruncate/unlink fail
# or slow; tests/faults.py: ENOSPC on a small tmpfs (root) and injected
# errors; tests/crash.py: SIGKILL at random instants of UPDATE with procmail
# delivering meanwhile (short mode here, fewer kills under ASan).
say "# crash consistency: tests/faults.py, tests/crash.py"
if make -s -C "$TOP" tests/faultinject.so >"$WORK/shim.log" 2>&1; then
	if [ "$ASAN" = yes ]; then
		CRASH_ARGS=(--kills 20)
	else
		CRASH_ARGS=()
	fi
	suite faults.py 600
	suite crash.py 900 "${CRASH_ARGS[@]}"
else
	fail faultinject.so "make tests/faultinject.so"
	sed 's/^/    /' "$WORK/shim.log"
fi

# ---------------------------------------------------------------- 4. again, unprivileged
if [ "$(id -u)" -eq 0 ]; then
	say "# integration tests as an unprivileged user (uid/gid 65534)"
	# a copy the unprivileged user can surely read, wherever the checkout is
	U=$WORK/unpriv
	mkdir -p "$U"
	cp "$TOP"/tests/*.py "$U"/
	# what tests read from the tree beside tests/ (REPO is $U/..)
	rm -rf "$WORK/units" "$WORK/contrib"
	cp -r "$TOP/units" "$TOP/contrib" "$WORK"/
	chmod -R a+rX "$WORK/units" "$WORK/contrib"
	cp "$POP3D" "$U/pop3d"
	# its TLS module (tlsmod.h: <binary>-tls.so beside it), when it has one
	[ -f "$POP3D-tls.so" ] && cp "$POP3D-tls.so" "$U/pop3d-tls.so"
	chmod 0755 "$WORK" "$U"
	chmod 0644 "$U"/*.py
	chmod 0755 "$U/pop3d"
	envs=(PATH=/usr/bin:/bin HOME=/tmp POP3D="$U/pop3d")
	[ -n "${ASAN_OPTIONS:-}" ] && envs+=(ASAN_OPTIONS="$ASAN_OPTIONS")
	[ -n "${UBSAN_OPTIONS:-}" ] && envs+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
	(cd / && timeout 900 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i "${envs[@]}" /usr/bin/python3 "$U/run.py") 2>&1 | tee "$WORK/run-unpriv.log"
	add_counts run.py-unprivileged "$WORK/run-unpriv.log" "${PIPESTATUS[0]}"
	say "# security tests as an unprivileged user (uid/gid 65534)"
	(cd / && timeout 300 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i "${envs[@]}" /usr/bin/python3 "$U/security.py") 2>&1 | tee "$WORK/security-unpriv.log"
	add_counts security.py-unprivileged "$WORK/security-unpriv.log" "${PIPESTATUS[0]}"
	say "# TLS tests as an unprivileged user (uid/gid 65534)"
	(cd / && timeout 600 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i "${envs[@]}" /usr/bin/python3 "$U/tls.py") 2>&1 | tee "$WORK/tls-unpriv.log"
	add_counts tls.py-unprivileged "$WORK/tls-unpriv.log" "${PIPESTATUS[0]}"
	say "# PROXY protocol tests as an unprivileged user (uid/gid 65534)"
	(cd / && timeout 600 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i "${envs[@]}" /usr/bin/python3 "$U/proxy.py") 2>&1 | tee "$WORK/proxy-unpriv.log"
	add_counts proxy.py-unprivileged "$WORK/proxy-unpriv.log" "${PIPESTATUS[0]}"
	say "# attack tests as an unprivileged user (uid/gid 65534)"
	(cd / && timeout 300 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i "${envs[@]}" /usr/bin/python3 "$U/attacks.py") 2>&1 | tee "$WORK/attacks-unpriv.log"
	add_counts attacks.py-unprivileged "$WORK/attacks-unpriv.log" "${PIPESTATUS[0]}"
	say "# migration tests as an unprivileged user (uid/gid 65534; the real peers skip)"
	(cd / && timeout 600 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i "${envs[@]}" /usr/bin/python3 "$U/migrate.py") 2>&1 | tee "$WORK/migrate-unpriv.log"
	add_counts migrate.py-unprivileged "$WORK/migrate-unpriv.log" "${PIPESTATUS[0]}"
fi

# ---------------------------------------------------------------- 5. summary
say "#"
[ "$SKIPPED" -gt 0 ] && say "# $SKIPPED skipped"
[ "${#FAILED_NAMES[@]}" -gt 0 ] && say "# failed: ${FAILED_NAMES[*]}"
say "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
