/*  rcd_trace.c - trace ids: parsed from the request's headers, or made.

    The header parsers are strict on purpose: what they accept ends up in
    the database and in every log line about a message.
*/
#include "rcd_trace.h"

#include "rcd_crypto.h"

#include <string.h>

/*  Value of a hex digit, -1 for anything else; lower only unless any. */
static int
s_hex_value (char c, bool any_case)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (any_case && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*  True when p[0..n) are hex digits and not all zeros. */
static bool
s_hex_nonzero (const char *p, size_t n, bool any_case)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int v = s_hex_value (p[i], any_case);
        if (v < 0)
            return false;
        nonzero |= v != 0;
    }
    return nonzero;
}

/*  Copies n hex digits from p into out (lowercased), skipping hyphens
    (the caller has checked where they are), and terminates it. */
static void
s_copy_lower (const char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '-')
            continue;
        out[o++] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    out[o] = 0;
}

bool
rcd_trace_valid (const char *text)
{
    return text && strlen (text) == RCD_TRACE_LEN &&
           s_hex_nonzero (text, RCD_TRACE_LEN, false);
}

int
rcd_trace_new (char out[RCD_TRACE_SIZE])
{
    /* all zeros is not a trace id; 16 random bytes are never that in
       practice, but asking again costs nothing */
    for (int tries = 0; tries < 4; tries++)
        if (rcd_crypto_token (NULL, RCD_TRACE_LEN / 2, out, RCD_TRACE_SIZE) ==
                0 &&
            rcd_trace_valid (out))
            return 0;
    out[0] = 0;
    return -1;
}

/*  traceparent = version "-" trace-id "-" parent-id "-" trace-flags
    00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
    Lowercase hex throughout; version ff is invalid; a version above 00
    may append "-" and more, which is ignored. */
bool
rcd_trace_from_traceparent (const char *header, char out[RCD_TRACE_SIZE])
{
    if (!header)
        return false;
    while (*header == ' ' || *header == '\t')
        header++;
    size_t len = strlen (header);
    while (len > 0 && (header[len - 1] == ' ' || header[len - 1] == '\t'))
        len--;
    if (len < 55 || header[2] != '-' || header[35] != '-' || header[52] != '-')
        return false;
    int v1 = s_hex_value (header[0], false),
        v0 = s_hex_value (header[1], false);
    if (v1 < 0 || v0 < 0 || (v1 == 15 && v0 == 15))
        return false;
    bool version_00 = v1 == 0 && v0 == 0;
    if (version_00 ? len != 55 : (len > 55 && header[55] != '-'))
        return false;
    if (!s_hex_nonzero (header + 3, 32, false) ||
        !s_hex_nonzero (header + 36, 16, false) ||
        s_hex_value (header[53], false) < 0 ||
        s_hex_value (header[54], false) < 0)
        return false;
    s_copy_lower (header + 3, RCD_TRACE_LEN, out);
    return true;
}

bool
rcd_trace_from_request_id (const char *header, char out[RCD_TRACE_SIZE])
{
    if (!header)
        return false;
    size_t len = strlen (header);
    if (len == RCD_TRACE_LEN) {
        if (!s_hex_nonzero (header, len, true))
            return false;
    }
    else if (len == 36) {
        /* 8-4-4-4-12 */
        static const size_t groups[] = {8, 4, 4, 4, 12};
        size_t at = 0;
        bool nonzero = false;
        for (size_t g = 0; g < 5; g++) {
            if (g > 0 && header[at++] != '-')
                return false;
            for (size_t i = 0; i < groups[g]; i++, at++) {
                int v = s_hex_value (header[at], true);
                if (v < 0)
                    return false;
                nonzero |= v != 0;
            }
        }
        if (!nonzero)
            return false;
    }
    else
        return false;
    s_copy_lower (header, len, out);
    return true;
}

int
rcd_trace_for_request (const char *traceparent, const char *request_id,
                       char out[RCD_TRACE_SIZE])
{
    if (rcd_trace_from_traceparent (traceparent, out) ||
        rcd_trace_from_request_id (request_id, out))
        return 0;
    return rcd_trace_new (out);
}
