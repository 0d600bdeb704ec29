/*
 * tlsmod.c - finds, checks and loads the TLS module (tlsmod.h), and calls
 * into it: tls_new() and the others, as the rest of pop3d knows them, are
 * calls through the table the module exports. Linked into pop3d only; the
 * tests and fuzzers that link the TLS code itself leave it out.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tlsmod-path.h"
#include "tlsmod.h"

#ifndef TLS_MODULE_PATH
#define TLS_MODULE_PATH "/usr/local/lib/pop3d/pop3d-tls.so"
#endif

static const struct tls_module *mod;    /* once loaded, for the process's life */

const char *
tlsmod_path(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	struct stat st;

	if (n > 0) {
		exe[n] = '\0';
		if ((size_t)snprintf(buf, len, "%s-tls.so", exe) < len && stat(buf, &st) == 0)
			return buf;
	}
	snprintf(buf, len, "%s", TLS_MODULE_PATH);
	return buf;
}

static int
owned_well(const struct stat *st)
{
	return st->st_uid == 0 || st->st_uid == geteuid();
}

const char *
tlsmod_unsafe(const char *path, char *real)
{
	struct stat st;
	char dir[PATH_MAX], *slash;

	if (realpath(path, real) == NULL || stat(real, &st) < 0)
		return "the TLS module cannot be found (make install puts it there)";
	if (!S_ISREG(st.st_mode) || !owned_well(&st) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return "the TLS module must be a regular file of root's or the running user's, "
		    "not writable by group or others";
	snprintf(dir, sizeof(dir), "%s", real);
	slash = strrchr(dir, '/');              /* (realpath's answer starts with one) */
	if (slash == dir)
		slash[1] = '\0';               /* in / itself */
	else
		*slash = '\0';
	if (stat(dir, &st) < 0 || !owned_well(&st) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return "the TLS module's directory must be root's or the running user's, "
		    "not writable by group or others";
	return NULL;
}

int
tlsmod_load(char *err, size_t errlen)
{
	char path[PATH_MAX + 8], real[PATH_MAX];
	const char *why;
	void *h;

	if (mod != NULL)
		return 0;
	tlsmod_path(path, sizeof(path));
	if ((why = tlsmod_unsafe(path, real)) != NULL) {
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	if ((h = dlopen(real, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(err, errlen, "%s", dlerror());
		return -1;
	}
	mod = dlsym(h, TLS_MODULE_SYMBOL);
	if (mod == NULL || mod->abi != TLS_MODULE_ABI) {
		snprintf(err, errlen, "%s: not a TLS module of this pop3d (ABI %d)", path,
		    TLS_MODULE_ABI);
		mod = NULL;
		dlclose(h);
		return -1;
	}
	return 0;
}

/* Called only where tlsmod_load() succeeded: the pre-login process checks
 * s->tls (tls_new's answer) before any other call, the signer is run only
 * after a load. */

struct tls *
tls_new(const char *pem, size_t len, int signfd, char *err, size_t errlen)
{
	if (mod == NULL) {
		snprintf(err, errlen, "the TLS module is not loaded");
		return NULL;
	}
	return mod->tls_new(pem, len, signfd, err, errlen);
}

int
tls_accept(struct tls *t, int fd, int timeout, char *err, size_t errlen)
{
	return mod->tls_accept(t, fd, timeout, err, errlen);
}

void
tls_signer_done(struct tls *t)
{
	mod->tls_signer_done(t);
}

ssize_t
tls_read(struct tls *t, void *buf, size_t n, int timeout)
{
	return mod->tls_read(t, buf, n, timeout);
}

int
tls_write(struct tls *t, const void *buf, size_t n, int timeout)
{
	return mod->tls_write(t, buf, n, timeout);
}

void
tls_close(struct tls *t, int timeout)
{
	if (mod != NULL)
		mod->tls_close(t, timeout);
}

const char *
tls_describe(const struct tls *t, char *buf, size_t len)
{
	return mod->tls_describe(t, buf, len);
}

void
signer_run(const struct signer *sg, int chan)
{
	mod->signer_run(sg, chan);
}

void
relay_run(struct tls *t, int sess, int timeout)
{
	mod->relay_run(t, sess, timeout);
}
