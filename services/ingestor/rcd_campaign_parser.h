/*  rcd_campaign_parser.h - the body of POST /v1/campaigns, parsed as it
    arrives.

    A campaign body may carry 100 000 contacts (megabytes of JSON). It is
    fed to this parser chunk by chunk as the HTTP server receives it
    (yajl, an event parser), so the text is never held whole and never
    twice: what is kept is the top-level fields and, per contact, its
    normalised phone and its vars as compact JSON text, in two growing
    arrays. Contacts whose number cannot be normalised are counted (the
    first few kept with the reason), repeats of a number already seen
    are counted, and neither is kept.

    The body is {"name", "template", "audience": [{"phone", "vars"?},
    ...], "send_at"?, "priority"?}. Malformed JSON, a field of the wrong
    type, an unknown field, a missing phone, vars that are not an object
    of strings and numbers with valid names, or too many contacts make
    the whole body bad: the parser keeps the first such error (API.md's
    code and field, e.g. "audience[17].vars.plan") and ignores the rest
    of the body. The values of name, template, send_at and priority are
    only collected here; the handler checks them.
*/
#ifndef RCD_CAMPAIGN_PARSER_H_INCLUDED
#define RCD_CAMPAIGN_PARSER_H_INCLUDED

#include "rcd_api.h"
#include "rcd_phone.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rcd_campaign_parser rcd_campaign_parser_t;

/*  One contact kept from the audience. */
typedef struct {
    char phone[RCD_PHONE_MAX]; /* E.164 */
    uint32_t index;            /* its position in the audience */
    uint32_t vars_off;         /* its vars' text in the vars arena */
    uint32_t vars_len;         /* 0: no vars */
} rcd_campaign_contact_t;

/*  A parser for one body. default_country is copied (see
    rcd_phone_normalize); max_contacts is the most audience entries a
    body may hold (more: 413 payload_too_large on "audience"). NULL when
    out of memory. Caller destroys. */
rcd_campaign_parser_t *
rcd_campaign_parser_new (const char *default_country, size_t max_contacts);

void
rcd_campaign_parser_destroy (rcd_campaign_parser_t **self_p);

/*  Parses the next size bytes of the body. Returns 0; -2 once the body
    is known to be bad (the error is kept for finish; further data is
    ignored); -1 when out of memory. */
int
rcd_campaign_parser_feed (rcd_campaign_parser_t *self, const char *data,
                          size_t size);

/*  Ends the body: complete JSON, and name, template and audience
    present. Returns 0, -2 with err filled (the first error of the body),
    or -1 when out of memory. */
int
rcd_campaign_parser_finish (rcd_campaign_parser_t *self, rcd_api_error_t *err);

/*  The top-level string fields as given; NULL when absent or null.
    Borrowed. */
const char *
rcd_campaign_parser_name (rcd_campaign_parser_t *self);
const char *
rcd_campaign_parser_template (rcd_campaign_parser_t *self);
const char *
rcd_campaign_parser_send_at (rcd_campaign_parser_t *self);
const char *
rcd_campaign_parser_priority (rcd_campaign_parser_t *self);

/*  Audience entries received, and of them: unusable numbers, and
    numbers given again. */
size_t
rcd_campaign_parser_received (rcd_campaign_parser_t *self);
size_t
rcd_campaign_parser_invalid (rcd_campaign_parser_t *self);
size_t
rcd_campaign_parser_duplicates (rcd_campaign_parser_t *self);

/*  The first unusable numbers, as [{"index", "phone" (as given, cut at
    64 bytes), "reason"}]. Caller owns the result. */
json_t *
rcd_campaign_parser_invalid_examples (rcd_campaign_parser_t *self);

/*  The contacts kept, in audience order: *count_p of them. Borrowed;
    valid until the parser is destroyed. */
const rcd_campaign_contact_t *
rcd_campaign_parser_contacts (rcd_campaign_parser_t *self, size_t *count_p);

/*  The vars of contact as a JSON object (new reference), or NULL when it
    has none (or out of memory). */
json_t *
rcd_campaign_parser_vars (rcd_campaign_parser_t *self,
                          const rcd_campaign_contact_t *contact);

#endif
