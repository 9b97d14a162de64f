/*  rcd_crypto.c - thin wrappers over libcrypto. */
#include "rcd_crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

static void
s_hex (const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = 0;
}

int
rcd_crypto_sha256 (const char *text, unsigned char out[RCD_SHA256_LEN])
{
    unsigned int len = 0;
    if (!EVP_Digest (text, strlen (text), out, &len, EVP_sha256 (), NULL))
        return -1;
    return 0;
}

int
rcd_crypto_sha256_hex (const char *text, char out[65])
{
    unsigned char digest[RCD_SHA256_LEN];
    if (rcd_crypto_sha256 (text, digest) != 0)
        return -1;
    s_hex (digest, sizeof digest, out);
    return 0;
}

int
rcd_crypto_token (const char *prefix, size_t nbytes, char *out, size_t out_size)
{
    unsigned char raw[64];
    size_t plen = prefix ? strlen (prefix) : 0;
    if (nbytes > sizeof raw || out_size < plen + 2 * nbytes + 1)
        return -1;
    if (RAND_bytes (raw, (int)nbytes) != 1)
        return -1;
    memcpy (out, prefix ? prefix : "", plen);
    s_hex (raw, nbytes, out + plen);
    return 0;
}

bool
rcd_crypto_equal (const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t la = strlen (a), lb = strlen (b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp (a, b, la) == 0;
}

int
rcd_crypto_hmac_sha256_hex (const char *key, const void *data, size_t size,
                            char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC (EVP_sha256 (), key, (int)strlen (key), data, size, mac, &len))
        return -1;
    s_hex (mac, len, out);
    return 0;
}
