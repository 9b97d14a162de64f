/*  rcd_parts.c - splitting a long text into parts at word boundaries.
    See rcd_parts.h. */
#include "rcd_parts.h"

#include <string.h>

/*  True for a byte that continues a UTF-8 sequence (10xxxxxx). */
static bool
s_is_continuation (unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/*  The whitespace a word ends at. Only ASCII: a no-break space (U+00A0)
    is meant to hold its words together. */
static bool
s_is_space (unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

size_t
rcd_parts_chars (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        n += !s_is_continuation (*p);
    return n;
}

bool
rcd_parts_next (const char *text, size_t limit, size_t *pos, size_t *start,
                size_t *len)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t p = *pos;
    if (p == 0) {
        /* The whole text when it fits: sent exactly as written. */
        if (!t[0])
            return false;
        if (limit == 0 || rcd_parts_chars (text) <= limit) {
            *start = 0;
            *len = strlen (text);
            *pos = *len;
            return true;
        }
    }
    else
        while (t[p] && s_is_space (t[p]))
            p++; /* the separator between two parts is dropped */
    if (!t[p])
        return false;

    /* Walk limit characters; q ends the window, cut is the end of the
       last word that ended inside it (0: none yet). */
    size_t q = p, cut = 0, chars = 0;
    while (t[q] && chars < limit) {
        if (s_is_space (t[q]) && q > p && !s_is_space (t[q - 1]))
            cut = q;
        q++;
        while (t[q] && s_is_continuation (t[q]))
            q++;
        chars++;
    }
    size_t end;
    if (!t[q] || s_is_space (t[q])) {
        /* The rest fits, or a word ends exactly at the limit. */
        end = q;
        while (end > p && s_is_space (t[end - 1]))
            end--;
        if (end == p) /* nothing but whitespace: keep it as it is */
            end = q;
    }
    else if (cut > p)
        end = cut;
    else
        end = q; /* one word longer than the limit: cut between chars */
    *start = p;
    *len = end - p;
    *pos = end;
    return true;
}

size_t
rcd_parts_count (const char *text, size_t limit)
{
    size_t pos = 0, start, len, n = 0;
    while (rcd_parts_next (text, limit, &pos, &start, &len))
        n++;
    return n ? n : 1;
}

bool
rcd_parts_get (const char *text, size_t limit, size_t index, size_t *start,
               size_t *len)
{
    size_t pos = 0;
    for (size_t i = 0; rcd_parts_next (text, limit, &pos, start, len); i++)
        if (i == index)
            return true;
    return false;
}
