/*
 * tlslinked.c - tlsmod.h for the programs that link the TLS code itself
 * (tests/unit, tests/dropdump, the fuzzers): there is no module to find or
 * load, tls_new() and the others are the real ones.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>

#include "tlsmod.h"

const char *
tlsmod_path(char *buf, size_t len)
{
	snprintf(buf, len, "(linked in)");
	return buf;
}

const char *
tlsmod_unsafe(const char *path, char *real)
{
	snprintf(real, PATH_MAX, "%s", path);
	return NULL;
}

int
tlsmod_load(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return 0;
}
