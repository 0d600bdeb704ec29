/*
 * fuzz/proxy.c - libFuzzer harness for the PROXY protocol header parser
 * (proxy.c), which the pre-login process runs on what a proxy sends.
 * Invariants: the parser never claims more octets than it was given when it
 * says the header is complete; fed the input one octet at a time, as
 * proxy_read feeds it, it reaches the same verdict and length; and whatever
 * it reports passes the monitor's check (proxy_check).
 */
#include "../proxy.c"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyinfo pi, pi2;
	char err[200], addr[64];
	size_t used = 0, have = 0, want = 0;
	int r, r2;

	r = proxy_parse(data, size, &used, &pi, err, sizeof(err));
	if (r == 1 && (used > size || used == 0))
		abort();
	if (r == 0 && used <= size)
		abort();                /* "need more" must ask for more than it has */
	/* As proxy_read goes: never more than the parser asked for. */
	while ((r2 = proxy_parse(data, have, &want, &pi2, err, sizeof(err))) == 0) {
		if (want <= have)
			abort();
		if (want > size)
			break;
		have = want;
	}
	if (r2 == 1 && (r != 1 || want != used || memcmp(&pi, &pi2, sizeof(pi)) != 0))
		abort();
	if (r == 1 && r2 != 1)
		abort();
	if (r == 1 && proxy_check(&pi, addr, sizeof(addr)) != 0)
		abort();
	return 0;
}
