/*
 * fuzz/signer.c - libFuzzer harness for the signer's handling of requests
 * (signer.c), the one framing the TLS processes add: the input is a request
 * record from a (subverted) pre-login process, sign_one answers it with a
 * real RSA or EC key. Invariants: an answer is -1 or fits its buffer, and a
 * request the signer must refuse (wrong op, lengths, padding) is refused.
 */
#include "../signer.c"

#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *keys[2];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	keys[0] = EVP_RSA_gen(2048);
	keys[1] = EVP_EC_gen("P-256");
	if (keys[0] == NULL || keys[1] == NULL)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct signreq req;
	struct signans ans;
	EVP_PKEY *k;

	if (size < 1)
		return 0;
	k = keys[data[0] & 1];
	memset(&req, 0, sizeof(req));
	memcpy(&req, data + 1, size - 1 < sizeof(req) ? size - 1 : sizeof(req));
	sign_one(k, &req, &ans);
	if (ans.len != -1 && (ans.len <= 0 || (size_t)ans.len > sizeof(ans.data)))
		abort();
	if (ans.len > 0 && (req.len > sizeof(req.data) ||
	    (req.op != SIGN_RSA && req.op != SIGN_ECDSA) ||
	    (req.op == SIGN_ECDSA && req.len > 64)))
		abort();
	return 0;
}
