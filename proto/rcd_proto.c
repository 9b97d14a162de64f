/*  rcd_proto.c - the msgpack codec for every message of rcd_proto_model.h.

    Bodies are msgpack arrays: [version, field1, field2, ...] in model
    order. Decoding is strict: a wrong version, a wrong element count, a
    wrong type, an oversize string or trailing bytes all return -2 and set
    rcd_proto_last_error (). The one leniency is the model's rule for
    adding fields: trailing OPT fields may be absent (an older peer's
    body) and decode as nil. Encoding always writes every field. All strings of one decoded message share one
    allocation (strbuf_), so a message costs one malloc whatever its shape.
    Encoding is as strict: a required string that is NULL or any string
    over its maximum makes encode (and send) return -1 with
    rcd_proto_last_error () set, rather than put on the wire a body every
    receiver would drop.
*/
#include "rcd_proto.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __thread char s_last_error[128];

/*  Records why a decode failed and returns the malformed code. */
static int
s_fail (const char *what, const char *field)
{
    snprintf (s_last_error, sizeof s_last_error, "%s%s%s", what,
              field ? ": " : "", field ? field : "");
    return -2;
}

const char *
rcd_proto_last_error (void)
{
    return s_last_error;
}

/*  Field helpers, selected by kind through token pasting. */

/*  Packers return msgpack's 0, or -1 when the buffer could not grow. */
static int
s_pack_U32 (msgpack_packer *pk, uint32_t v)
{
    return msgpack_pack_uint32 (pk, v);
}

static int
s_pack_U64 (msgpack_packer *pk, uint64_t v)
{
    return msgpack_pack_uint64 (pk, v);
}

static int
s_pack_I64 (msgpack_packer *pk, int64_t v)
{
    return msgpack_pack_int64 (pk, v);
}

static int
s_pack_STR (msgpack_packer *pk, const char *v)
{
    if (!v)
        return msgpack_pack_nil (pk);
    size_t len = strlen (v);
    if (msgpack_pack_str (pk, len) != 0)
        return -1;
    return msgpack_pack_str_body (pk, v, len);
}

/*  A string field the decoder will accept: present when required, at
    most max bytes. Encoding anything else would only make every peer
    drop the message, so the sender hears about it instead. */
static bool
s_valid_STR (const char *v, size_t max, bool required)
{
    return v ? strlen (v) <= max : !required;
}

static int
s_get_U64 (const msgpack_object *o, uint64_t *out, uint64_t max)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return -2;
    *out = o->via.u64;
    return 0;
}

static int
s_get_I64 (const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else
        return -2;
    return 0;
}

/*  Checks a string element; adds its size (plus NUL) to *total. */
static int
s_check_STR (const msgpack_object *o, size_t max, bool required, size_t *total)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return required ? -2 : 0;
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max)
        return -2;
    /* an empty string may come with a NULL ptr: not for memchr */
    if (o->via.str.size && memchr (o->via.str.ptr, 0, o->via.str.size))
        return -2;
    *total += o->via.str.size + 1;
    return 0;
}

/*  Copies a checked string element into the shared buffer. */
static char *
s_copy_STR (const msgpack_object *o, char **cursor)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return NULL;
    char *dst = *cursor;
    if (o->via.str.size)
        memcpy (dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = 0;
    *cursor += o->via.str.size + 1;
    return dst;
}

/*  Reads a big-endian unsigned number of n bytes at p. */
static uint64_t
s_read_be (const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*  Walks the msgpack bytes without allocating and fails unless they hold
    one complete object (trailing bytes are left to the caller). This
    guards msgpack-c, whose unpacker reserves count * sizeof
    (msgpack_object) for a container as soon as it reads the header: a
    5-byte body claiming 2^32 elements would ask for 128 GB. Once every
    element is known to be present, the unpacker allocates at most a
    small multiple of size. Iterative, so nesting depth costs nothing. */
static int
s_scan_body (const unsigned char *p, size_t size)
{
    size_t off = 0;
    uint64_t pending = 1; /* objects still to read */
    while (pending > 0) {
        /* every pending object takes at least one byte */
        if (off >= size || pending > size - off)
            return -2;
        unsigned char b = p[off++];
        pending--;
        uint64_t skip = 0;     /* payload bytes after the header */
        uint64_t children = 0; /* elements of a container */
        size_t width = 0;      /* bytes of a length field */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            skip = 0; /* fixint, nil, bool */
        else if (b <= 0x8f)
            children = 2 * (uint64_t)(b & 0x0f);
        else if (b <= 0x9f)
            children = b & 0x0f;
        else if (b <= 0xbf)
            skip = b & 0x1f;
        else
            switch (b) {
                case 0xc4: /* bin 8/16/32, str 8/16/32 */
                case 0xd9:
                    width = 1;
                    break;
                case 0xc5:
                case 0xda:
                    width = 2;
                    break;
                case 0xc6:
                case 0xdb:
                    width = 4;
                    break;
                case 0xc7: /* ext 8/16/32: length, type byte, data */
                    width = 1;
                    skip = 1;
                    break;
                case 0xc8:
                    width = 2;
                    skip = 1;
                    break;
                case 0xc9:
                    width = 4;
                    skip = 1;
                    break;
                case 0xcc: /* uint 8/16/32/64, int 8/16/32/64, floats */
                case 0xd0:
                    skip = 1;
                    break;
                case 0xcd:
                case 0xd1:
                    skip = 2;
                    break;
                case 0xca:
                case 0xce:
                case 0xd2:
                    skip = 4;
                    break;
                case 0xcb:
                case 0xcf:
                case 0xd3:
                    skip = 8;
                    break;
                case 0xd4: /* fixext 1/2/4/8/16: type byte + data */
                    skip = 2;
                    break;
                case 0xd5:
                    skip = 3;
                    break;
                case 0xd6:
                    skip = 5;
                    break;
                case 0xd7:
                    skip = 9;
                    break;
                case 0xd8:
                    skip = 17;
                    break;
                case 0xdc: /* array 16/32, map 16/32 */
                case 0xdd:
                case 0xde:
                case 0xdf: {
                    size_t n = (b == 0xdc || b == 0xde) ? 2 : 4;
                    if (size - off < n)
                        return -2;
                    children = s_read_be (p + off, n);
                    if (b >= 0xde)
                        children *= 2;
                    off += n;
                    break;
                }
                default: /* 0xc1 is never used */
                    return -2;
            }
        if (width) {
            if (size - off < width)
                return -2;
            skip += s_read_be (p + off, width);
            off += width;
        }
        if (skip > size - off)
            return -2;
        off += (size_t)skip;
        pending += children;
    }
    return 0;
}

/*  Unpacks a body and checks the envelope: an array whose first element
    is our version, followed by at least min and at most max fields (the
    ones after min are the trailing optional ones an older peer did not
    know). Sets *items and *count, the fields present. */
static int
s_open_body (msgpack_unpacked *up, const void *data, size_t size, size_t min,
             size_t max, const msgpack_object **items, size_t *count)
{
    if (s_scan_body ((const unsigned char *)data, size) != 0)
        return s_fail ("truncated or invalid msgpack", NULL);
    size_t off = 0;
    msgpack_unpack_return rc =
        msgpack_unpack_next (up, (const char *)data, size, &off);
    if (rc != MSGPACK_UNPACK_SUCCESS)
        return s_fail ("truncated or invalid msgpack", NULL);
    if (off != size)
        return s_fail ("trailing bytes", NULL);
    const msgpack_object *root = &up->data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 1)
        return s_fail ("body is not an array", NULL);
    uint64_t version;
    if (s_get_U64 (&root->via.array.ptr[0], &version, UINT32_MAX) != 0)
        return s_fail ("version is not an integer", NULL);
    if (version != RCD_PROTO_VERSION)
        return s_fail ("unknown version", NULL);
    if (root->via.array.size < min + 1 || root->via.array.size > max + 1)
        return s_fail ("wrong number of fields", NULL);
    *items = root->via.array.ptr + 1;
    *count = root->via.array.size - 1;
    return 0;
}

/*  Sends topic + body as one two-frame message without building a zmsg.
    Honours the socket's send timeout; multipart sends are atomic. */
static int
s_send_frames (zsock_t *sock, const char *topic, const char *data, size_t size)
{
    void *handle = zsock_resolve (sock);
    if (zmq_send (handle, topic, strlen (topic), ZMQ_SNDMORE) < 0)
        return -1;
    if (zmq_send (handle, data, size, 0) < 0)
        return -1;
    return 0;
}

#define RCD_COUNT_FIELD(kind, fname, max, req) +1
#define RCD_PACK_FIELD(kind, fname, max, req)                                  \
    if (s_pack_##kind (&pk, msg->fname) != 0)                                  \
        goto oom;

/*  Before encoding: every string field must be one decode accepts. */
#define RCD_VALID_FIELD(kind, fname, max, req)                                 \
    if (!RCD_VALID_##kind (msg->fname, max, req)) {                            \
        (void)s_fail ("cannot encode field", #fname);                          \
        return -1;                                                             \
    }
#define RCD_VALID_U32(v, max, req) true
#define RCD_VALID_U64(v, max, req) true
#define RCD_VALID_I64(v, max, req) true
#define RCD_VALID_STR(v, max, req) s_valid_STR (v, max, RCD_REQ_##req)

/*  The fewest fields a body may carry: up to the last REQ one. */
#define RCD_MIN_FIELD(kind, fname, max, req)                                   \
    nfields++;                                                                 \
    if (RCD_REQ_##req)                                                         \
        nmin = nfields;

/*  Pass 1 of decode: check each element present, sum string sizes. */
#define RCD_CHECK_FIELD(kind, fname, max, req)                                 \
    if (i < count && RCD_CHECK_##kind (&items[i], max, req) != 0) {            \
        rc = s_fail ("bad field", #fname);                                     \
        goto cleanup;                                                          \
    }                                                                          \
    i++;
#define RCD_CHECK_U32(o, max, req) s_get_U64 (o, &u64, UINT32_MAX)
#define RCD_CHECK_U64(o, max, req) s_get_U64 (o, &u64, UINT64_MAX)
#define RCD_CHECK_I64(o, max, req) s_get_I64 (o, &i64)
#define RCD_CHECK_STR(o, max, req)                                             \
    s_check_STR (o, max, RCD_REQ_##req, &strtotal)
#define RCD_REQ_REQ true
#define RCD_REQ_OPT false

/*  Pass 2 of decode: copy values out; absent ones stay zero (NULL). */
#define RCD_STORE_FIELD(kind, fname, max, req)                                 \
    if (i < count)                                                             \
        RCD_STORE_##kind (msg->fname, &items[i]);                              \
    i++;
#define RCD_STORE_U32(dst, o) dst = (uint32_t)(o)->via.u64
#define RCD_STORE_U64(dst, o) dst = (o)->via.u64
#define RCD_STORE_I64(dst, o) (void)s_get_I64 (o, &dst)
#define RCD_STORE_STR(dst, o) dst = s_copy_STR (o, &cursor)

#define RCD_PROTO_DEFINE(name, topic, type)                                    \
    int rcd_##name##_encode (const rcd_##name##_t *msg, char **data_p,         \
                             size_t *size_p)                                   \
    {                                                                          \
        RCD_PROTO_FIELDS_##name (RCD_VALID_FIELD);                             \
        msgpack_sbuffer sbuf;                                                  \
        msgpack_packer pk;                                                     \
        msgpack_sbuffer_init (&sbuf);                                          \
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);               \
        if (msgpack_pack_array (                                               \
                &pk, 1 RCD_PROTO_FIELDS_##name (RCD_COUNT_FIELD)) != 0 ||      \
            msgpack_pack_uint32 (&pk, RCD_PROTO_VERSION) != 0)                 \
            goto oom;                                                          \
        RCD_PROTO_FIELDS_##name (RCD_PACK_FIELD);                              \
        *size_p = sbuf.size;                                                   \
        *data_p = msgpack_sbuffer_release (&sbuf);                             \
        return 0;                                                              \
    oom: /* the buffer could not grow: send nothing, not half a body */        \
        msgpack_sbuffer_destroy (&sbuf);                                       \
        (void)s_fail ("out of memory encoding", #name);                        \
        return -1;                                                             \
    }                                                                          \
                                                                               \
    int rcd_##name##_decode (const void *data, size_t size,                    \
                             rcd_##name##_t *msg)                              \
    {                                                                          \
        memset (msg, 0, sizeof *msg);                                          \
        msgpack_unpacked up;                                                   \
        msgpack_unpacked_init (&up);                                           \
        const msgpack_object *items = NULL;                                    \
        uint64_t u64;                                                          \
        int64_t i64;                                                           \
        size_t strtotal = 0, i = 0, count = 0, nfields = 0, nmin = 0;          \
        (void)u64;                                                             \
        (void)i64;                                                             \
        RCD_PROTO_FIELDS_##name (RCD_MIN_FIELD);                               \
        int rc = s_open_body (&up, data, size, nmin, nfields, &items, &count); \
        if (rc != 0)                                                           \
            goto cleanup;                                                      \
        RCD_PROTO_FIELDS_##name (RCD_CHECK_FIELD);                             \
        char *cursor = NULL;                                                   \
        if (strtotal) {                                                        \
            msg->strbuf_ = malloc (strtotal);                                  \
            if (!msg->strbuf_) {                                               \
                rc = -1;                                                       \
                goto cleanup;                                                  \
            }                                                                  \
            cursor = msg->strbuf_;                                             \
        }                                                                      \
        i = 0;                                                                 \
        RCD_PROTO_FIELDS_##name (RCD_STORE_FIELD);                             \
        (void)cursor;                                                          \
    cleanup:                                                                   \
        msgpack_unpacked_destroy (&up);                                        \
        return rc;                                                             \
    }                                                                          \
                                                                               \
    int rcd_##name##_send (const rcd_##name##_t *msg, zsock_t *sock)           \
    {                                                                          \
        char *data = NULL;                                                     \
        size_t size = 0;                                                       \
        if (rcd_##name##_encode (msg, &data, &size) != 0)                      \
            return -1;                                                         \
        int rc = s_send_frames (sock, topic, data, size);                      \
        free (data);                                                           \
        return rc;                                                             \
    }                                                                          \
                                                                               \
    void rcd_##name##_clear (rcd_##name##_t *msg)                              \
    {                                                                          \
        if (!msg)                                                              \
            return;                                                            \
        free (msg->strbuf_);                                                   \
        memset (msg, 0, sizeof *msg);                                          \
    }

RCD_PROTO_MESSAGES (RCD_PROTO_DEFINE)

const char *
rcd_proto_topic (rcd_msg_type_t type)
{
    switch (type) {
#define RCD_PROTO_TOPIC_CASE(name, topic, type)                                \
    case type:                                                                 \
        return topic;
        RCD_PROTO_MESSAGES (RCD_PROTO_TOPIC_CASE)
#undef RCD_PROTO_TOPIC_CASE
        default:
            return NULL;
    }
}

int
rcd_proto_decode (const char *topic, size_t topic_size, const void *data,
                  size_t size, rcd_proto_msg_t *msg)
{
    memset (msg, 0, sizeof *msg);
#define RCD_PROTO_DECODE_CASE(name, tname, ttype)                              \
    if (topic_size == sizeof (tname) - 1 &&                                    \
        memcmp (topic, tname, topic_size) == 0) {                              \
        msg->type = ttype;                                                     \
        return rcd_##name##_decode (data, size, &msg->u.name);                 \
    }
    RCD_PROTO_MESSAGES (RCD_PROTO_DECODE_CASE)
#undef RCD_PROTO_DECODE_CASE
    return s_fail ("unknown topic", NULL);
}

int
rcd_proto_recv (zsock_t *sock, rcd_proto_msg_t *msg)
{
    /* whatever happens, msg is safe to clear afterwards */
    memset (msg, 0, sizeof *msg);
    zmsg_t *zmsg = zmsg_recv (sock);
    if (!zmsg)
        return -1;
    int rc;
    if (zmsg_size (zmsg) != 2)
        rc = s_fail ("expected two frames", NULL);
    else {
        zframe_t *topic = zmsg_first (zmsg);
        zframe_t *body = zmsg_next (zmsg);
        rc = rcd_proto_decode ((const char *)zframe_data (topic),
                               zframe_size (topic), zframe_data (body),
                               zframe_size (body), msg);
    }
    zmsg_destroy (&zmsg);
    return rc;
}

void
rcd_proto_msg_clear (rcd_proto_msg_t *msg)
{
    if (!msg)
        return;
    switch (msg->type) {
#define RCD_PROTO_CLEAR_CASE(name, topic, type)                                \
    case type:                                                                 \
        rcd_##name##_clear (&msg->u.name);                                     \
        break;
        RCD_PROTO_MESSAGES (RCD_PROTO_CLEAR_CASE)
#undef RCD_PROTO_CLEAR_CASE
        default:
            break;
    }
}
