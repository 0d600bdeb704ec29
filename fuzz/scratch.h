/*
 * fuzz/scratch.h - a harness's scratch directory: made under /tmp once, at
 * start, and removed with all it holds when the harness exits (by the
 * harness itself, never by a process it forked). A crash (abort, a
 * sanitizer report) leaves it for a look.
 */
#ifndef POP3D_FUZZ_SCRATCH_H
#define POP3D_FUZZ_SCRATCH_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *scratch_dir;
static pid_t scratch_owner;

static int
scratch_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void
scratch_clean(void)
{
	if (scratch_dir != NULL && getpid() == scratch_owner)
		nftw(scratch_dir, scratch_remove, 16, FTW_DEPTH | FTW_PHYS);
}

/* template: "/tmp/NAME.XXXXXX", made into the directory's name. */
static void
scratch_make(char *template)
{
	if (mkdtemp(template) == NULL)
		abort();
	scratch_dir = template;
	scratch_owner = getpid();
	atexit(scratch_clean);
}

#endif
