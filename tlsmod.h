/*
 * tlsmod.h - the TLS module: OpenSSL mapped only where TLS is spoken.
 *
 * tls.c, signer.c and relay.c (and the OpenSSL they link) are built into a
 * shared object of their own, pop3d-tls.so, which only the processes that
 * speak TLS or hold the key load, right after they are forked and before
 * they give up their rights: the pre-login process (and the relay it
 * becomes) and the signer. The monitor, and so every session, never maps
 * libssl or libcrypto: a plaintext session is hundreds of kilobytes smaller,
 * and the process that runs as root holds no TLS code at all.
 *
 * The module exports one symbol, a table of its entry points (struct
 * tls_module, versioned by TLS_MODULE_ABI); tlsmod.c loads it and defines
 * tls_new() and the others as calls through that table, so the callers are
 * the same whether the TLS code is linked in (tests, fuzzers) or loaded.
 */
#ifndef POP3D_TLSMOD_H
#define POP3D_TLSMOD_H

#include <stddef.h>
#include <sys/types.h>

#include "relay.h"
#include "signer.h"
#include "tls.h"

#define TLS_MODULE_ABI 1
#define TLS_MODULE_SYMBOL "pop3d_tls_module"

struct tls_module {
	int abi;                        /* TLS_MODULE_ABI */
	struct tls *(*tls_new)(const char *, size_t, int, char *, size_t);
	int (*tls_accept)(struct tls *, int, int, char *, size_t);
	void (*tls_signer_done)(struct tls *);
	ssize_t (*tls_read)(struct tls *, void *, size_t, int);
	int (*tls_write)(struct tls *, const void *, size_t, int);
	void (*tls_close)(struct tls *, int);
	const char *(*tls_describe)(const struct tls *, char *, size_t);
	void (*signer_run)(const struct signer *, int) __attribute__((noreturn));
	void (*relay_run)(struct tls *, int, int) __attribute__((noreturn));
};

/* The module's path: beside the running binary as <binary>-tls.so when that
 * file is there (a build tree: pop3d-tls.so, pop3d-asan-tls.so), else the
 * installed one (TLS_MODULE_PATH, set at build time). */
const char *tlsmod_path(char *buf, size_t len);

/* NULL when the module file may be loaded, with its path, every symbolic
 * link resolved, in real[PATH_MAX]: a regular file of root's or the running
 * user's, not writable by group or others, in a directory that is root's or
 * the running user's and that group and others may not write either, so
 * nobody else can put another file in its place between the check and the
 * load (the same rule as the binary's own: whoever may replace the binary
 * could always replace its module). Else why not. Checked by the monitor at
 * start, so a missing module is a configuration error. */
const char *tlsmod_unsafe(const char *path, char *real);

/* Load it (once per process): 0, or -1 with the reason in err. */
int tlsmod_load(char *err, size_t errlen);

#endif
