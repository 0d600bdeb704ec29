/*
 * session.h - one POP3 session: its state, shared by the protocol state
 * machine (pop3d.c), which both the pre-login process and the session after
 * login run, and the monitor (monitor.c), which checks credentials and turns
 * into the session after login.
 */
#ifndef POP3D_SESSION_H
#define POP3D_SESSION_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "auth.h"
#include "config.h"
#include "io.h"
#include "maildrop.h"
#include "privsep.h"
#include "proxy.h"

enum { S_AUTH = 1, S_TRANS = 2 };
enum { GO_ON, END };                    /* what a command tells the session loop */
/* How a session ended: the pre-login process tells the monitor so by its exit
 * status, for it has no syslog (a subverted one could forge lines). pop3d
 * itself exits 0 after QUIT and 1 otherwise. */
enum { END_QUIT, END_ERROR, END_TIMEOUT, END_BAD, END_DROP, END_TLS, END_PROXY };

struct tls;

struct session {
	int state;
	int status;                     /* exit status once the session ends */
	const char *userfile, *lockdir;
	struct authinfo auth;
	int fail_delay, timeout;
	gid_t group;                    /* -g: for dotlocks, or (gid_t)-1 */
	const char *prelogin_user;      /* -u */
	int prelogin_user_given;
	int chan;                       /* pre-login process: its channel to the monitor */
	int failures;                   /* failed logins (counted by the monitor) */
	int bad;                        /* consecutive bad commands */
	int logs;                       /* monitor: REQ_LOG records taken */
	char user[MAX_NAME + 1];        /* named by USER, awaiting PASS */
	char stamp[128];                /* APOP timestamp; empty when APOP is not offered */
	char rhost[INET6_ADDRSTRLEN];
	struct user who;                /* logged in as */
	struct maildrop md;
	unsigned long retr, dele;
	struct timespec started;
	/* TLS */
	const char *certfile, *keyfile; /* -c, -k: both, or neither */
	int implicit_tls;               /* -s: TLS from the first octet */
	int allow_plain;                /* -p: logins without TLS allowed */
	char *cert;                     /* the certificate chain, read at start */
	size_t certlen;
	int tls_unusable;               /* configured, but the key or chain cannot be used */
	struct tls *tls;                /* pre-login: the server (NULL: none) */
	int tls_active;                 /* the connection is TLS now */
	int signfd;                     /* pre-login: the channel to the signer */
	pid_t signer;                   /* monitor: the signer, or 0 */
	int relayfd[2];                 /* socketpair: the session's end, the relay's end */
	char *cmdline;                  /* session_loop's line[MAX_LINE] being run: wiped
	                                 * before the pre-login process becomes the relay */
	pid_t relay;                    /* monitor: the relay after a login over TLS, or 0 */
	char tlsinfo[64];               /* protocol and cipher of the login's connection */
	/* PROXY protocol */
	struct proxylist *proxies;      /* -P: the trusted proxies, or NULL */
	int proxy_tls;                  /* the proxy says the client spoke TLS to it */
	int proxy_seen;                 /* monitor: the header's record came */
	int proxied;                    /* monitor: rhost is the client's from a header */
	char proxy_peer[INET6_ADDRSTRLEN]; /* monitor: then the proxy's own address */
	unsigned rport;                 /* monitor: and the client's port */
	struct io io;
};

/* pop3d.c */
void reply(struct session *, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double elapsed(const struct session *);
int prelogin_limit(const struct session *);
void live_totals(const struct session *, size_t *n, uint64_t *octets);

/* monitor.c: the monitor's side of the pre-login dialogue (GO_ON: logged
 * in, the session is this process's now), its checks of one request, the
 * login itself, and what it reaps at the end. */
int monitor(struct session *, int chan, pid_t child);
int verify(struct session *, const struct authreq *, int *limit);
int login(struct session *);
void monitor_finish(struct session *);

#endif
