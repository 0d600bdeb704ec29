/*
 * sandbox.h - what a confined process gives up for good, on top of its user
 * and root directory: resource limits and a system call allow-list (seccomp),
 * one set for each role that handles untrusted input without needing more.
 */
#ifndef POP3D_SANDBOX_H
#define POP3D_SANDBOX_H

#include <stddef.h>

enum {
	SANDBOX_PRELOGIN,       /* the pre-login process: client I/O and its channel */
	SANDBOX_HASH,           /* a password hashing process: memory and exit only */
	SANDBOX_SIGNER          /* the signer: its channel, memory, randomness, exit */
};

/* Set PR_SET_NO_NEW_PRIVS, the role's resource limits and its seccomp filter
 * (a call off the list fails with EPERM). fd_limit: the highest descriptor the
 * process keeps, plus one. -1 with a reason in err when PR_SET_NO_NEW_PRIVS
 * fails; limits and a filter the kernel refuses (no seccomp, an emulator such
 * as valgrind, another CPU) are logged ("warning sandbox: ...") and done
 * without. */
int sandbox_enter(int role, int fd_limit, char *err, size_t errlen);

#endif
