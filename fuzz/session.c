/*
 * fuzz/session.c - libFuzzer harness for the session state machine and its
 * command parser: the input is what a client sends, both before and after
 * login, against a real user file and mbox. The harness includes pop3d.c to
 * reach its static session code; credentials are checked in-process (no
 * pre-login child), and it runs as an unprivileged user, as pop3d does for
 * virtual mail, so no login switches uid.
 */
#define main pop3d_main
int pop3d_main(int, char **);
#include "../pop3d.c"
#undef main

#include "scratch.h"
#include <fcntl.h>
#include <sys/stat.h>

static char dir[] = "/tmp/pop3d-fuzz-session.XXXXXX";
static char userfile[128], mbox[128], state[128];

static const char mail[] =
    "From a@example.org Mon Jan  1 00:00:00 2024\nReceived: by x\nSubject: one\n\n"
    "Hello\n.dot\n\nFrom b Mon Jan  1 00:00:00 2024\nSubject: two\r\n\r\nbody\r\n\n"
    "From c Tue\nSubject: three\n\nno newline";

static void
write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char users[512];

	(void)argc;
	(void)argv;
	scratch_make(dir);
	if (geteuid() == 0) {           /* become a virtual-mail pop3d */
		if (chown(dir, 65534, 65534) < 0 || setgroups(0, NULL) < 0 ||
		    setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			abort();
	}
	snprintf(userfile, sizeof(userfile), "%s/passwd", dir);
	snprintf(mbox, sizeof(mbox), "%s/mbox", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	mkdir(state, 0700);
	snprintf(users, sizeof(users),
	    "alice:{PLAIN}secret:::Alice:%s\n"
	    "bob:$6$rounds=1000$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8"
	    "wwnSq.qc.eoxqOmSuNi2xGsB6j8ZsC0:::Bob:%s\n"
	    "carol:*:::Carol:%s\n", mbox, mbox, mbox);
	write_file(userfile, users, strlen(users), 0600);
	openlog("pop3d-fuzz", LOG_NDELAY, LOG_MAIL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct session session;
	struct session *s = &session;
	int in[2], out;

	if (size > 60000)               /* the whole input must fit a pipe */
		return 0;
	write_file(mbox, mail, sizeof(mail) - 1, 0600);
	if (pipe(in) < 0 || (out = open("/dev/null", O_WRONLY)) < 0)
		abort();
	if (write(in[1], data, size) != (ssize_t)size)
		abort();
	close(in[1]);
	session_init(s, in[0], out);
	s->userfile = userfile;
	s->lockdir = state;
	s->fail_delay = 0;
	s->io.timeout = 1;
	s->timeout = 1;
	if (auth_scan(s->userfile, &s->auth, NULL, 0) < 0)
		abort();
	snprintf(s->stamp, sizeof(s->stamp), "<1896.697170952@dbc.mtview.ca.us>");
	reply(s, "+OK pop3d ready %s", s->stamp);
	session_loop(s);
	io_flush(&s->io);
	maildrop_close(&s->md);
	close(in[0]);
	close(out);
	return 0;
}
