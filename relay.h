/*
 * relay.h - the relay process (relay.c): after a login over TLS, the
 * pre-login process carries the session's octets to and from the client.
 */
#ifndef POP3D_RELAY_H
#define POP3D_RELAY_H

#include "config.h"

struct tls;

/* Relay between t (the client) and sess (the session's end of a
 * socketpair) until either is done; timeout: seconds the client may take to
 * accept octets. Never returns. */
void relay_run(struct tls *t, int sess, int timeout) __attribute__((noreturn));

#endif
