/*  rcd_campaign_parser.c - the body of POST /v1/campaigns, parsed as it
    arrives (yajl callbacks; see the header).

    Where a value sits is told by how many containers are open around it:
    1 the top-level object, 2 the audience array, 3 a contact object,
    4 a contact's vars. Anything deeper is refused at once, so a hostile
    body cannot make the parser build anything big: the memory held is
    the kept contacts (32 bytes each), their vars' text and the set of
    numbers seen.
*/
#include "rcd_campaign_parser.h"
#include "rcd_template.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

/*  Longest top-level string kept (name, template, send_at, priority);
    the handler checks the real limits. */
#define S_FIELD_MAX 1024
/*  Longest phone text looked at; a longer one is not a phone. */
#define S_PHONE_TEXT_MAX 64
/*  Unusable numbers named in the answer. */
#define S_EXAMPLES_MAX 10

typedef enum {
    S_F_NONE = -1,
    S_F_NAME,
    S_F_TEMPLATE,
    S_F_SEND_AT,
    S_F_PRIORITY,
    S_F_AUDIENCE,
    S_F_COUNT
} s_field_t;

static const char *const s_field_names[S_F_COUNT] = {
    "name", "template", "send_at", "priority", "audience"};

/*  An unusable number, as the answer names it. */
typedef struct {
    uint32_t index;
    char phone[S_PHONE_TEXT_MAX + 1];
    const char *reason; /* static */
} s_example_t;

struct rcd_campaign_parser {
    yajl_handle yajl;
    char *default_country;
    size_t max_contacts;
    size_t fed;          /* body bytes seen */
    int level;           /* containers open */
    bool failed;         /* err holds the body's first error */
    rcd_api_error_t err; /* valid when failed */
    bool oom;            /* out of memory: give up */

    /* top level */
    char *fields[S_F_AUDIENCE]; /* string values, NULL: absent or null */
    unsigned seen;              /* bit per s_field_t given */
    s_field_t field;            /* the key whose value comes next */
    bool audience_given;        /* audience is an array */

    /* the contact being read */
    size_t received;                       /* audience entries so far */
    char phone_text[S_PHONE_TEXT_MAX + 1]; /* as given, maybe cut */
    bool has_phone;
    const char *phone_bad; /* static reason it is no phone; NULL: try it */
    int item_key;          /* 0 none, 1 phone, 2 vars */
    unsigned item_seen;    /* bit 1 phone, bit 2 vars */
    size_t vars_start;     /* its vars' text in arena; SIZE_MAX: none */
    size_t vars_count;     /* variables so far */
    char var_name[RCD_TEMPLATE_NAME_MAX + 1];

    /* what is kept */
    rcd_campaign_contact_t *contacts;
    size_t ncontacts, contacts_cap;
    char *arena; /* vars texts, back to back */
    size_t arena_len, arena_cap;
    uint32_t *set; /* open addressing: contact index + 1, 0 empty */
    size_t set_cap;
    size_t invalid, duplicates;
    s_example_t examples[S_EXAMPLES_MAX];
    size_t nexamples;
};

/*  --- errors and memory --- */

/*  Keeps the body's first error; answers 0, which stops yajl. */
static int
s_fail (rcd_campaign_parser_t *self, int status, const char *code,
        const char *field, const char *message)
{
    if (!self->failed) {
        self->failed = true;
        rcd_api_fail (&self->err, status, code, field, "%s", message);
    }
    return 0;
}

/*  The path of the current contact's member: "audience[3].phone". */
static const char *
s_item_path (rcd_campaign_parser_t *self, const char *member, char *buf,
             size_t size)
{
    snprintf (buf, size, "audience[%zu]%s%s", self->received - 1,
              member ? "." : "", member ? member : "");
    return buf;
}

static int
s_oom (rcd_campaign_parser_t *self)
{
    self->oom = true;
    return 0;
}

/*  Appends n bytes to the vars arena. */
static bool
s_arena_put (rcd_campaign_parser_t *self, const char *bytes, size_t n)
{
    if (self->arena_len + n > self->arena_cap) {
        size_t cap = self->arena_cap ? self->arena_cap : 4096;
        while (cap < self->arena_len + n)
            cap *= 2;
        if (cap > UINT32_MAX)
            return false; /* offsets are 32-bit; bodies are far smaller */
        char *grown = realloc (self->arena, cap);
        if (!grown)
            return false;
        self->arena = grown;
        self->arena_cap = cap;
    }
    memcpy (self->arena + self->arena_len, bytes, n);
    self->arena_len += n;
    return true;
}

/*  Appends text as a JSON string (quoted, escaped). yajl has checked
    that it is UTF-8 and the caller that it holds no NUL. */
static bool
s_arena_put_string (rcd_campaign_parser_t *self, const unsigned char *text,
                    size_t len)
{
    if (!s_arena_put (self, "\"", 1))
        return false;
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = text[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        if (!s_arena_put (self, (const char *)text + i - run, run))
            return false;
        run = 0;
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf (esc, sizeof esc, "\\%c", c);
        else
            snprintf (esc, sizeof esc, "\\u%04x", c);
        if (!s_arena_put (self, esc, strlen (esc)))
            return false;
    }
    return s_arena_put (self, (const char *)text + len - run, run) &&
           s_arena_put (self, "\"", 1);
}

/*  --- the set of numbers seen --- */

static size_t
s_hash (const char *phone)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)phone; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

/*  Slot of phone in the set: where it is, or the empty slot for it. */
static size_t
s_set_slot (rcd_campaign_parser_t *self, const char *phone)
{
    size_t mask = self->set_cap - 1;
    size_t i = s_hash (phone) & mask;
    while (self->set[i] &&
           strcmp (self->contacts[self->set[i] - 1].phone, phone) != 0)
        i = (i + 1) & mask;
    return i;
}

/*  Makes room for one more number (the set stays at most half full). */
static bool
s_set_reserve (rcd_campaign_parser_t *self)
{
    if ((self->ncontacts + 1) * 2 <= self->set_cap)
        return true;
    size_t cap = self->set_cap ? self->set_cap * 2 : 1024;
    uint32_t *old = self->set;
    size_t old_cap = self->set_cap;
    self->set = calloc (cap, sizeof *self->set);
    if (!self->set) {
        self->set = old;
        return false;
    }
    self->set_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            self->set[s_set_slot (self, self->contacts[old[i] - 1].phone)] =
                old[i];
    free (old);
    return true;
}

/*  --- one contact --- */

/*  Drops the vars text of the contact being read. */
static void
s_vars_drop (rcd_campaign_parser_t *self)
{
    if (self->vars_start != SIZE_MAX)
        self->arena_len = self->vars_start;
    self->vars_start = SIZE_MAX;
}

/*  The contact's object is complete: keep it, or count it as unusable
    or repeated. */
static int
s_item_end (rcd_campaign_parser_t *self)
{
    char path[64];
    if (!self->has_phone)
        return s_fail (self, 400, "missing_field",
                       s_item_path (self, "phone", path, sizeof path),
                       "is required");
    rcd_campaign_contact_t c;
    memset (&c, 0, sizeof c);
    const char *why = NULL;
    int rc = -2;
    if (self->phone_bad)
        why = self->phone_bad;
    else
        rc = rcd_phone_normalize (self->phone_text, self->default_country,
                                  c.phone, sizeof c.phone, &why);
    if (rc != 0) {
        s_vars_drop (self);
        self->invalid++;
        if (self->nexamples < S_EXAMPLES_MAX) {
            s_example_t *e = &self->examples[self->nexamples++];
            e->index = (uint32_t)(self->received - 1);
            snprintf (e->phone, sizeof e->phone, "%s", self->phone_text);
            e->reason = why ? why : "not a usable phone number";
        }
        return 1;
    }
    if (!s_set_reserve (self))
        return s_oom (self);
    size_t slot = s_set_slot (self, c.phone);
    if (self->set[slot]) { /* the first one given wins */
        s_vars_drop (self);
        self->duplicates++;
        return 1;
    }
    if (self->ncontacts == self->contacts_cap) {
        size_t cap = self->contacts_cap ? self->contacts_cap * 2 : 1024;
        rcd_campaign_contact_t *grown =
            realloc (self->contacts, cap * sizeof *grown);
        if (!grown)
            return s_oom (self);
        self->contacts = grown;
        self->contacts_cap = cap;
    }
    c.index = (uint32_t)(self->received - 1);
    if (self->vars_start != SIZE_MAX) {
        c.vars_off = (uint32_t)self->vars_start;
        c.vars_len = (uint32_t)(self->arena_len - self->vars_start);
    }
    self->vars_start = SIZE_MAX;
    self->contacts[self->ncontacts++] = c;
    self->set[slot] = (uint32_t)self->ncontacts;
    return 1;
}

/*  A value that is not what its place wants: the error naming it. */
static int
s_wrong_type (rcd_campaign_parser_t *self)
{
    char path[128];
    switch (self->level) {
        case 0:
            return s_fail (self, 400, "invalid_json", NULL,
                           "the body must be a JSON object");
        case 1:
            return s_fail (self, 400, "invalid_field",
                           s_field_names[self->field],
                           self->field == S_F_AUDIENCE ? "must be an array"
                                                       : "must be a string");
        case 2: /* not counted as received: its index is the count */
            snprintf (path, sizeof path, "audience[%zu]", self->received);
            return s_fail (self, 400, "invalid_field", path,
                           "a contact must be an object");
        case 3:
            return s_fail (
                self, 400, "invalid_field",
                s_item_path (self, self->item_key == 1 ? "phone" : "vars", path,
                             sizeof path),
                self->item_key == 1 ? "must be a string" : "must be an object");
        default:
            snprintf (path, sizeof path, "audience[%zu].vars.%s",
                      self->received - 1, self->var_name);
            return s_fail (self, 400, "invalid_field", path,
                           "must be a string or a number");
    }
}

/*  --- yajl callbacks --- */

/*  A contact starts (an object inside the audience array). */
static int
s_item_begin (rcd_campaign_parser_t *self)
{
    if (++self->received > self->max_contacts) {
        char message[96];
        snprintf (message, sizeof message, "at most %zu contacts per request",
                  self->max_contacts);
        return s_fail (self, 413, "payload_too_large", "audience", message);
    }
    self->has_phone = false;
    self->phone_bad = NULL;
    self->phone_text[0] = 0;
    self->item_key = 0;
    self->item_seen = 0;
    self->vars_start = SIZE_MAX;
    return 1;
}

static int
s_on_null (void *ctx)
{
    rcd_campaign_parser_t *self = ctx;
    if (self->level == 1) { /* null counts as absent */
        if (self->field != S_F_AUDIENCE) {
            free (self->fields[self->field]);
            self->fields[self->field] = NULL;
        }
        return 1;
    }
    if (self->level == 3) /* "phone": null is missing; "vars": null none */
        return 1;
    return s_wrong_type (self);
}

static int
s_on_boolean (void *ctx, int value)
{
    (void)value;
    return s_wrong_type (ctx);
}

static int
s_on_number (void *ctx, const char *text, size_t len)
{
    rcd_campaign_parser_t *self = ctx;
    if (self->level != 4)
        return s_wrong_type (self);
    /* a number jansson can read back (1e999 it cannot) */
    json_t *n = json_loadb (text, len, JSON_DECODE_ANY, NULL);
    bool ok = json_is_number (n);
    json_decref (n);
    if (!ok)
        return s_wrong_type (self);
    return s_arena_put (self, text, len) ? 1 : s_oom (self);
}

static int
s_on_string (void *ctx, const unsigned char *text, size_t len)
{
    rcd_campaign_parser_t *self = ctx;
    char path[128];
    bool nul = memchr (text, 0, len) != NULL;
    if (self->level == 1 && self->field != S_F_AUDIENCE) {
        if (nul || len > S_FIELD_MAX)
            return s_fail (self, 400, "invalid_field",
                           s_field_names[self->field],
                           nul ? "must not contain NUL" : "is too long");
        char *copy = strndup ((const char *)text, len);
        if (!copy)
            return s_oom (self);
        free (self->fields[self->field]);
        self->fields[self->field] = copy;
        return 1;
    }
    if (self->level == 3 && self->item_key == 1) {
        self->has_phone = true;
        self->phone_bad = nul                      ? "holds a NUL character"
                          : len > S_PHONE_TEXT_MAX ? "too long to be a phone "
                                                     "number"
                                                   : NULL;
        size_t n = len > S_PHONE_TEXT_MAX ? S_PHONE_TEXT_MAX : len;
        /* cut at a character boundary, so the example stays UTF-8 (a NUL
           ends it early: named up to there) */
        while (n > 0 && n < len && (text[n] & 0xC0) == 0x80)
            n--;
        memcpy (self->phone_text, text, n);
        self->phone_text[n] = 0;
        return 1;
    }
    if (self->level == 4) {
        snprintf (path, sizeof path, "audience[%zu].vars.%s",
                  self->received - 1, self->var_name);
        if (nul)
            return s_fail (self, 400, "invalid_field", path,
                           "must not contain NUL");
        size_t count = 0;
        for (size_t i = 0; i < len; i++)
            count += (text[i] & 0xC0) != 0x80;
        if (count > RCD_API_VAR_VALUE_CHARS) {
            char message[64];
            snprintf (message, sizeof message, "must be at most %d characters",
                      RCD_API_VAR_VALUE_CHARS);
            return s_fail (self, 400, "invalid_field", path, message);
        }
        return s_arena_put_string (self, text, len) ? 1 : s_oom (self);
    }
    return s_wrong_type (self);
}

static int
s_on_start_map (void *ctx)
{
    rcd_campaign_parser_t *self = ctx;
    if (self->level == 0 || (self->level == 2 && s_item_begin (self))) {
        self->level++;
        return 1;
    }
    if (self->failed)
        return 0;
    if (self->level == 3 && self->item_key == 2) {
        self->vars_start = self->arena_len;
        self->vars_count = 0;
        self->level++;
        return s_arena_put (self, "{", 1) ? 1 : s_oom (self);
    }
    return s_wrong_type (self);
}

static int
s_on_map_key (void *ctx, const unsigned char *key, size_t len)
{
    rcd_campaign_parser_t *self = ctx;
    char path[160];
    if (self->level == 1) {
        self->field = S_F_NONE;
        for (int f = 0; f < S_F_COUNT; f++)
            if (strlen (s_field_names[f]) == len &&
                memcmp (s_field_names[f], key, len) == 0)
                self->field = (s_field_t)f;
        if (self->field == S_F_NONE) {
            snprintf (path, sizeof path, "%.*s", (int)(len > 100 ? 100 : len),
                      (const char *)key);
            return s_fail (self, 400, "invalid_field", path, "unknown field");
        }
        if (self->seen & (1u << self->field))
            return s_fail (self, 400, "invalid_field",
                           s_field_names[self->field], "is given twice");
        self->seen |= 1u << self->field;
        return 1;
    }
    if (self->level == 3) {
        self->item_key = len == 5 && memcmp (key, "phone", 5) == 0  ? 1
                         : len == 4 && memcmp (key, "vars", 4) == 0 ? 2
                                                                    : 0;
        if (self->item_key == 0) {
            char member[104];
            snprintf (member, sizeof member, "%.*s",
                      (int)(len > 100 ? 100 : len), (const char *)key);
            return s_fail (self, 400, "invalid_field",
                           s_item_path (self, member, path, sizeof path),
                           "unknown field (phone, vars)");
        }
        if (self->item_seen & (1u << self->item_key))
            return s_fail (self, 400, "invalid_field",
                           s_item_path (self,
                                        self->item_key == 1 ? "phone" : "vars",
                                        path, sizeof path),
                           "is given twice");
        self->item_seen |= 1u << self->item_key;
        return 1;
    }
    /* level 4: a variable's name, as rcd_api_check_vars wants it */
    size_t ok = 0;
    while (ok < len && ((key[ok] >= 'a' && key[ok] <= 'z') ||
                        (key[ok] >= 'A' && key[ok] <= 'Z') ||
                        (key[ok] >= '0' && key[ok] <= '9') || key[ok] == '_'))
        ok++;
    if (len < 1 || len > RCD_TEMPLATE_NAME_MAX || ok != len) {
        char message[96];
        snprintf (message, sizeof message,
                  "variable names must be 1 to %d letters, digits or '_'",
                  RCD_TEMPLATE_NAME_MAX);
        return s_fail (self, 400, "invalid_field",
                       s_item_path (self, "vars", path, sizeof path), message);
    }
    if (++self->vars_count > RCD_API_VARS_MAX) {
        char message[64];
        snprintf (message, sizeof message, "must hold at most %d variables",
                  RCD_API_VARS_MAX);
        return s_fail (self, 400, "invalid_field",
                       s_item_path (self, "vars", path, sizeof path), message);
    }
    memcpy (self->var_name, key, len);
    self->var_name[len] = 0;
    bool ok_put = (self->vars_count == 1 || s_arena_put (self, ",", 1)) &&
                  s_arena_put_string (self, key, len) &&
                  s_arena_put (self, ":", 1);
    return ok_put ? 1 : s_oom (self);
}

static int
s_on_end_map (void *ctx)
{
    rcd_campaign_parser_t *self = ctx;
    self->level--;
    if (self->level == 3) /* a contact's vars */
        return s_arena_put (self, "}", 1) ? 1 : s_oom (self);
    if (self->level == 2)
        return s_item_end (self);
    return 1;
}

static int
s_on_start_array (void *ctx)
{
    rcd_campaign_parser_t *self = ctx;
    if (self->level == 1 && self->field == S_F_AUDIENCE) {
        self->audience_given = true;
        self->level++;
        return 1;
    }
    return s_wrong_type (self);
}

static int
s_on_end_array (void *ctx)
{
    rcd_campaign_parser_t *self = ctx;
    self->level--;
    return 1;
}

static const yajl_callbacks s_callbacks = {
    .yajl_null = s_on_null,
    .yajl_boolean = s_on_boolean,
    .yajl_number = s_on_number,
    .yajl_string = s_on_string,
    .yajl_start_map = s_on_start_map,
    .yajl_map_key = s_on_map_key,
    .yajl_end_map = s_on_end_map,
    .yajl_start_array = s_on_start_array,
    .yajl_end_array = s_on_end_array,
};

/*  --- the class --- */

rcd_campaign_parser_t *
rcd_campaign_parser_new (const char *default_country, size_t max_contacts)
{
    rcd_campaign_parser_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max_contacts = max_contacts;
    self->vars_start = SIZE_MAX;
    self->field = S_F_NONE;
    self->default_country = default_country ? strdup (default_country) : NULL;
    self->yajl = yajl_alloc (&s_callbacks, NULL, self);
    if ((default_country && !self->default_country) || !self->yajl)
        rcd_campaign_parser_destroy (&self);
    return self;
}

void
rcd_campaign_parser_destroy (rcd_campaign_parser_t **self_p)
{
    rcd_campaign_parser_t *self = *self_p;
    if (!self)
        return;
    if (self->yajl)
        yajl_free (self->yajl);
    for (int f = 0; f < S_F_AUDIENCE; f++)
        free (self->fields[f]);
    free (self->set);
    free (self->arena);
    free (self->contacts);
    free (self->default_country);
    free (self);
    *self_p = NULL;
}

/*  Turns a yajl status into ours, keeping a syntax error as
    invalid_json with where it is. */
static int
s_status (rcd_campaign_parser_t *self, yajl_status st, size_t base)
{
    if (self->oom)
        return -1;
    if (st == yajl_status_ok)
        return 0;
    if (st == yajl_status_error && !self->failed) {
        unsigned char *text = yajl_get_error (self->yajl, 0, NULL, 0);
        char message[256];
        snprintf (message, sizeof message, "invalid JSON at byte %zu: %s",
                  base + yajl_get_bytes_consumed (self->yajl),
                  text ? (const char *)text : "syntax error");
        /* yajl ends its messages with a newline */
        message[strcspn (message, "\n")] = 0;
        if (text)
            yajl_free_error (self->yajl, text);
        s_fail (self, 400, "invalid_json", NULL, message);
    }
    return -2;
}

int
rcd_campaign_parser_feed (rcd_campaign_parser_t *self, const char *data,
                          size_t size)
{
    if (self->oom)
        return -1;
    if (self->failed)
        return -2;
    size_t base = self->fed;
    self->fed += size;
    return s_status (
        self, yajl_parse (self->yajl, (const unsigned char *)data, size), base);
}

int
rcd_campaign_parser_finish (rcd_campaign_parser_t *self, rcd_api_error_t *err)
{
    if (self->oom)
        return -1;
    if (!self->failed && self->fed == 0)
        s_fail (self, 400, "invalid_json", NULL,
                "the body is empty; a JSON object is expected");
    if (!self->failed &&
        s_status (self, yajl_complete_parse (self->yajl), self->fed) == -1)
        return -1;
    if (!self->failed) {
        if (!self->fields[S_F_NAME])
            s_fail (self, 400, "missing_field", "name", "is required");
        else if (!self->fields[S_F_TEMPLATE])
            s_fail (self, 400, "missing_field", "template", "is required");
        else if (!self->audience_given)
            s_fail (self, 400, "missing_field", "audience",
                    "is required: a list of {\"phone\", \"vars\"?}");
    }
    if (self->failed) {
        *err = self->err;
        return -2;
    }
    return 0;
}

const char *
rcd_campaign_parser_name (rcd_campaign_parser_t *self)
{
    return self->fields[S_F_NAME];
}

const char *
rcd_campaign_parser_template (rcd_campaign_parser_t *self)
{
    return self->fields[S_F_TEMPLATE];
}

const char *
rcd_campaign_parser_send_at (rcd_campaign_parser_t *self)
{
    return self->fields[S_F_SEND_AT];
}

const char *
rcd_campaign_parser_priority (rcd_campaign_parser_t *self)
{
    return self->fields[S_F_PRIORITY];
}

size_t
rcd_campaign_parser_received (rcd_campaign_parser_t *self)
{
    return self->received;
}

size_t
rcd_campaign_parser_invalid (rcd_campaign_parser_t *self)
{
    return self->invalid;
}

size_t
rcd_campaign_parser_duplicates (rcd_campaign_parser_t *self)
{
    return self->duplicates;
}

json_t *
rcd_campaign_parser_invalid_examples (rcd_campaign_parser_t *self)
{
    json_t *list = json_array ();
    for (size_t i = 0; list && i < self->nexamples; i++) {
        const s_example_t *e = &self->examples[i];
        json_array_append_new (list, json_pack ("{s:I, s:s, s:s}", "index",
                                                (json_int_t)e->index, "phone",
                                                e->phone, "reason", e->reason));
    }
    return list;
}

const rcd_campaign_contact_t *
rcd_campaign_parser_contacts (rcd_campaign_parser_t *self, size_t *count_p)
{
    *count_p = self->ncontacts;
    return self->contacts;
}

json_t *
rcd_campaign_parser_vars (rcd_campaign_parser_t *self,
                          const rcd_campaign_contact_t *contact)
{
    if (contact->vars_len == 0)
        return NULL;
    return json_loadb (self->arena + contact->vars_off, contact->vars_len, 0,
                       NULL);
}
