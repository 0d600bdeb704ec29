/*
 * config.h - every limit, default and fixed path of pop3d, in one place.
 *
 * Anything bounded in the server is bounded by a constant from this file, so an
 * auditor can read the whole attack surface's arithmetic here.
 */
#ifndef POP3D_CONFIG_H
#define POP3D_CONFIG_H

#define POP3D_VERSION "0.2"

/* Defaults that options override. */
#define DEFAULT_USERFILE "/etc/pop3d/passwd"   /* -f */
#define DEFAULT_LOCKDIR "/var/lib/pop3d"       /* -l: session locks and mbox journals */
#define DEFAULT_TIMEOUT 600                     /* -t: idle seconds after login (RFC 1939 minimum) */
#define DEFAULT_AUTH_TIMEOUT 60                 /* -T: idle seconds before login */
#define DEFAULT_FAIL_DELAY 2                    /* -D: seconds before a failed login is answered */
#define DEFAULT_PRELOGIN_USER "pop3d"           /* -u: else "nobody" when it does not exist */
#define MAX_TIMEOUT 86400                       /* upper bound for -t and -T */
#define MAX_FAIL_DELAY 60                       /* upper bound for -D */

/* Client input. RFC 2449: a command line is at most 255 octets with its CRLF. */
#define MAX_LINE 255                            /* octets of one command line, terminator included */
#define MAX_ARGS 2                              /* arguments after the keyword (TOP n k) */
#define MAX_AUTH_FAILURES 3                     /* failed logins before the connection closes */
#define MAX_BAD_AUTH 3                          /* consecutive bad commands before login */
#define MAX_BAD_COMMANDS 10                     /* consecutive bad commands after login */
#ifndef MAX_PRELOGIN_SECONDS
#define MAX_PRELOGIN_SECONDS 300                /* a connection's whole time before login (or -T) */
#endif
#define MAX_NAME 64                             /* octets of a user name */
#define PRELOGIN_GRACE 5                        /* seconds a pre-login process has to exit
                                                 * after its last answer or its channel closed */
#define PRELOGIN_MAX_MEMORY (256UL << 20)       /* RLIMIT_AS of the pre-login process */
#define APOP_DIGEST_LEN 32                      /* hex digits of an APOP digest */

/* TLS. */
#define MAX_CERT_FILE 65536                     /* octets of a certificate chain file */
#define MAX_KEY_FILE 16384                      /* octets of a private key file */
#define MAX_SIGNATURE 1024                      /* octets of one signature (RSA 8192) */
#define MAX_INHERITED_FD 64                     /* descriptors the signer closes at start */
#define MAX_SASL_LINE 1024                      /* octets of an AUTH continuation line */
#define RELAY_BUF_SIZE 65536                    /* each way through the relay */

/* The PROXY protocol (-P). */
#define MAX_PROXIES 32                          /* entries of the -P list */
#define MAX_PROXY_HEADER 1024                   /* octets of a v2 header, TLVs included (a v1
                                                 * header has at most 107) */

/* Client output. */
#define OUTBUF_SIZE 65536                       /* replies are buffered up to this, then written */
#define INBUF_SIZE 4096                         /* client read buffer */

/* The user file. */
#define MAX_USERFILE_LINE 4096                  /* longer lines are malformed */
#define MAX_SECRET 512                          /* octets of a secret field */
#define MAX_PATH 4096                           /* octets of a maildrop path */
#define MAX_COST_CLASSES 16                     /* kinds of crypt hash (scheme and cost) the
                                                 * dummy work of unknown users imitates */

/* Maildrops. */
#ifndef MAX_MESSAGES                            /* (these three overridable with -D at build) */
#define MAX_MESSAGES 1000000                    /* messages one maildrop may hold */
#endif
#ifndef MAX_MAILDROP_BYTES
#define MAX_MAILDROP_BYTES (64ULL << 30)        /* octets (as sent) one maildrop may hold */
#endif
#define MBOX_READ_SIZE 32768                    /* read size when scanning or sending an mbox */
#define MBOX_COPY_SIZE 65536                    /* chunk of the update's copies (journal, rewrite) */
#define MBOX_LOCK_WAIT 10                       /* seconds to wait for the mbox fcntl lock */
#define MBOX_LOCK_POLL_MS 50                    /* retry interval while waiting for it */
#ifndef DOTLOCK_STALE                           /* (these three overridable at build, for tests) */
#define DOTLOCK_STALE 300                       /* seconds after which a dotlock is broken */
#endif
#ifndef DOTLOCK_REFRESH
#define DOTLOCK_REFRESH 60                      /* a dotlock held this long is touched again */
#endif
#ifndef STATE_GC_INTERVAL
#define STATE_GC_INTERVAL 3600                  /* seconds between clean-ups of the state dir */
#endif
#define STATE_GC_MAX_FILES 100000               /* files one clean-up looks at, at most */
#define RESCUE_MAX 4                            /* rescue files kept for one maildrop path, at most */
#define UIDL_LEN 72                             /* a 70-octet UIDL and its NUL, with room to spare */

/* UIDLs taken over from other servers (-U; uidlsrc.c, uidlmap.c). */
#define UIDL_SOURCES_MAX 3                      /* entries of the -U list: dovecot, xuidl, popa3d */
#define DOVECOT_UIDLIST_MAX (128ULL << 20)      /* octets of a dovecot-uidlist read, at most */
#define DOVECOT_LINE_MAX 4096                   /* octets of one of its lines, LF included */
#define HEADER_SCAN_MAX (1 << 20)               /* header octets searched for X-UIDL, a message */
#define HEADER_LINE_MAX 1024                    /* octets of a header line looked at: a longer
                                                 * X-UIDL line holds no valid UIDL */
#define UIDL_RECORD_LINE 144                    /* octets of a record entry: two UIDLs, a space
                                                 * and an LF */
#define UIDL_RECORD_MAX ((unsigned long long)MAX_MESSAGES * UIDL_RECORD_LINE + MAX_PATH + 256)
                                                /* octets of a record, header and end included */
#define UIDL_RECORD_KEEP (30 * 86400)           /* seconds a record outlives its maildrop, unused */
#define UIDL_RECORD_TRIES 20                    /* tries for a record's lock the clean-up holds */
#define POPA3D_MAX_MBOX 2147483647LL            /* popa3d 1.0.3 refuses larger mailboxes
                                                 * (MAX_MAILBOX_OPEN_BYTES) */
#define POPA3D_BLOCK 65536                      /* its read size (FILE_BUFFER_SIZE) */
#define POPA3D_LINE_BUFFER 32                   /* its line fragment buffer (LINE_BUFFER_SIZE) */

#endif
