/*
 * bench/empty.c - the RSS baseline: an empty main linked against the same
 * libraries as pop3d (libxcrypt, libsystemd), built with the same flags.
 * It references one symbol of each library so that no --as-needed link drops
 * them, then waits for its client to close the connection (fd 0), like a
 * session that does nothing. bench.py reads its VmHWM from /proc.
 */
#include <crypt.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

int main(void);

/* Address-taken, never called: the libraries are loaded and relocated. */
void *volatile bench_keep[] = {
	(void *)crypt_rn,
#ifdef HAVE_SYSTEMD
	(void *)sd_is_socket,
#endif
};

int
main(void)
{
	char c;

	while (read(0, &c, 1) > 0)
		;
	return 0;
}
