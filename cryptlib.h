/*
 * cryptlib.h - the crypt(3) pop3d and pop3passwd were built with, chosen by
 * the Makefile (CRYPT=, found by a test compile when not given):
 *
 *   xcrypt  libxcrypt's crypt_rn: every scheme it knows, yescrypt ($y$)
 *           included (glibc systems, the default);
 *   libc    the C library's own crypt_r, where there is no libxcrypt (musl
 *           on Alpine and OpenWrt): sha512crypt $6$, sha256crypt $5$,
 *           bcrypt $2b$ (and $2a$, $2y$), md5crypt $1$ and DES; not yescrypt;
 *   none    no crypt at all (Debian's musl is packaged without it): crypt
 *           hashes never match, only {PLAIN} secrets log in.
 *
 * pop3d -V says which (CRYPT_BACKEND), and the tests read it there;
 * pop3passwd -h lists the schemes it can make.
 */
#ifndef POP3D_CRYPTLIB_H
#define POP3D_CRYPTLIB_H

#include <stddef.h>
#include <string.h>

#if !defined(POP3D_CRYPT_XCRYPT) && !defined(POP3D_CRYPT_LIBC) && !defined(POP3D_CRYPT_NONE)
#define POP3D_CRYPT_XCRYPT              /* (a build without the Makefile) */
#endif

#if defined(POP3D_CRYPT_XCRYPT)
#include <crypt.h>
#define CRYPT_BACKEND "libxcrypt"
#define CRYPT_SCHEMES "yescrypt $y$, bcrypt $2b$, sha512crypt $6$, sha256crypt $5$, md5crypt $1$ and others"
#elif defined(POP3D_CRYPT_LIBC)
#include <crypt.h>
#define CRYPT_BACKEND "C library crypt_r"
#define CRYPT_SCHEMES "sha512crypt $6$, sha256crypt $5$, bcrypt $2b$, md5crypt $1$; no yescrypt"
#else
#define CRYPT_BACKEND "none"
#define CRYPT_SCHEMES "none: {PLAIN} secrets only"
#endif

/* What pw_crypt needs as scratch space; wipe it after use. */
#if defined(POP3D_CRYPT_XCRYPT) || defined(POP3D_CRYPT_LIBC)
typedef struct crypt_data pw_crypt_data;
#else
typedef struct {
	char unused;
} pw_crypt_data;
#endif

/* The hash of pass with the setting (or whole hash) of setting, in cd; NULL
 * when it cannot be computed (an unknown scheme, a build without crypt). */
static inline const char *
pw_crypt(const char *pass, const char *setting, pw_crypt_data *cd)
{
	memset(cd, 0, sizeof(*cd));
#if defined(POP3D_CRYPT_XCRYPT)
	return crypt_rn(pass, setting, cd, (int)sizeof(*cd));
#elif defined(POP3D_CRYPT_LIBC)
	return crypt_r(pass, setting, cd);
#else
	(void)pass;
	(void)setting;
	return NULL;
#endif
}

#endif
