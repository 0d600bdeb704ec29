/*
 * tlsmodule.c - the one symbol pop3d-tls.so exports: the table of its entry
 * points (tlsmod.h). Built into the module only; everything else in it is
 * hidden (-fvisibility=hidden), so nothing in the module can be called, or
 * interposed, by any other name.
 */
#include "tlsmod.h"

__attribute__((visibility("default"))) const struct tls_module pop3d_tls_module = {
	.abi = TLS_MODULE_ABI,
	.tls_new = tls_new,
	.tls_accept = tls_accept,
	.tls_signer_done = tls_signer_done,
	.tls_read = tls_read,
	.tls_write = tls_write,
	.tls_close = tls_close,
	.tls_describe = tls_describe,
	.signer_run = signer_run,
	.relay_run = relay_run,
};
