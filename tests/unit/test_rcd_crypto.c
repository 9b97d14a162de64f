/*  test_rcd_crypto.c - hashes against published vectors, tokens, and
    the comparison used for API keys. */
#include "rcd_crypto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void
test_sha256_matches_the_fips_180_vectors (void **state)
{
    (void)state;
    const struct {
        const char *text;
        const char *hex;
    } vectors[] = {
        {"abc",
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"",
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char hex[65];
        memset (hex, 'x', sizeof hex);
        assert_int_equal (rcd_crypto_sha256_hex (vectors[i].text, hex), 0);
        assert_string_equal (hex, vectors[i].hex);
    }
    unsigned char raw[RCD_SHA256_LEN];
    assert_int_equal (rcd_crypto_sha256 ("abc", raw), 0);
    assert_int_equal (raw[0], 0xba);
    assert_int_equal (raw[1], 0x78);
    assert_int_equal (raw[RCD_SHA256_LEN - 1], 0xad);
}

static void
test_hmac_sha256_matches_rfc_4231 (void **state)
{
    (void)state;
    char key1[21], key6[132];
    memset (key1, 0x0b, 20);
    key1[20] = 0;
    memset (key6, 0xaa, 131);
    key6[131] = 0;
    const struct {
        const char *key;
        const char *data;
        const char *hex;
    } vectors[] = {
        /* test case 1 */
        {key1, "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        /* test case 2: a key shorter than the block */
        {"Jefe", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        /* test case 6: a key longer than the block is hashed first */
        {key6, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char hex[65];
        assert_int_equal (
            rcd_crypto_hmac_sha256_hex (vectors[i].key, vectors[i].data,
                                        strlen (vectors[i].data), hex),
            0);
        assert_string_equal (hex, vectors[i].hex);
    }
}

static void
test_hmac_covers_exactly_size_bytes_of_binary_data (void **state)
{
    (void)state;
    /* webhook bodies are bytes with a length, NULs included */
    const char body[] = {'a', 0, 'b'};
    char full[65], cut[65], prefix[65];
    assert_int_equal (rcd_crypto_hmac_sha256_hex ("k", body, 3, full), 0);
    assert_int_equal (rcd_crypto_hmac_sha256_hex ("k", body, 1, cut), 0);
    assert_int_equal (rcd_crypto_hmac_sha256_hex ("k", "a", 1, prefix), 0);
    assert_string_not_equal (full, cut);
    assert_string_equal (cut, prefix);
    /* and the key matters */
    char other[65];
    assert_int_equal (rcd_crypto_hmac_sha256_hex ("K", body, 3, other), 0);
    assert_string_not_equal (full, other);
}

static bool
s_is_lower_hex (const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static int
s_compare_strings (const void *a, const void *b)
{
    return strcmp (*(char *const *)a, *(char *const *)b);
}

static void
test_tokens_have_prefix_length_and_are_unique (void **state)
{
    (void)state;
    enum { N = 2000 };
    char **tokens = calloc (N, sizeof *tokens);
    assert_non_null (tokens);
    for (int i = 0; i < N; i++) {
        tokens[i] = malloc (64);
        assert_non_null (tokens[i]);
        assert_int_equal (rcd_crypto_token ("rcd_", 24, tokens[i], 64), 0);
        assert_int_equal (strlen (tokens[i]), 4 + 48);
        assert_memory_equal (tokens[i], "rcd_", 4);
        assert_true (s_is_lower_hex (tokens[i] + 4));
    }
    qsort (tokens, N, sizeof *tokens, s_compare_strings);
    for (int i = 1; i < N; i++)
        assert_string_not_equal (tokens[i - 1], tokens[i]);
    for (int i = 0; i < N; i++)
        free (tokens[i]);
    free (tokens);
}

static void
test_token_refuses_a_buffer_too_small_and_writes_nothing (void **state)
{
    (void)state;
    char out[64];
    /* exactly enough: prefix + 2 * nbytes + NUL */
    assert_int_equal (rcd_crypto_token ("ab", 8, out, 2 + 16 + 1), 0);
    assert_int_equal (strlen (out), 18);
    memset (out, 'z', sizeof out);
    assert_int_equal (rcd_crypto_token ("ab", 8, out, 2 + 16), -1);
    assert_int_equal (out[0], 'z');
    /* more random bytes than it supports */
    char big[200];
    assert_int_equal (rcd_crypto_token (NULL, 65, big, sizeof big), -1);
    /* no prefix */
    assert_int_equal (rcd_crypto_token (NULL, 16, out, sizeof out), 0);
    assert_int_equal (strlen (out), 32);
    assert_true (s_is_lower_hex (out));
    /* the maximum */
    assert_int_equal (rcd_crypto_token ("k_", 64, big, sizeof big), 0);
    assert_int_equal (strlen (big), 2 + 128);
}

static void
test_equal_compares_content_and_length (void **state)
{
    (void)state;
    assert_true (rcd_crypto_equal ("rcd_abc123", "rcd_abc123"));
    assert_true (rcd_crypto_equal ("", ""));
    assert_false (rcd_crypto_equal ("rcd_abc123", "rcd_abc124"));
    assert_false (rcd_crypto_equal ("xcd_abc123", "rcd_abc123"));
    /* a prefix or an extension is not equal */
    assert_false (rcd_crypto_equal ("rcd_abc", "rcd_abc123"));
    assert_false (rcd_crypto_equal ("rcd_abc123", "rcd_abc"));
    assert_false (rcd_crypto_equal ("", "a"));
    /* a missing key never matches, not even another missing one */
    assert_false (rcd_crypto_equal (NULL, "a"));
    assert_false (rcd_crypto_equal ("a", NULL));
    assert_false (rcd_crypto_equal (NULL, NULL));
    /* strings in different buffers, differing only in the last byte */
    char a[256], b[256];
    memset (a, 'q', 255);
    memset (b, 'q', 255);
    a[255] = b[255] = 0;
    assert_true (rcd_crypto_equal (a, b));
    b[254] = 'r';
    assert_false (rcd_crypto_equal (a, b));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_sha256_matches_the_fips_180_vectors),
        cmocka_unit_test (test_hmac_sha256_matches_rfc_4231),
        cmocka_unit_test (test_hmac_covers_exactly_size_bytes_of_binary_data),
        cmocka_unit_test (test_tokens_have_prefix_length_and_are_unique),
        cmocka_unit_test (
            test_token_refuses_a_buffer_too_small_and_writes_nothing),
        cmocka_unit_test (test_equal_compares_content_and_length),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
