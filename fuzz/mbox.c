/*
 * fuzz/mbox.c - libFuzzer harness for the mbox parser, the sender and the
 * update. The input is an mbox file. For every message the octets sent, with
 * dot-stuffing undone, must number exactly its size; after deleting every
 * other message and updating, a fresh load must find exactly the messages
 * kept, with the same sizes and UIDLs.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../maildrop.h"
#include "scratch.h"

static char dir[] = "/tmp/pop3d-fuzz-mbox.XXXXXX";
static char path[128], state[128], out[128];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	scratch_make(dir);
	snprintf(path, sizeof(path), "%s/mbox", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	mkdir(state, 0700);
	return 0;
}

static void
open_mbox(struct maildrop *md)
{
	char err[512];

	maildrop_init(md);
	md->dotlock = 0;
	if (maildrop_open(md, path, err, sizeof(err)) != MD_OK ||
	    maildrop_lock(md, state, err, sizeof(err)) != MD_OK)
		abort();
}

/* Octets message i delivers, dot-stuffing undone. */
static uint64_t
sent_size(struct maildrop *md, size_t i)
{
	static struct io io;
	static char buf[1 << 20];
	char err[512];
	uint64_t n = 0;
	ssize_t len, k;
	int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600), bol = 1;

	io_init(&io, -1, fd, 5);
	if (maildrop_open_msg(md, i, 1, err, sizeof(err)) != MD_OK ||
	    maildrop_send(md, i, -1, &io, err, sizeof(err)) < 0 || io_flush(&io) < 0)
		abort();
	lseek(fd, 0, SEEK_SET);
	while ((len = read(fd, buf, sizeof(buf))) > 0)
		for (k = 0; k < len; k++) {
			if (!(bol && buf[k] == '.'))
				n++;
			bol = buf[k] == '\n';
		}
	close(fd);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildrop md;
	char err[512], u[UIDL_LEN];
	struct { uint64_t size; char uidl[UIDL_LEN]; } *keep;
	size_t i, kept = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	open_mbox(&md);
	if (maildrop_load(&md, err, sizeof(err)) != MD_OK) {
		maildrop_close(&md);
		return 0;               /* not an mbox: refused, fine */
	}
	if ((keep = calloc(md.count + 1, sizeof(*keep))) == NULL)
		abort();
	for (i = 0; i < md.count; i++) {
		maildrop_uidl(&md, i, u);
		if (strlen(u) < 1 || strlen(u) > 70 || sent_size(&md, i) != md.msgs[i].size)
			abort();
		md.msgs[i].deleted = i % 2 == 0;
		if (!md.msgs[i].deleted) {
			keep[kept].size = md.msgs[i].size;
			memcpy(keep[kept++].uidl, u, 32);   /* duplicates' suffixes may shift */
		}
	}
	if (maildrop_update(&md, err, sizeof(err)) != MD_OK)
		abort();
	maildrop_close(&md);
	open_mbox(&md);
	if (maildrop_load(&md, err, sizeof(err)) != MD_OK || md.count != kept)
		abort();
	for (i = 0; i < md.count; i++) {
		maildrop_uidl(&md, i, u);
		if (md.msgs[i].size != keep[i].size || strncmp(u, keep[i].uidl, 32) != 0)
			abort();
	}
	free(keep);
	maildrop_close(&md);
	return 0;
}
