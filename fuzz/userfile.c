/*
 * fuzz/userfile.c - libFuzzer harness for the user-file parser: the input is
 * a user file; it is scanned as at start-up, then looked up (APOP, which costs
 * no crypt) for the name its first line names. A random digest never logs in.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "../auth.h"
#include "scratch.h"

static char dir[] = "/tmp/pop3d-fuzz-userfile.XXXXXX";
static char path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	scratch_make(dir);
	snprintf(path, sizeof(path), "%s/passwd", dir);
	openlog("pop3d-fuzz", LOG_NDELAY, LOG_MAIL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[MAX_NAME + 1], err[512];
	struct authinfo info;
	struct user u;
	size_t i;
	int known, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (auth_scan(path, &info, err, sizeof(err)) < 0)
		abort();
	for (i = 0; i < size && i < MAX_NAME && data[i] != ':' && data[i] != '\n'; i++)
		name[i] = (char)data[i];
	name[i] = '\0';
	if (!auth_valid_name(name))
		return 0;
	if (auth_apop(path, name, "00000000000000000000000000000000",
	    "<1.2@fuzz>", &u, &known) == AUTH_OK)
		abort();
	return 0;
}
