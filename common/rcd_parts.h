/*  rcd_parts.h - a long text as the ordered parts it is sent in.

    WhatsApp shows a long message better as several short ones, so a text
    over the limit (characters, i.e. Unicode code points; the sender's
    part_max_chars, default 1000) is sent as parts of at most that many
    characters, cut at word boundaries. The cut is made on the rendered
    text, so a word that came from a {{placeholder}} is a word like any
    other and is never cut; only a single word longer than the limit is
    cut, at the limit, and then still between UTF-8 characters (never
    inside one's bytes). The whitespace run at a cut is dropped; every
    other byte of the text is in exactly one part, in order.

    Splitting is greedy from the start and depends only on the text and
    the limit, so part k of a text is the same whenever it is computed:
    the sender splits at each attempt and resumes at the first part not
    yet sent (messages.parts_sent, migration 0009), with the limit the
    first part went out with (messages.part_limit).
*/
#ifndef RCD_PARTS_H_INCLUDED
#define RCD_PARTS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

/*  The number of characters (code points) of text: bytes that do not
    continue a UTF-8 sequence. A malformed sequence counts by its lead
    bytes, so it is never cut either. */
size_t
rcd_parts_chars (const char *text);

/*  The next part of text after *pos (0 to begin): sets *start and *len
    (bytes) and moves *pos on. False when no part is left. A text of at
    most limit characters is one part, itself; limit 0 means no limit. */
bool
rcd_parts_next (const char *text, size_t limit, size_t *pos, size_t *start,
                size_t *len);

/*  How many parts text is sent in (1 for a text within the limit or an
    empty one). */
size_t
rcd_parts_count (const char *text, size_t limit);

/*  Part index (0-based) of text: *start and *len. False when text has
    fewer parts. */
bool
rcd_parts_get (const char *text, size_t limit, size_t index, size_t *start,
               size_t *len);

#endif
