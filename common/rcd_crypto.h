/*  rcd_crypto.h - keys, tokens and hashes (OpenSSL's libcrypto). */
#ifndef RCD_CRYPTO_H_INCLUDED
#define RCD_CRYPTO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define RCD_SHA256_LEN 32

/*  SHA-256 of a NUL-terminated string into out (32 bytes). */
int
rcd_crypto_sha256 (const char *text, unsigned char out[RCD_SHA256_LEN]);

/*  SHA-256 as lowercase hex (65 bytes with NUL). */
int
rcd_crypto_sha256_hex (const char *text, char out[65]);

/*  A random token of nbytes random bytes, hex encoded, with an optional
    prefix ("rcd_..."). out must hold strlen (prefix) + 2 * nbytes + 1. */
int
rcd_crypto_token (const char *prefix, size_t nbytes, char *out,
                  size_t out_size);

/*  Constant-time comparison of two strings (length leaks, content does
    not). */
bool
rcd_crypto_equal (const char *a, const char *b);

/*  HMAC-SHA256 of data with key, as lowercase hex (65 bytes). */
int
rcd_crypto_hmac_sha256_hex (const char *key, const void *data, size_t size,
                            char out[65]);

#endif
