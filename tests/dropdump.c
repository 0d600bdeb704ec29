/*
 * tests/dropdump.c - the octets pop3d sends after login, without a server:
 *
 *   tests/dropdump MAILDROP
 *
 * loads MAILDROP (an mbox file, or a Maildir directory) with the server's own
 * maildrop code and runs the server's own command functions (it includes
 * pop3d.c) for STAT, LIST, UIDL, then for n = 1, 2, ... RETR n and TOP n 3,
 * writing every reply to stdout exactly as a session writes it to its client,
 * terminating dots included. No fork, no privileges, no user file: it runs
 * under qemu-user, where the server cannot (tests/cross.py compares its
 * output on arm64 and armhf with x86-64's, and on x86-64 with the real
 * server's). The maildrop must be the running user's; its session lock (an
 * mbox's) goes to a temporary directory removed at exit. Exit status 0, or 1
 * with a message on stderr when the maildrop cannot be loaded.
 */
#define main pop3d_main
int pop3d_main(int, char **);
#include "../pop3d.c"
#undef main

#include <dirent.h>

static int
run(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One command line through the server's dispatcher; END stops the dump. */
static int
run(struct session *s, const char *fmt, ...)
{
	char line[MAX_LINE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	return dispatch(s, line);
}

int
main(int argc, char **argv)
{
	static struct session session;
	struct session *s = &session;
	char lockdir[] = "/tmp/pop3d-dropdump.XXXXXX", err[512], path[512];
	size_t n;
	int r, rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: dropdump MAILDROP\n");
		return 2;
	}
	if (mkdtemp(lockdir) == NULL) {
		perror("dropdump: mkdtemp");
		return 1;
	}
	session_init(s, -1, STDOUT_FILENO);
	s->lockdir = lockdir;
	snprintf(s->who.name, sizeof(s->who.name), "dropdump");
	snprintf(s->rhost, sizeof(s->rhost), "local");
	r = maildrop_open(&s->md, argv[1], err, sizeof(err));
	if (r == MD_OK)
		r = maildrop_lock(&s->md, lockdir, err, sizeof(err));
	if (r == MD_OK)
		r = maildrop_load(&s->md, err, sizeof(err));
	if (r != MD_OK) {
		fprintf(stderr, "dropdump: %s: %s\n", argv[1], err);
		rc = 1;
	} else {
		s->state = S_TRANS;
		s->io.timeout = s->timeout;
		if (run(s, "STAT") != END && run(s, "LIST") != END && run(s, "UIDL") != END)
			for (n = 1; n <= s->md.count; n++)
				if (run(s, "RETR %zu", n) == END || run(s, "TOP %zu 3", n) == END) {
					rc = 1;
					break;
				}
		if (io_flush(&s->io) < 0 || s->io.failed)
			rc = 1;
	}
	maildrop_close(&s->md);
	/* the mbox session lock file, if any, then the directory */
	{
		DIR *d = opendir(lockdir);
		struct dirent *e;

		while (d != NULL && (e = readdir(d)) != NULL)
			if (e->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", lockdir, e->d_name);
				unlink(path);
			}
		if (d != NULL)
			closedir(d);
	}
	rmdir(lockdir);
	return rc;
}
