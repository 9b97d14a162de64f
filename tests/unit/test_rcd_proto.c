/*  test_rcd_proto.c - the wire codec, derived from rcd_proto_model.h.

    Every message and field of the model is described to the tests by the
    same X-macros that build the codec, so a new message or field is
    round-tripped, truncated, mistyped and fuzzed here without editing this
    file. Malformed bodies are built by a small msgpack writer of our own
    (not msgpack-c), so the tests do not share the codec's assumptions.
    Every body handed to a decoder sits in an allocation of exactly its
    size, so AddressSanitizer sees any read past its end.
*/
#include "rcd_proto.h"
#include "rcd_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T_MAX_FIELDS 16

typedef enum { T_U32, T_U64, T_I64, T_STR } t_kind_t;

/*  One field of the model. */
typedef struct {
    t_kind_t kind;
    const char *name;
    size_t offset; /* in the message struct */
    size_t max;    /* STR: maximum bytes */
    bool required; /* STR: nil rejected */
} t_field_t;

/*  One message of the model with type-erased entry points. */
typedef struct {
    const char *name;
    const char *topic;
    rcd_msg_type_t type;
    size_t size; /* sizeof the struct */
    size_t nfields;
    size_t nmin; /* fields a body must carry: up to the last required */
    t_field_t fields[T_MAX_FIELDS];
    int (*encode) (const void *msg, char **data_p, size_t *size_p);
    int (*decode) (const void *data, size_t size, void *msg);
    int (*send) (const void *msg, zsock_t *sock);
    void (*clear) (void *msg);
} t_message_t;

#define T_KIND_U32     T_U32
#define T_KIND_U64     T_U64
#define T_KIND_I64     T_I64
#define T_KIND_STR     T_STR
#define T_REQUIRED_REQ true
#define T_REQUIRED_OPT false

#define T_FIELD_DESC(kind, fname, fmax, req)                                   \
    assert_true (m->nfields < T_MAX_FIELDS);                                   \
    m->fields[m->nfields++] =                                                  \
        (t_field_t){T_KIND_##kind, #fname, offsetof (t_struct_t, fname), fmax, \
                    T_REQUIRED_##req};                                         \
    if (T_REQUIRED_##req)                                                      \
        m->nmin = m->nfields;

/*  Wrappers with one signature per entry point, and a describer filling
    a t_message_t from the model's field list. */
#define T_MESSAGE_DEFINE(mname, mtopic, mtype)                                 \
    static int s_encode_##mname (const void *msg, char **data_p,               \
                                 size_t *size_p)                               \
    {                                                                          \
        return rcd_##mname##_encode (msg, data_p, size_p);                     \
    }                                                                          \
    static int s_decode_##mname (const void *data, size_t size, void *msg)     \
    {                                                                          \
        return rcd_##mname##_decode (data, size, msg);                         \
    }                                                                          \
    static int s_send_##mname (const void *msg, zsock_t *sock)                 \
    {                                                                          \
        return rcd_##mname##_send (msg, sock);                                 \
    }                                                                          \
    static void s_clear_##mname (void *msg)                                    \
    {                                                                          \
        rcd_##mname##_clear (msg);                                             \
    }                                                                          \
    static void s_describe_##mname (t_message_t *m)                            \
    {                                                                          \
        typedef rcd_##mname##_t t_struct_t;                                    \
        memset (m, 0, sizeof *m);                                              \
        m->name = #mname;                                                      \
        m->topic = mtopic;                                                     \
        m->type = mtype;                                                       \
        m->size = sizeof (t_struct_t);                                         \
        m->encode = s_encode_##mname;                                          \
        m->decode = s_decode_##mname;                                          \
        m->send = s_send_##mname;                                              \
        m->clear = s_clear_##mname;                                            \
        RCD_PROTO_FIELDS_##mname (T_FIELD_DESC)                                \
    }
RCD_PROTO_MESSAGES (T_MESSAGE_DEFINE)
#undef T_MESSAGE_DEFINE

static t_message_t s_messages[RCD_MSG_COUNT];

static int
s_setup_model (void **state)
{
    (void)state;
#define T_DESCRIBE(mname, mtopic, mtype)                                       \
    s_describe_##mname (&s_messages[mtype]);
    RCD_PROTO_MESSAGES (T_DESCRIBE)
#undef T_DESCRIBE
    return 0;
}

/*  Field access by offset. */
#define T_AT(msg, f, ctype) ((ctype *)((char *)(msg) + (f)->offset))

/*  ----------------------------------------------------------------------
    Filling, comparing and checking structs, field by field. */

typedef enum {
    T_FILL_MAX, /* longest strings, largest integers */
    T_FILL_MIN, /* empty strings, NULL optionals, zero/most negative */
    T_FILL_MID  /* distinct per-field values, UTF-8 text */
} t_fill_t;

/*  A string of exactly len bytes, different for each field. */
static char *
s_pattern (size_t len, size_t seed)
{
    char *s = malloc (len + 1);
    assert_non_null (s);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)('a' + (i + seed) % 26);
    s[len] = 0;
    return s;
}

/*  Fills msg (zeroed, m->size bytes) with test values; the strings are
    ours to free with s_unfill. */
static void
s_fill (const t_message_t *m, void *msg, t_fill_t how)
{
    memset (msg, 0, m->size);
    for (size_t i = 0; i < m->nfields; i++) {
        const t_field_t *f = &m->fields[i];
        switch (f->kind) {
            case T_U32:
                *T_AT (msg, f, uint32_t) = how == T_FILL_MAX   ? UINT32_MAX
                                           : how == T_FILL_MIN ? 0
                                                               : 1000 + i;
                break;
            case T_U64:
                *T_AT (msg, f, uint64_t) = how == T_FILL_MAX ? UINT64_MAX
                                           : how == T_FILL_MIN
                                               ? 0
                                               : (1ULL << 40) + i;
                break;
            case T_I64:
                *T_AT (msg, f, int64_t) = how == T_FILL_MAX   ? INT64_MAX
                                          : how == T_FILL_MIN ? INT64_MIN
                                                              : -1000 - (int)i;
                break;
            case T_STR: {
                char *s = NULL;
                if (how == T_FILL_MAX)
                    s = s_pattern (f->max, i);
                else if (how == T_FILL_MIN)
                    s = f->required ? s_pattern (0, i) : NULL;
                else {
                    /* "ação-<field>", cut to the maximum on a byte */
                    char text[96];
                    snprintf (text, sizeof text, "a\xc3\xa7\xc3\xa3o-%s",
                              f->name);
                    size_t len = strlen (text);
                    if (len > f->max)
                        len = f->max;
                    s = strndup (text, len);
                    assert_non_null (s);
                }
                *T_AT (msg, f, char *) = s;
                break;
            }
        }
    }
}

/*  Frees the strings of a struct filled by s_fill. */
static void
s_unfill (const t_message_t *m, void *msg)
{
    for (size_t i = 0; i < m->nfields; i++)
        if (m->fields[i].kind == T_STR) {
            free (*T_AT (msg, &m->fields[i], char *));
            *T_AT (msg, &m->fields[i], char *) = NULL;
        }
}

static void
s_assert_same (const t_message_t *m, void *a, void *b)
{
    for (size_t i = 0; i < m->nfields; i++) {
        const t_field_t *f = &m->fields[i];
        switch (f->kind) {
            case T_U32:
                assert_true (*T_AT (a, f, uint32_t) == *T_AT (b, f, uint32_t));
                break;
            case T_U64:
                assert_true (*T_AT (a, f, uint64_t) == *T_AT (b, f, uint64_t));
                break;
            case T_I64:
                assert_true (*T_AT (a, f, int64_t) == *T_AT (b, f, int64_t));
                break;
            case T_STR: {
                const char *x = *T_AT (a, f, char *);
                const char *y = *T_AT (b, f, char *);
                if (!x || !y)
                    assert_ptr_equal (x, y);
                else
                    assert_string_equal (x, y);
                break;
            }
        }
    }
}

/*  What any successful decode must produce, whatever the input. */
static void
s_assert_valid (const t_message_t *m, void *msg)
{
    for (size_t i = 0; i < m->nfields; i++) {
        const t_field_t *f = &m->fields[i];
        if (f->kind != T_STR)
            continue;
        const char *s = *T_AT (msg, f, char *);
        if (f->required)
            assert_non_null (s);
        if (s)
            assert_true (strlen (s) <= f->max);
    }
}

/*  ----------------------------------------------------------------------
    A minimal msgpack writer for hand-made bodies. */

typedef struct {
    unsigned char *data;
    size_t size, cap;
} t_buf_t;

static void
b_bytes (t_buf_t *b, const void *p, size_t n)
{
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->size + n)
            cap *= 2;
        b->data = realloc (b->data, cap);
        assert_non_null (b->data);
        b->cap = cap;
    }
    if (n)
        memcpy (b->data + b->size, p, n);
    b->size += n;
}

static void
b_byte (t_buf_t *b, unsigned char c)
{
    b_bytes (b, &c, 1);
}

static void
b_be (t_buf_t *b, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        b_byte (b, (unsigned char)(v >> (8 * i)));
}

/*  Unsigned in the widest form (0xcf) or the smallest. */
static void
b_uint (t_buf_t *b, uint64_t v, bool wide)
{
    if (wide) {
        b_byte (b, 0xcf);
        b_be (b, v, 8);
    }
    else if (v < 128)
        b_byte (b, (unsigned char)v);
    else if (v <= 0xffff) {
        b_byte (b, 0xcd);
        b_be (b, v, 2);
    }
    else if (v <= 0xffffffff) {
        b_byte (b, 0xce);
        b_be (b, v, 4);
    }
    else {
        b_byte (b, 0xcf);
        b_be (b, v, 8);
    }
}

static void
b_int (t_buf_t *b, int64_t v, bool wide)
{
    if (v >= 0)
        b_uint (b, (uint64_t)v, wide);
    else {
        b_byte (b, 0xd3);
        b_be (b, (uint64_t)v, 8);
    }
}

static void
b_str (t_buf_t *b, const char *s, size_t n, bool wide)
{
    if (wide) {
        b_byte (b, 0xdb);
        b_be (b, n, 4);
    }
    else if (n < 32)
        b_byte (b, (unsigned char)(0xa0 | n));
    else if (n <= 0xff) {
        b_byte (b, 0xd9);
        b_be (b, n, 1);
    }
    else if (n <= 0xffff) {
        b_byte (b, 0xda);
        b_be (b, n, 2);
    }
    else {
        b_byte (b, 0xdb);
        b_be (b, n, 4);
    }
    b_bytes (b, s, n);
}

static void
b_array (t_buf_t *b, uint32_t n, bool wide)
{
    if (wide) {
        b_byte (b, 0xdd);
        b_be (b, n, 4);
    }
    else if (n < 16)
        b_byte (b, (unsigned char)(0x90 | n));
    else {
        b_byte (b, 0xdc);
        b_be (b, n, 2);
    }
}

/*  Values that are wrong for some field kinds. */
typedef enum {
    T_BAD_STRING,   /* "1" */
    T_BAD_UINT,     /* 1 */
    T_BAD_NEGATIVE, /* -1 */
    T_BAD_NIL,
    T_BAD_TRUE,
    T_BAD_FLOAT, /* 1.0 */
    T_BAD_ARRAY, /* [1] */
    T_BAD_MAP,   /* {} */
    T_BAD_BIN,   /* bin 8 holding a valid string's bytes */
    T_BAD_EXT,   /* fixext 1 */
    T_BAD_U32_OVER,
    T_BAD_I64_OVER,
    T_BAD_STR_OVER, /* one byte over the maximum */
    T_BAD_STR_NUL,  /* embedded NUL */
    T_BAD_COUNT
} t_bad_t;

static const char *s_bad_names[] = {
    "string", "uint",     "negative",  "nil",         "true",
    "float",  "array",    "map",       "bin",         "ext",
    "u32+1",  "i64max+1", "str max+1", "str with NUL"};

/*  True when value bad is a wrong value for field f. */
static bool
s_bad_applies (const t_field_t *f, t_bad_t bad)
{
    switch (bad) {
        case T_BAD_STRING:
        case T_BAD_STR_OVER:
        case T_BAD_STR_NUL:
            return f->kind == T_STR ? bad != T_BAD_STRING : true;
        case T_BAD_UINT:
            return f->kind == T_STR;
        case T_BAD_NEGATIVE:
            return f->kind != T_I64;
        case T_BAD_NIL:
            return f->kind != T_STR || f->required;
        case T_BAD_U32_OVER:
            return f->kind == T_U32;
        case T_BAD_I64_OVER:
            return f->kind == T_I64;
        default:
            return true;
    }
}

static void
b_bad (t_buf_t *b, const t_field_t *f, t_bad_t bad)
{
    switch (bad) {
        case T_BAD_STRING:
            b_str (b, "1", 1, false);
            break;
        case T_BAD_UINT:
            b_uint (b, 1, false);
            break;
        case T_BAD_NEGATIVE:
            b_int (b, -1, false);
            break;
        case T_BAD_NIL:
            b_byte (b, 0xc0);
            break;
        case T_BAD_TRUE:
            b_byte (b, 0xc3);
            break;
        case T_BAD_FLOAT:
            b_byte (b, 0xcb);
            b_be (b, 0x3ff0000000000000ULL, 8);
            break;
        case T_BAD_ARRAY:
            b_array (b, 1, false);
            b_uint (b, 1, false);
            break;
        case T_BAD_MAP:
            b_byte (b, 0x80);
            break;
        case T_BAD_BIN:
            b_byte (b, 0xc4);
            b_byte (b, 2);
            b_bytes (b, "ok", 2);
            break;
        case T_BAD_EXT:
            b_byte (b, 0xd4);
            b_byte (b, 1);
            b_byte (b, 1);
            break;
        case T_BAD_U32_OVER:
            b_uint (b, (uint64_t)UINT32_MAX + 1, false);
            break;
        case T_BAD_I64_OVER:
            b_uint (b, (uint64_t)INT64_MAX + 1, false);
            break;
        case T_BAD_STR_OVER:
        case T_BAD_STR_NUL: {
            size_t max = f->kind == T_STR ? f->max : 8;
            size_t len = bad == T_BAD_STR_OVER ? max + 1 : (max < 3 ? max : 3);
            char *s = s_pattern (len, 0);
            if (bad == T_BAD_STR_NUL)
                s[len / 2] = 0;
            b_str (b, s, len, false);
            free (s);
            break;
        }
        default:
            fail ();
    }
}

/*  How to build a body by hand from a struct. */
typedef struct {
    int field;        /* index of the field to replace, -1 for none */
    t_bad_t bad;      /* its replacement */
    int count_delta;  /* elements left out (<0) or appended as nil (>0) */
    bool wide;        /* widest integer, string and array forms */
    bool version_nil; /* version element is nil */
    uint64_t version; /* version element */
} t_body_t;

static t_body_t
s_body_plain (void)
{
    return (t_body_t){-1, T_BAD_COUNT, 0, false, false, RCD_PROTO_VERSION};
}

static void
s_build (const t_message_t *m, void *msg, const t_body_t *how, t_buf_t *b)
{
    memset (b, 0, sizeof *b);
    int count = 1 + (int)m->nfields + how->count_delta;
    assert_true (count >= 0);
    b_array (b, (uint32_t)count, how->wide);
    if (count == 0)
        return;
    if (how->version_nil)
        b_byte (b, 0xc0);
    else
        b_uint (b, how->version, how->wide);
    int left = count - 1;
    for (size_t i = 0; i < m->nfields && left > 0; i++, left--) {
        const t_field_t *f = &m->fields[i];
        if ((int)i == how->field) {
            b_bad (b, f, how->bad);
            continue;
        }
        switch (f->kind) {
            case T_U32:
                b_uint (b, *T_AT (msg, f, uint32_t), how->wide);
                break;
            case T_U64:
                b_uint (b, *T_AT (msg, f, uint64_t), how->wide);
                break;
            case T_I64:
                b_int (b, *T_AT (msg, f, int64_t), how->wide);
                break;
            case T_STR: {
                const char *s = *T_AT (msg, f, char *);
                if (s)
                    b_str (b, s, strlen (s), how->wide);
                else
                    b_byte (b, 0xc0);
                break;
            }
        }
    }
    for (; left > 0; left--)
        b_byte (b, 0xc0);
}

/*  Fills msg like an uninitialised stack variable that looks like a
    decoded message: clearing it as it is would free a wild pointer. */
static void
s_garbage (rcd_proto_msg_t *msg)
{
    memset (msg, 0xa5, sizeof *msg);
    msg->type = RCD_MSG_HEARTBEAT;
}

/*  Decodes size bytes of data from an allocation of exactly that size
    with the message's own decoder. Returns the decoder's code; on
    success the decoded struct is checked for validity and cleared unless
    out is given (then the caller clears it). */
static int
s_decode_exact (const t_message_t *m, const void *data, size_t size, void *out)
{
    unsigned char *copy = malloc (size ? size : 1);
    assert_non_null (copy);
    if (size)
        memcpy (copy, data, size);
    _Alignas(max_align_t) unsigned char scratch[512];
    assert_true (m->size <= sizeof scratch);
    void *msg = out ? out : scratch;
    memset (msg, 0xa5, m->size); /* decode must not rely on a zeroed struct */
    int rc = m->decode (copy, size, msg);
    free (copy);
    assert_true (rc == 0 || rc == -2);
    if (rc == 0)
        s_assert_valid (m, msg);
    else {
        /* a failed decode leaves nothing to free */
        char **strbuf = (char **)((char *)msg + m->size - sizeof (char *));
        assert_null (*strbuf);
        assert_true (strlen (rcd_proto_last_error ()) > 0);
    }
    if (!out || rc != 0)
        m->clear (msg);
    return rc;
}

/*  ----------------------------------------------------------------------
    Round trips */

static void
test_model_lists_every_message_with_its_topic (void **state)
{
    (void)state;
    assert_true (RCD_MSG_COUNT >= 4);
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        assert_non_null (m->name);
        assert_int_equal (m->type, t);
        assert_true (m->nfields > 0);
        assert_true (m->nmin > 0 && m->nmin <= m->nfields);
        assert_string_equal (rcd_proto_topic ((rcd_msg_type_t)t), m->topic);
        /* strbuf_ is the last member: the check in s_decode_exact uses it */
        assert_true (m->fields[m->nfields - 1].offset <
                     m->size - sizeof (char *));
    }
    assert_null (rcd_proto_topic (RCD_MSG_COUNT));
}

static void
test_every_message_round_trips_extreme_values (void **state)
{
    (void)state;
    const t_fill_t fills[] = {T_FILL_MAX, T_FILL_MIN, T_FILL_MID};
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        for (size_t k = 0; k < sizeof fills / sizeof fills[0]; k++) {
            _Alignas(max_align_t) unsigned char in[512], out[512];
            s_fill (m, in, fills[k]);
            char *data = NULL;
            size_t size = 0;
            assert_int_equal (m->encode (in, &data, &size), 0);
            assert_non_null (data);
            assert_int_equal (s_decode_exact (m, data, size, out), 0);
            s_assert_same (m, in, out);
            /* and through the any-type decoder, by topic */
            rcd_proto_msg_t any;
            assert_int_equal (rcd_proto_decode (m->topic, strlen (m->topic),
                                                data, size, &any),
                              0);
            assert_int_equal (any.type, m->type);
            s_assert_same (m, in, &any.u);
            rcd_proto_msg_clear (&any);
            m->clear (out);
            free (data);
            s_unfill (m, in);
        }
    }
}

static void
test_decode_accepts_any_integer_and_string_width (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        const t_fill_t fills[] = {T_FILL_MIN, T_FILL_MID, T_FILL_MAX};
        for (size_t k = 0; k < 3; k++) {
            _Alignas(max_align_t) unsigned char in[512], out[512];
            s_fill (m, in, fills[k]);
            for (int wide = 0; wide < 2; wide++) {
                t_body_t how = s_body_plain ();
                how.wide = wide;
                t_buf_t b;
                s_build (m, in, &how, &b);
                assert_int_equal (s_decode_exact (m, b.data, b.size, out), 0);
                s_assert_same (m, in, out);
                m->clear (out);
                free (b.data);
            }
            s_unfill (m, in);
        }
    }
}

static void
test_nil_is_accepted_only_in_optional_strings (void **state)
{
    (void)state;
    int optional_seen = 0;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512], out[512];
        s_fill (m, in, T_FILL_MID);
        for (size_t i = 0; i < m->nfields; i++) {
            const t_field_t *f = &m->fields[i];
            if (f->kind != T_STR)
                continue;
            char **slot = T_AT (in, f, char *);
            char *saved = *slot;
            *slot = NULL;
            char *data = NULL;
            size_t size = 0;
            int rc = m->encode (in, &data, &size);
            /* the hand-made body says the same thing to the decoder */
            t_body_t how = s_body_plain ();
            t_buf_t b;
            s_build (m, in, &how, &b);
            int drc = s_decode_exact (m, b.data, b.size, out);
            if (f->required) {
                assert_int_equal (rc, -1); /* never put on the wire */
                assert_null (data);
                assert_int_equal (drc, -2);
            }
            else {
                optional_seen++;
                assert_int_equal (rc, 0);
                assert_int_equal (drc, 0);
                assert_null (*T_AT (out, f, char *));
                s_assert_same (m, in, out);
                m->clear (out);
                assert_int_equal (s_decode_exact (m, data, size, NULL), 0);
            }
            free (data);
            free (b.data);
            *slot = saved;
        }
        s_unfill (m, in);
    }
    assert_true (optional_seen > 0);
}

static void
test_encode_refuses_strings_over_their_maximum (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MAX);
        for (size_t i = 0; i < m->nfields; i++) {
            const t_field_t *f = &m->fields[i];
            if (f->kind != T_STR)
                continue;
            char **slot = T_AT (in, f, char *);
            char *saved = *slot;
            *slot = s_pattern (f->max + 1, i);
            char *data = NULL;
            size_t size = 0;
            assert_int_equal (m->encode (in, &data, &size), -1);
            assert_null (data);
            assert_non_null (strstr (rcd_proto_last_error (), f->name));
            free (*slot);
            *slot = saved;
        }
        s_unfill (m, in);
    }
}

/*  ----------------------------------------------------------------------
    Rejections */

/*  Decodes every prefix of body (or a sample when it is long) and
    expects each to be rejected. */
static void
s_assert_prefixes_rejected (const t_message_t *m, const unsigned char *data,
                            size_t size)
{
    for (size_t len = 0; len < size; len++) {
        if (size > 4096 && len > 512 && len + 512 < size && len % 251)
            continue;
        if (s_decode_exact (m, data, len, NULL) != -2)
            fail_msg ("%s: prefix %zu of %zu accepted", m->name, len, size);
    }
}

static void
test_every_truncation_of_a_valid_body_is_rejected (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        const t_fill_t fills[] = {T_FILL_MID, T_FILL_MIN, T_FILL_MAX};
        for (size_t k = 0; k < 3; k++) {
            _Alignas(max_align_t) unsigned char in[512];
            s_fill (m, in, fills[k]);
            char *data = NULL;
            size_t size = 0;
            assert_int_equal (m->encode (in, &data, &size), 0);
            s_assert_prefixes_rejected (m, (unsigned char *)data, size);
            free (data);
            /* the widest forms have longer headers to cut into */
            t_body_t how = s_body_plain ();
            how.wide = true;
            t_buf_t b;
            s_build (m, in, &how, &b);
            s_assert_prefixes_rejected (m, b.data, b.size);
            free (b.data);
            s_unfill (m, in);
        }
    }
}

static void
test_unknown_versions_are_rejected (void **state)
{
    (void)state;
    const uint64_t versions[] = {0, RCD_PROTO_VERSION + 1, UINT32_MAX,
                                 (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MID);
        for (size_t v = 0; v <= sizeof versions / sizeof versions[0]; v++) {
            t_body_t how = s_body_plain ();
            if (v == sizeof versions / sizeof versions[0])
                how.version_nil = true;
            else
                how.version = versions[v];
            t_buf_t b;
            s_build (m, in, &how, &b);
            assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
            assert_non_null (strstr (rcd_proto_last_error (), "version"));
            free (b.data);
        }
        s_unfill (m, in);
    }
}

static void
test_wrong_field_counts_are_rejected (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MID);
        /* one required field short (trailing optional ones may be
           absent: test_trailing_optional_fields_may_be_absent), one and
           two too many, none, not even the version */
        const int deltas[] = {(int)m->nmin - (int)m->nfields - 1, 1, 2,
                              -(int)m->nfields, -(int)m->nfields - 1};
        for (size_t d = 0; d < sizeof deltas / sizeof deltas[0]; d++) {
            t_body_t how = s_body_plain ();
            how.count_delta = deltas[d];
            t_buf_t b;
            s_build (m, in, &how, &b);
            assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
            free (b.data);
        }
        s_unfill (m, in);
    }
}

/*  The model's rule for adding a field (rcd_proto_model.h): a body from
    a peer built before the trailing optional fields existed stops
    before them, and they decode as nil. */
static void
test_trailing_optional_fields_may_be_absent (void **state)
{
    (void)state;
    int lenient = 0;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512], out[512];
        s_fill (m, in, T_FILL_MID);
        for (size_t present = m->nmin; present < m->nfields; present++) {
            t_body_t how = s_body_plain ();
            how.count_delta = (int)present - (int)m->nfields;
            t_buf_t b;
            s_build (m, in, &how, &b);
            if (s_decode_exact (m, b.data, b.size, out) != 0)
                fail_msg ("%s: %zu of %zu fields refused", m->name, present,
                          m->nfields);
            /* the fields present as sent, the rest nil (strings) or 0 */
            char *saved[T_MAX_FIELDS];
            uint64_t saved_n[T_MAX_FIELDS];
            for (size_t i = present; i < m->nfields; i++) {
                const t_field_t *f = &m->fields[i];
                assert_false (f->required);
                if (f->kind == T_STR) {
                    saved[i] = *T_AT (in, f, char *);
                    *T_AT (in, f, char *) = NULL;
                }
                else if (f->kind == T_U32) {
                    saved_n[i] = *T_AT (in, f, uint32_t);
                    *T_AT (in, f, uint32_t) = 0;
                }
                else {
                    saved_n[i] = *T_AT (in, f, uint64_t);
                    *T_AT (in, f, uint64_t) = 0;
                }
            }
            s_assert_same (m, in, out);
            for (size_t i = present; i < m->nfields; i++) {
                const t_field_t *f = &m->fields[i];
                if (f->kind == T_STR)
                    *T_AT (in, f, char *) = saved[i];
                else if (f->kind == T_U32)
                    *T_AT (in, f, uint32_t) = (uint32_t)saved_n[i];
                else
                    *T_AT (in, f, uint64_t) = saved_n[i];
            }
            m->clear (out);
            free (b.data);
            lenient++;
        }
        s_unfill (m, in);
    }
    /* dispatch.trace_id, then parts_sent and part_limit, came after
       dispatch: an old scheduler's frame */
    assert_true (s_messages[RCD_MSG_DISPATCH].nmin <
                 s_messages[RCD_MSG_DISPATCH].nfields);
    assert_true (lenient > 0);
}

static void
test_each_field_with_a_wrong_value_is_rejected (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MID);
        for (size_t i = 0; i < m->nfields; i++) {
            int tried = 0;
            for (int bad = 0; bad < T_BAD_COUNT; bad++) {
                if (!s_bad_applies (&m->fields[i], (t_bad_t)bad))
                    continue;
                t_body_t how = s_body_plain ();
                how.field = (int)i;
                how.bad = (t_bad_t)bad;
                t_buf_t b;
                s_build (m, in, &how, &b);
                if (s_decode_exact (m, b.data, b.size, NULL) != -2)
                    fail_msg ("%s.%s accepted %s", m->name, m->fields[i].name,
                              s_bad_names[bad]);
                if (!strstr (rcd_proto_last_error (), m->fields[i].name))
                    fail_msg ("%s.%s with %s: %s", m->name, m->fields[i].name,
                              s_bad_names[bad], rcd_proto_last_error ());
                free (b.data);
                tried++;
            }
            assert_true (tried >= 7);
        }
        s_unfill (m, in);
    }
}

static void
test_strings_at_their_maximum_pass_and_one_byte_over_fails (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MAX);
        t_body_t how = s_body_plain ();
        t_buf_t b;
        s_build (m, in, &how, &b);
        assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), 0);
        free (b.data);
        for (size_t i = 0; i < m->nfields; i++) {
            if (m->fields[i].kind != T_STR)
                continue;
            how.field = (int)i;
            how.bad = T_BAD_STR_OVER;
            s_build (m, in, &how, &b);
            assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
            free (b.data);
        }
        s_unfill (m, in);
    }
}

static void
test_strings_with_an_embedded_nul_are_rejected (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MID);
        for (size_t i = 0; i < m->nfields; i++) {
            const t_field_t *f = &m->fields[i];
            if (f->kind != T_STR)
                continue;
            /* a NUL first, in the middle and last: C would see a shorter
               string than the peer sent */
            size_t len = f->max < 8 ? f->max : 8;
            size_t at[] = {0, len / 2, len - 1};
            for (size_t k = 0; k < 3; k++) {
                char **slot = T_AT (in, f, char *);
                char *saved = *slot;
                *slot = s_pattern (len, 0);
                t_body_t how = s_body_plain ();
                t_buf_t b;
                s_build (m, in, &how, &b);
                /* find the string in the body and poke the NUL into it */
                unsigned char *p = memmem (b.data, b.size, *slot, len);
                assert_non_null (p);
                p[at[k]] = 0;
                assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
                assert_non_null (strstr (rcd_proto_last_error (), f->name));
                free (b.data);
                free (*slot);
                *slot = saved;
            }
        }
        s_unfill (m, in);
    }
}

static void
test_trailing_bytes_are_rejected (void **state)
{
    (void)state;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MID);
        char *data = NULL;
        size_t size = 0;
        assert_int_equal (m->encode (in, &data, &size), 0);
        /* one nil byte, then a whole second body */
        t_buf_t b = {NULL, 0, 0};
        b_bytes (&b, data, size);
        b_byte (&b, 0xc0);
        assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
        assert_non_null (strstr (rcd_proto_last_error (), "trailing"));
        b.size = size;
        b_bytes (&b, data, size);
        assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
        free (b.data);
        free (data);
        s_unfill (m, in);
    }
}

static void
test_bodies_that_are_not_arrays_are_rejected (void **state)
{
    (void)state;
    static const unsigned char nil[] = {0xc0}, one[] = {0x01},
                               str[] = {0xa1, 'x'}, map[] = {0x81, 0x01, 0x01},
                               empty_array[] = {0x90}, bin[] = {0xc4, 0x00},
                               reserved[] = {0xc1};
    const struct {
        const unsigned char *data;
        size_t size;
    } bodies[] = {{nil, 1},         {one, 1}, {str, 2},      {map, 3},
                  {empty_array, 1}, {bin, 2}, {reserved, 1}, {one, 0}};
    for (int t = 0; t < RCD_MSG_COUNT; t++)
        for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
            assert_int_equal (s_decode_exact (&s_messages[t], bodies[i].data,
                                              bodies[i].size, NULL),
                              -2);
    /* no buffer at all */
    rcd_nudge_t nudge;
    assert_int_equal (rcd_nudge_decode (NULL, 0, &nudge), -2);
    rcd_nudge_clear (&nudge);
}

static void
test_huge_container_counts_are_rejected_without_allocating (void **state)
{
    (void)state;
    /* Each claims billions of elements in a few bytes. msgpack-c alone
       would reserve count * sizeof (msgpack_object) first; under ASan
       that aborts the process, in production it costs gigabytes. */
    static const unsigned char array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char bin32[] = {0xc6, 0x7f, 0xff, 0xff, 0xff};
    static const unsigned char array16[] = {0xdc, 0xff, 0xff, 0x01};
    const struct {
        const unsigned char *data;
        size_t size;
    } bodies[] = {
        {array32, 5}, {map32, 5}, {str32, 5}, {bin32, 5}, {array16, 4}};
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
            assert_int_equal (
                s_decode_exact (m, bodies[i].data, bodies[i].size, NULL), -2);
        /* the same inside a well-formed envelope, as one field */
        _Alignas(max_align_t) unsigned char in[512];
        s_fill (m, in, T_FILL_MID);
        t_body_t how = s_body_plain ();
        how.count_delta = -1; /* the last field comes from us */
        t_buf_t b;
        s_build (m, in, &how, &b);
        b.data[0]++; /* fixarray: count the field we append */
        b_bytes (&b, array32, sizeof array32);
        assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), -2);
        free (b.data);
        s_unfill (m, in);
    }
}

static void
test_deep_nesting_is_rejected_without_crashing (void **state)
{
    (void)state;
    size_t depth = 100000;
    unsigned char *data = malloc (depth + 1);
    assert_non_null (data);
    memset (data, 0x91, depth); /* [[[[...1...]]]] */
    data[depth] = 0x01;
    for (int t = 0; t < RCD_MSG_COUNT; t++)
        assert_int_equal (
            s_decode_exact (&s_messages[t], data, depth + 1, NULL), -2);
    free (data);
}

static void
test_unknown_topics_are_rejected (void **state)
{
    (void)state;
    char *data = NULL;
    size_t size = 0;
    rcd_nudge_t nudge = {.tenant_id = 1, .count = 2};
    assert_int_equal (rcd_nudge_encode (&nudge, &data, &size), 0);
    const struct {
        const char *topic;
        size_t size;
    } topics[] = {{"bogus", 5}, {"", 0},        {"nudg", 4},    {"nudgee", 6},
                  {"NUDGE", 5}, {"nudge\0", 6}, {"dispatch", 8}};
    /* the last is a known topic with another message's body */
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        rcd_proto_msg_t msg;
        s_garbage (&msg);
        int rc = rcd_proto_decode (topics[i].topic, topics[i].size, data, size,
                                   &msg);
        if (rc != -2)
            fail_msg ("topic %zu accepted", i);
        rcd_proto_msg_clear (&msg);
    }
    rcd_proto_msg_t msg;
    assert_int_equal (rcd_proto_decode ("bogus", 5, data, size, &msg), -2);
    assert_non_null (strstr (rcd_proto_last_error (), "topic"));
    rcd_proto_msg_clear (&msg);
    assert_int_equal (rcd_proto_decode ("nudge", 5, data, size, &msg), 0);
    assert_int_equal (msg.type, RCD_MSG_NUDGE);
    assert_true (msg.u.nudge.tenant_id == 1 && msg.u.nudge.count == 2);
    rcd_proto_msg_clear (&msg);
    free (data);
}

/*  ----------------------------------------------------------------------
    Real sockets */

static void
s_pair (zsock_t **a, zsock_t **b, const char *name)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://%s", name);
    *a = zsock_new (ZMQ_PAIR);
    *b = zsock_new (ZMQ_PAIR);
    assert_non_null (*a);
    assert_non_null (*b);
    assert_int_equal (zsock_bind (*a, "%s", endpoint), 0);
    assert_int_equal (zsock_connect (*b, "%s", endpoint), 0);
    zsock_set_rcvtimeo (*a, 5000);
    zsock_set_rcvtimeo (*b, 5000);
    zsock_set_sndtimeo (*b, 5000);
}

static void
test_send_and_recv_round_trip_every_message_on_a_pair (void **state)
{
    (void)state;
    zsock_t *server = NULL, *client = NULL;
    s_pair (&server, &client, "proto-round-trip");
    const t_fill_t fills[] = {T_FILL_MAX, T_FILL_MIN, T_FILL_MID};
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        for (size_t k = 0; k < 3; k++) {
            _Alignas(max_align_t) unsigned char in[512];
            s_fill (m, in, fills[k]);
            assert_int_equal (m->send (in, client), 0);
            rcd_proto_msg_t msg;
            assert_int_equal (rcd_proto_recv (server, &msg), 0);
            assert_int_equal (msg.type, m->type);
            s_assert_same (m, in, &msg.u);
            rcd_proto_msg_clear (&msg);
            s_unfill (m, in);
        }
    }
    zsock_destroy (&client);
    zsock_destroy (&server);
}

static void
test_send_refuses_an_invalid_message_and_sends_nothing (void **state)
{
    (void)state;
    zsock_t *server = NULL, *client = NULL;
    s_pair (&server, &client, "proto-refuse");
    rcd_heartbeat_t hb = {.service = NULL, .replica = "r", .seq = 1};
    assert_int_equal (rcd_heartbeat_send (&hb, client), -1);
    hb.service = "svc";
    assert_int_equal (rcd_heartbeat_send (&hb, client), 0);
    rcd_proto_msg_t msg;
    assert_int_equal (rcd_proto_recv (server, &msg), 0);
    assert_int_equal (msg.type, RCD_MSG_HEARTBEAT);
    assert_string_equal (msg.u.heartbeat.service, "svc");
    assert_null (msg.u.heartbeat.state);
    rcd_proto_msg_clear (&msg);
    zsock_destroy (&client);
    zsock_destroy (&server);
}

static void
test_recv_rejects_one_or_three_frames_and_goes_on (void **state)
{
    (void)state;
    zsock_t *server = NULL, *client = NULL;
    s_pair (&server, &client, "proto-frames");
    rcd_nudge_t nudge = {.tenant_id = 7, .count = 3};
    char *data = NULL;
    size_t size = 0;
    assert_int_equal (rcd_nudge_encode (&nudge, &data, &size), 0);

    /* one frame: the topic alone */
    assert_int_equal (zstr_send (client, "nudge"), 0);
    /* one frame: a body alone */
    zframe_t *frame = zframe_new (data, size);
    assert_int_equal (zframe_send (&frame, client, 0), 0);
    /* three frames: topic, body and one more */
    zmsg_t *zmsg = zmsg_new ();
    zmsg_addstr (zmsg, "nudge");
    zmsg_addmem (zmsg, data, size);
    zmsg_addmem (zmsg, data, size);
    assert_int_equal (zmsg_send (&zmsg, client), 0);
    /* an empty body */
    zmsg = zmsg_new ();
    zmsg_addstr (zmsg, "nudge");
    zmsg_addmem (zmsg, NULL, 0);
    assert_int_equal (zmsg_send (&zmsg, client), 0);
    /* and a good one */
    assert_int_equal (rcd_nudge_send (&nudge, client), 0);

    /* msg starts as garbage each time: whatever recv returns, clearing
       it afterwards must be safe */
    rcd_proto_msg_t msg;
    for (int i = 0; i < 4; i++) {
        s_garbage (&msg);
        assert_int_equal (rcd_proto_recv (server, &msg), -2);
        rcd_proto_msg_clear (&msg);
    }
    assert_int_equal (rcd_proto_recv (server, &msg), 0);
    assert_int_equal (msg.type, RCD_MSG_NUDGE);
    assert_true (msg.u.nudge.tenant_id == 7 && msg.u.nudge.count == 3);
    rcd_proto_msg_clear (&msg);

    /* nothing left: the receive timeout is "nothing", not "garbage" */
    zsock_set_rcvtimeo (server, 20);
    s_garbage (&msg);
    assert_int_equal (rcd_proto_recv (server, &msg), -1);
    rcd_proto_msg_clear (&msg);
    free (data);
    zsock_destroy (&client);
    zsock_destroy (&server);
}

static void
test_a_max_size_dispatch_crosses_tcp_push_pull (void **state)
{
    (void)state;
    int port = rcd_test_free_port ();
    zsock_t *pull = zsock_new (ZMQ_PULL);
    zsock_t *push = zsock_new (ZMQ_PUSH);
    assert_non_null (pull);
    assert_non_null (push);
    assert_int_equal (zsock_bind (pull, "tcp://127.0.0.1:%d", port), port);
    assert_int_equal (zsock_connect (push, "tcp://127.0.0.1:%d", port), 0);
    zsock_set_rcvtimeo (pull, 5000);
    zsock_set_sndtimeo (push, 5000);
    const t_message_t *m = &s_messages[RCD_MSG_DISPATCH];
    _Alignas(max_align_t) unsigned char in[512];
    s_fill (m, in, T_FILL_MAX);
    assert_int_equal (m->send (in, push), 0);
    rcd_proto_msg_t msg;
    assert_int_equal (rcd_proto_recv (pull, &msg), 0);
    assert_int_equal (msg.type, RCD_MSG_DISPATCH);
    s_assert_same (m, in, &msg.u);
    rcd_proto_msg_clear (&msg);
    s_unfill (m, in);
    zsock_destroy (&push);
    zsock_destroy (&pull);
}

/*  ----------------------------------------------------------------------
    Mutations */

static uint64_t s_rng = 0x9e3779b97f4a7c15ULL;

/*  xorshift64*: the same sequence on every run. */
static uint32_t
s_rand (void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return (uint32_t)((s_rng * 2685821657736338717ULL) >> 32);
}

static void
test_mutated_bodies_fail_cleanly_or_decode_valid_structs (void **state)
{
    (void)state;
    s_rng = 0x9e3779b97f4a7c15ULL;
    /* valid bodies to mutate: each message, minimal and typical forms */
    t_buf_t seeds[RCD_MSG_COUNT * 3];
    size_t nseeds = 0;
    for (int t = 0; t < RCD_MSG_COUNT; t++) {
        const t_message_t *m = &s_messages[t];
        const t_fill_t fills[] = {T_FILL_MIN, T_FILL_MID};
        for (size_t k = 0; k < 2; k++) {
            _Alignas(max_align_t) unsigned char in[512];
            s_fill (m, in, fills[k]);
            t_body_t how = s_body_plain ();
            how.wide = k == 1;
            s_build (m, in, &how, &seeds[nseeds++]);
            s_unfill (m, in);
        }
    }
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 6000; iter++) {
        const t_buf_t *seed = &seeds[s_rand () % nseeds];
        const t_message_t *m = &s_messages[(seed - seeds) / 2];
        t_buf_t b = {NULL, 0, 0};
        b_bytes (&b, seed->data, seed->size);
        int edits = 1 + (int)(s_rand () % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = b.size ? s_rand () % b.size : 0;
            switch (s_rand () % 4) {
                case 0: /* flip one bit */
                    if (b.size)
                        b.data[at] ^= (unsigned char)(1u << (s_rand () % 8));
                    break;
                case 1: /* replace a byte */
                    if (b.size)
                        b.data[at] = (unsigned char)s_rand ();
                    break;
                case 2: /* insert a byte */
                    b_byte (&b, 0);
                    memmove (b.data + at + 1, b.data + at, b.size - at - 1);
                    b.data[at] = (unsigned char)s_rand ();
                    break;
                default: /* delete a byte */
                    if (b.size) {
                        memmove (b.data + at, b.data + at + 1, b.size - at - 1);
                        b.size--;
                    }
                    break;
            }
        }
        /* through the any-type path, on an exact-size copy */
        unsigned char *copy = malloc (b.size ? b.size : 1);
        assert_non_null (copy);
        if (b.size)
            memcpy (copy, b.data, b.size);
        rcd_proto_msg_t msg;
        int rc =
            rcd_proto_decode (m->topic, strlen (m->topic), copy, b.size, &msg);
        free (copy);
        if (rc == 0) {
            assert_int_equal (msg.type, m->type);
            s_assert_valid (m, &msg.u);
            accepted++;
        }
        else {
            assert_int_equal (rc, -2);
            rejected++;
        }
        rcd_proto_msg_clear (&msg);
        /* and the typed decoder on the same bytes agrees */
        assert_int_equal (s_decode_exact (m, b.data, b.size, NULL), rc);
        free (b.data);
    }
    /* both outcomes happen, or the loop is not testing anything */
    assert_true (accepted > 0);
    print_message ("mutations: %d decoded, %d rejected\n", accepted, rejected);
    assert_true (rejected > 0);
    for (size_t i = 0; i < nseeds; i++)
        free (seeds[i].data);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_model_lists_every_message_with_its_topic),
        cmocka_unit_test (test_every_message_round_trips_extreme_values),
        cmocka_unit_test (test_decode_accepts_any_integer_and_string_width),
        cmocka_unit_test (test_nil_is_accepted_only_in_optional_strings),
        cmocka_unit_test (test_encode_refuses_strings_over_their_maximum),
        cmocka_unit_test (test_every_truncation_of_a_valid_body_is_rejected),
        cmocka_unit_test (test_unknown_versions_are_rejected),
        cmocka_unit_test (test_wrong_field_counts_are_rejected),
        cmocka_unit_test (test_trailing_optional_fields_may_be_absent),
        cmocka_unit_test (test_each_field_with_a_wrong_value_is_rejected),
        cmocka_unit_test (
            test_strings_at_their_maximum_pass_and_one_byte_over_fails),
        cmocka_unit_test (test_strings_with_an_embedded_nul_are_rejected),
        cmocka_unit_test (test_trailing_bytes_are_rejected),
        cmocka_unit_test (test_bodies_that_are_not_arrays_are_rejected),
        cmocka_unit_test (
            test_huge_container_counts_are_rejected_without_allocating),
        cmocka_unit_test (test_deep_nesting_is_rejected_without_crashing),
        cmocka_unit_test (test_unknown_topics_are_rejected),
        cmocka_unit_test (
            test_send_and_recv_round_trip_every_message_on_a_pair),
        cmocka_unit_test (
            test_send_refuses_an_invalid_message_and_sends_nothing),
        cmocka_unit_test (test_recv_rejects_one_or_three_frames_and_goes_on),
        cmocka_unit_test (test_a_max_size_dispatch_crosses_tcp_push_pull),
        cmocka_unit_test (
            test_mutated_bodies_fail_cleanly_or_decode_valid_structs),
    };
    return cmocka_run_group_tests (tests, s_setup_model, NULL);
}
