# pop3d - a small, secure POP3 server for super-servers.
#
#   make                 build ./pop3d (with libsystemd when pkg-config finds it)
#   make SYSTEMD=no      build without libsystemd
#   make check           install missing packages (as root), build, run every test
#   make check-asan      the integration tests against an ASan+UBSan build
#   make demo            serve a demo maildrop on 127.0.0.1:1100

CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
CFLAGS_EXTRA ?=
WARNINGS = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wno-format-nonliteral
SYSTEMD ?= $(shell $(PKG_CONFIG) --exists libsystemd 2>/dev/null && echo yes || echo no)

CRYPT_CFLAGS := $(shell $(PKG_CONFIG) --cflags libxcrypt 2>/dev/null)
CRYPT_LIBS := $(shell $(PKG_CONFIG) --libs libxcrypt 2>/dev/null || echo -lcrypt)
ifeq ($(SYSTEMD),yes)
SD_CFLAGS := -DHAVE_SYSTEMD $(shell $(PKG_CONFIG) --cflags libsystemd)
SD_LIBS := $(shell $(PKG_CONFIG) --libs libsystemd)
endif

ALL_CFLAGS = -std=c11 $(WARNINGS) -D_FILE_OFFSET_BITS=64 $(CRYPT_CFLAGS) $(SD_CFLAGS) \
	$(CFLAGS) $(CFLAGS_EXTRA)
LIBS = $(CRYPT_LIBS) $(SD_LIBS)

OBJS = pop3d.o io.o auth.o maildrop.o mbox.o maildir.o md5.o
HDRS = config.h io.h auth.h maildrop.h md5.h
SRCS = $(OBJS:.o=.c)
ASAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

all: pop3d

pop3d: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

%.o: %.c $(HDRS)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

LIBOBJS = io.o auth.o maildrop.o mbox.o maildir.o md5.o

tests/unit: tests/unit.c $(LIBOBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -I. -o $@ tests/unit.c $(LIBOBJS) $(LIBS)

pop3d-asan: $(SRCS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(ASAN) -o $@ $(SRCS) $(LIBS)

tests/unit-asan: tests/unit.c $(SRCS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(ASAN) -I. -o $@ tests/unit.c $(LIBOBJS:.o=.c) $(LIBS)

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

clean:
	rm -f pop3d pop3d-asan tests/unit tests/unit-asan *.o

.PHONY: all deps check check-asan demo clean
