# pop3d - a small, secure POP3 server for super-servers.
#
#   make                 build ./pop3d (with libsystemd when pkg-config finds it)
#   make SYSTEMD=no      build without libsystemd
#   make check           install missing packages (as root), build, run every test
#   make check-asan      the integration tests against an ASan+UBSan build
#   make demo            serve a demo maildrop on 127.0.0.1:1100

CC ?= cc

# ---- small hosts (issue 14): cross compilers, musl, static binaries.
# TARGET is the multiarch triplet $(CC) builds for. When it is not this
# machine's (make CC=aarch64-linux-gnu-gcc, CC=arm-linux-gnueabihf-gcc),
# pkg-config sees only Debian's multiarch libraries of the target
# (libcrypt-dev:arm64 and so on: scripts/deps.sh --cross). A C library other
# than glibc (make CC=musl-gcc) has no libsystemd or OpenSSL built for it
# here: pkg-config is not asked, SYSTEMD and TLS default to no. STATIC=1
# links one static binary (meant for musl; no libsystemd then).
# CRYPT=xcrypt|libc|none (cryptlib.h): found by scripts/crypt-probe.sh.
TARGET := $(shell $(CC) -print-multiarch 2>/dev/null || $(CC) -dumpmachine 2>/dev/null)
BUILD_TRIPLET := $(shell cc -print-multiarch 2>/dev/null || cc -dumpmachine 2>/dev/null)
H := \#
LIBC := $(shell printf '$(H)include <limits.h>\n$(H)ifdef __GLIBC__\nglibc\n$(H)else\nother\n$(H)endif\n' | \
	$(CC) -E -P -x c - 2>/dev/null | grep -E '^(glibc|other)$$')
ifneq ($(TARGET),$(BUILD_TRIPLET))
PKG_CONFIG ?= PKG_CONFIG_LIBDIR=/usr/lib/$(TARGET)/pkgconfig:/usr/share/pkgconfig pkg-config
endif
ifeq ($(LIBC),other)
PKG_CONFIG ?= false
endif
STATIC ?=
ifeq ($(STATIC),1)
SYSTEMD ?= no
LDFLAGS += -static
endif
ifeq ($(origin CRYPT),undefined)
CRYPT := $(shell CC="$(CC)" sh scripts/crypt-probe.sh)
endif
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
CFLAGS_EXTRA ?=
WARNINGS = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wno-format-nonliteral
SYSTEMD ?= $(shell $(PKG_CONFIG) --exists libsystemd 2>/dev/null && echo yes || echo no)
TLS ?= $(shell $(PKG_CONFIG) --exists openssl 2>/dev/null && echo yes || echo no)

ifeq ($(CRYPT),xcrypt)
CRYPT_CFLAGS := -DPOP3D_CRYPT_XCRYPT $(shell $(PKG_CONFIG) --cflags libxcrypt 2>/dev/null)
CRYPT_LIBS := $(shell $(PKG_CONFIG) --libs libxcrypt 2>/dev/null || echo -lcrypt)
else ifeq ($(CRYPT),libc)
CRYPT_CFLAGS := -DPOP3D_CRYPT_LIBC
CRYPT_LIBS := $(shell CC="$(CC)" sh scripts/crypt-probe.sh libs)
else
CRYPT_CFLAGS := -DPOP3D_CRYPT_NONE
CRYPT_LIBS :=
endif
ifeq ($(SYSTEMD),yes)
SD_CFLAGS := -DHAVE_SYSTEMD $(shell $(PKG_CONFIG) --cflags libsystemd)
SD_LIBS := $(shell $(PKG_CONFIG) --libs libsystemd)
endif
ifeq ($(TLS),yes)
TLS_CFLAGS := -DHAVE_TLS $(shell $(PKG_CONFIG) --cflags openssl)
TLS_LIBS := $(shell $(PKG_CONFIG) --libs openssl)
TLS_OBJS = tls.o signer.o relay.o
# The TLS code is a module of its own (tlsmod.h): pop3d-tls.so, loaded only by
# the processes that speak TLS or hold the key, so that the monitor and every
# session never map libssl and libcrypto. pop3d itself links tlsmod.o, the
# loader; the tests and fuzzers link the TLS objects and tlslinked.o instead.
TLS_CORE = tlsmod.o
TLS_LINKED = tlslinked.o
TLS_MODULE = pop3d-tls.so
TLS_MODULE_SRCS = tls.c signer.c relay.c sandbox.c tlsmodule.c
MODULE_FLAGS = -fPIC -fvisibility=hidden -shared -Wl,-z,now -Wl,-z,relro
endif

ALL_CFLAGS = -std=c11 $(WARNINGS) -D_FILE_OFFSET_BITS=64 $(CRYPT_CFLAGS) $(SD_CFLAGS) \
	$(TLS_CFLAGS) $(CFLAGS) $(CFLAGS_EXTRA)
LIBS = $(CRYPT_LIBS) $(SD_LIBS)
# what links the TLS objects themselves (tests, fuzzers) needs OpenSSL too
TEST_LIBS = $(LIBS) $(TLS_LIBS)

OBJS = pop3d.o monitor.o io.o auth.o privsep.o sandbox.o maildrop.o mbox.o maildir.o md5.o \
	xxh3.o proxy.o uidlsrc.o uidlmap.o $(TLS_CORE)
HDRS = config.h io.h auth.h privsep.h sandbox.h maildrop.h md5.h xxh3.h lfscan.h session.h proxy.h \
	tls.h signer.h relay.h cryptlib.h uidlsrc.h uidlmap.h tlsmod.h
SRCS = $(OBJS:.o=.c)
ASAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

all: pop3d pop3passwd $(TLS_MODULE)

pop3d: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

%.o: %.c $(HDRS)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# where the installed module is; baked into tlsmod.o (rewritten only when it
# changes, so PREFIX or PKGLIBDIR given to make install rebuilds it)
tlsmod-path.h: FORCE
	@echo '#define TLS_MODULE_PATH "$(PKGLIBDIR)/pop3d-tls.so"' > $@.tmp; \
	cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp
tlsmod.o: tlsmod-path.h
FORCE:
.PHONY: FORCE

pop3d-tls.so: $(TLS_MODULE_SRCS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(MODULE_FLAGS) $(LDFLAGS) -o $@ $(TLS_MODULE_SRCS) $(TLS_LIBS)

pop3d-asan-tls.so: $(TLS_MODULE_SRCS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(ASAN) $(MODULE_FLAGS) -o $@ $(TLS_MODULE_SRCS) $(TLS_LIBS)

LIBOBJS = io.o auth.o privsep.o sandbox.o maildrop.o mbox.o maildir.o md5.o xxh3.o proxy.o \
	uidlsrc.o uidlmap.o $(TLS_OBJS) $(TLS_LINKED)

tests/unit: tests/unit.c $(LIBOBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -I. -o $@ tests/unit.c $(LIBOBJS) $(TEST_LIBS)

# the octets a session sends after login, from the server's own code, with
# no fork: runs under qemu-user (tests/cross.py)
tests/dropdump: tests/dropdump.c pop3d.c monitor.o $(LIBOBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -I. -o $@ tests/dropdump.c monitor.o $(LIBOBJS) $(TEST_LIBS)

pop3d-asan: $(SRCS) $(HDRS) $(if $(TLS_CORE),tlsmod-path.h pop3d-asan-tls.so)
	$(CC) $(ALL_CFLAGS) $(ASAN) -o $@ $(SRCS) $(LIBS)

tests/unit-asan: tests/unit.c $(SRCS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(ASAN) -I. -o $@ tests/unit.c $(LIBOBJS:.o=.c) $(TEST_LIBS)

deps:
	sh scripts/deps.sh

check: deps
	$(MAKE) all tests/unit
	bash tests/check.sh

check-asan: deps
	$(MAKE) pop3d-asan tests/unit-asan
	bash tests/check.sh --asan

demo: deps
	$(MAKE) all
	sh scripts/demo.sh

# libFuzzer harnesses (clang): make fuzz [FUZZ_TIME=seconds each]
FUZZERS = session mbox maildir_name userfile proxy uidlsrc $(if $(TLS_OBJS),signer)
FUZZ_TIME ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
LIBSRCS = $(LIBOBJS:.o=.c)

fuzz/session: fuzz/session.c pop3d.c monitor.c $(LIBSRCS) $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/session.c monitor.c $(LIBSRCS) $(TEST_LIBS)

fuzz/mbox: fuzz/mbox.c $(LIBSRCS) $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/mbox.c $(LIBSRCS) $(TEST_LIBS)

fuzz/maildir_name: fuzz/maildir_name.c $(LIBSRCS) $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/maildir_name.c $(filter-out maildir.c,$(LIBSRCS)) $(TEST_LIBS)

fuzz/signer: fuzz/signer.c signer.c sandbox.c $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/signer.c sandbox.c $(TEST_LIBS)

fuzz/proxy: fuzz/proxy.c proxy.c $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/proxy.c

fuzz/uidlsrc: fuzz/uidlsrc.c uidlsrc.c md5.c $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/uidlsrc.c uidlsrc.c md5.c

fuzz/userfile: fuzz/userfile.c auth.c sandbox.c md5.c $(HDRS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -o $@ fuzz/userfile.c auth.c sandbox.c md5.c $(TEST_LIBS)

fuzz-build: $(FUZZERS:%=fuzz/%)

# Each harness for FUZZ_TIME seconds from its seed corpus (new inputs go to a
# scratch directory, removed when the harness ends well); a crash stops make
# and leaves crash-* and the log in that directory.
fuzz: deps fuzz-build fuzz-regress
	@for f in $(FUZZERS); do \
		w=$$(mktemp -d /tmp/pop3d-fuzz-$$f.XXXXXX); chmod 0777 $$w; \
		echo "fuzz/$$f: $(FUZZ_TIME) s, work dir $$w"; \
		fuzz/$$f -max_total_time=$(FUZZ_TIME) -max_len=65536 -timeout=10 \
			-artifact_prefix=$$w/ -print_final_stats=1 $$w fuzz/corpus/$$f \
			2>$$w/log || { tail -40 $$w/log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $$w/log; \
		rm -rf $$w; \
	done

# The seed corpora and every input that once crashed a harness, run once.
fuzz-regress: fuzz-build
	@for f in $(FUZZERS); do \
		files=$$(ls fuzz/corpus/$$f/* fuzz/regress/$$f/* 2>/dev/null); \
		fuzz/$$f $$files >/dev/null 2>&1 || { echo "fuzz-regress: $$f FAILED"; \
			fuzz/$$f $$files 2>&1 | tail -30; exit 1; }; \
		echo "fuzz-regress: $$f ok ($$(echo $$files | wc -w) inputs)"; \
	done

clean:
	rm -f pop3d pop3d-asan tests/unit tests/unit-asan tests/dropdump *.o $(FUZZERS:%=fuzz/%) \
		pop3d-tls.so pop3d-asan-tls.so tlsmod-path.h

.PHONY: all deps check check-asan demo clean fuzz fuzz-build fuzz-regress

# ---------------------------------------------------------------- pop3passwd, install

pop3passwd: pop3passwd.c config.h cryptlib.h
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ pop3passwd.c $(CRYPT_LIBS)

clean: clean-pop3passwd
clean-pop3passwd:
	rm -f pop3passwd

# make install [PREFIX=/usr/local] [DESTDIR=] [SBINDIR=] [BINDIR=] [MANDIR=]
#              [SYSTEMDUNITDIR=] [SYSUSERSDIR=] [DOCDIR=] [DATADIR=]
# The paths in the units, the inetd line and the xinetd file are rewritten to
# $(SBINDIR)/pop3d. Nothing is enabled or started; see README "Deploying".
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/pop3d
LIBDIR ?= $(PREFIX)/lib
PKGLIBDIR ?= $(LIBDIR)/pop3d
SYSTEMDUNITDIR ?= $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
SYSUSERSDIR ?= $(shell $(PKG_CONFIG) --variable=sysusersdir systemd 2>/dev/null || echo /usr/lib/sysusers.d)
INSTALL ?= install
UNIT_FILES = pop3d.socket pop3d@.service pop3s.socket pop3s@.service
XINETD_FILES = pop3d pop3s
MAN_FILES = man8/pop3d.8 man5/pop3d.passwd.5 man1/pop3passwd.1
F2B_DIR = $(DATADIR)/pop3d/fail2ban
SUBST_SBIN = sed -e 's|/usr/local/sbin/pop3d|$(SBINDIR)/pop3d|g'

install: pop3d pop3passwd $(TLS_MODULE)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)/examples/xinetd.d \
		$(DESTDIR)$(DOCDIR)/examples/nginx $(DESTDIR)$(DOCDIR)/examples/haproxy \
		$(DESTDIR)$(F2B_DIR)/filter.d $(DESTDIR)$(F2B_DIR)/jail.d
	$(INSTALL) -m 0755 pop3d $(DESTDIR)$(SBINDIR)/pop3d
	$(INSTALL) -m 0755 pop3passwd $(DESTDIR)$(BINDIR)/pop3passwd
	$(if $(TLS_MODULE),$(INSTALL) -d -m 0755 $(DESTDIR)$(PKGLIBDIR) && \
		$(INSTALL) -m 0644 $(TLS_MODULE) $(DESTDIR)$(PKGLIBDIR)/pop3d-tls.so)
	for m in $(MAN_FILES); do \
		$(INSTALL) -m 0644 man/$${m#*/} $(DESTDIR)$(MANDIR)/$$m || exit 1; \
	done
	for u in $(UNIT_FILES); do \
		$(SUBST_SBIN) units/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u || exit 1; \
	done
	$(INSTALL) -m 0644 units/pop3d.sysusers $(DESTDIR)$(SYSUSERSDIR)/pop3d.conf
	$(SUBST_SBIN) units/inetd.conf > $(DESTDIR)$(DOCDIR)/examples/inetd.conf
	chmod 0644 $(DESTDIR)$(DOCDIR)/examples/inetd.conf
	for x in $(XINETD_FILES); do \
		$(SUBST_SBIN) units/xinetd.d/$$x > $(DESTDIR)$(DOCDIR)/examples/xinetd.d/$$x && \
		chmod 0644 $(DESTDIR)$(DOCDIR)/examples/xinetd.d/$$x || exit 1; \
	done
	rm -f $(DESTDIR)$(DOCDIR)/examples/passwd
	(umask 077 && { \
		echo '# /etc/pop3d/passwd - pop3d user file, see pop3d.passwd(5). Mode 0600, owner root.'; \
		echo '# name:secret:uid:gid:gecos:maildrop'; \
		echo '# Make lines with pop3passwd(1):  pop3passwd -u alice -i 1000 -g 1000 -m /var/mail/alice'; \
		echo '#alice:$$y$$j9T$$...:1000:1000:Alice:/var/mail/alice'; \
		echo '#bob:$$y$$j9T$$...:1001:1001:Bob (Maildir):/home/bob/Maildir/'; \
		echo '#carol:{PLAIN}secret:1002:1002:Carol (APOP):/var/mail/carol'; \
	} > $(DESTDIR)$(DOCDIR)/examples/passwd)
	chmod 0600 $(DESTDIR)$(DOCDIR)/examples/passwd
	$(INSTALL) -m 0644 contrib/nginx/pop3d-proxy.conf $(DESTDIR)$(DOCDIR)/examples/nginx/pop3d-proxy.conf
	$(INSTALL) -m 0644 contrib/haproxy/haproxy.cfg $(DESTDIR)$(DOCDIR)/examples/haproxy/haproxy.cfg
	$(INSTALL) -m 0644 contrib/fail2ban/filter.d/pop3d.conf $(DESTDIR)$(F2B_DIR)/filter.d/pop3d.conf
	$(INSTALL) -m 0644 contrib/fail2ban/jail.d/pop3d.conf $(DESTDIR)$(F2B_DIR)/jail.d/pop3d.conf

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/pop3d $(DESTDIR)$(BINDIR)/pop3passwd \
		$(DESTDIR)$(PKGLIBDIR)/pop3d-tls.so
	-rmdir $(DESTDIR)$(PKGLIBDIR)
	for m in $(MAN_FILES); do rm -f $(DESTDIR)$(MANDIR)/$$m; done
	for u in $(UNIT_FILES); do rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	rm -f $(DESTDIR)$(SYSUSERSDIR)/pop3d.conf
	for x in $(XINETD_FILES); do rm -f $(DESTDIR)$(DOCDIR)/examples/xinetd.d/$$x; done
	rm -f $(DESTDIR)$(DOCDIR)/examples/nginx/pop3d-proxy.conf \
		$(DESTDIR)$(DOCDIR)/examples/haproxy/haproxy.cfg
	rm -f $(DESTDIR)$(DOCDIR)/examples/inetd.conf $(DESTDIR)$(DOCDIR)/examples/passwd \
		$(DESTDIR)$(F2B_DIR)/filter.d/pop3d.conf $(DESTDIR)$(F2B_DIR)/jail.d/pop3d.conf
	-rmdir $(DESTDIR)$(DOCDIR)/examples/xinetd.d $(DESTDIR)$(DOCDIR)/examples/nginx \
		$(DESTDIR)$(DOCDIR)/examples/haproxy $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(F2B_DIR)/filter.d $(DESTDIR)$(F2B_DIR)/jail.d $(DESTDIR)$(F2B_DIR) \
		$(DESTDIR)$(DATADIR)/pop3d 2>/dev/null

.PHONY: install uninstall clean-pop3passwd

# ---- make bench (issue 7): pop3d against Dovecot and popa3d on loopback.
# Not part of check or CI; takes ~15-20 minutes; see bench/README.md.
# BENCH_ARGS, e.g. BENCH_ARGS="--quick" or "--servers pop3d --runs 7".
BENCH_ARGS ?=

bench/empty: bench/empty.c
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ bench/empty.c $(LIBS)

# the lean pipelined reader (plain and POP3S): needs OpenSSL, as TLS=yes does
bench/popread: bench/popread.c
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ bench/popread.c $(shell $(PKG_CONFIG) --libs openssl)

bench:
	sh scripts/deps.sh --bench
	$(MAKE) all bench/empty bench/popread
	/usr/bin/python3 bench/bench.py $(BENCH_ARGS)

.PHONY: bench

# ---- crash consistency (issue 4): tests/faults.py and tests/crash.py run in
# `make check` (crash.py in short mode); `make check-slow` runs the long kill
# test (>= 1000 SIGKILLs during UPDATE, ~10-15 minutes). CRASH_ARGS, e.g.
# CRASH_ARGS="--seed 42" or "--kills 3000".
# It also runs the soak (issue 13, tests/soak.py): 200 concurrent clients for
# 300 s against 240 mbox and Maildir users while procmail delivers, checked
# against a ledger (~6-7 minutes). SOAK_ARGS, e.g. SOAK_ARGS="--seed 42", or a
# quick try: SOAK_ARGS="--seconds 30 --clients 50 --users 60".
CRASH_ARGS ?=
SOAK_ARGS ?=

tests/faultinject.so: tests/faultinject.c
	$(CC) -O2 -Wall -Wextra -shared -fPIC $(CFLAGS_EXTRA) -o $@ tests/faultinject.c -ldl

check-slow: deps
	$(MAKE) all tests/faultinject.so
	@rc=0; \
	/usr/bin/python3 tests/crash.py --long $(CRASH_ARGS) || rc=1; \
	/usr/bin/python3 tests/soak.py $(SOAK_ARGS) || rc=1; \
	sh scripts/deps.sh --cross && /usr/bin/python3 tests/cross.py --server || rc=1; \
	exit $$rc

clean: clean-faultinject
clean-faultinject:
	rm -f tests/faultinject.so

.PHONY: check-slow clean-faultinject

# ---- small hosts (issue 14): the Debian package, static musl, ARM.
# make deb: dist/pop3d_VERSION_ARCH.deb (debian/, scripts/deb.sh); installs
# its build dependencies first, as make check does.
deb: deps
	sh scripts/deb.sh

# make cross: arm64 and armhf cross builds, their unit tests and tests/dropdump
# under qemu-user against x86-64's output (tests/cross.py; deps.sh --cross).
cross:
	sh scripts/deps.sh --cross
	/usr/bin/python3 tests/cross.py

.PHONY: deb cross
