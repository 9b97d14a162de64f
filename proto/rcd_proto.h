/*  rcd_proto.h - structs, encoders and decoders derived from
    rcd_proto_model.h.

    For each message NAME in the model there is:
      rcd_NAME_t                     the decoded struct; STR fields are
                                     NUL-terminated and owned by the struct
      rcd_NAME_encode (msg, &data, &size)   msgpack body; caller frees data
      rcd_NAME_decode (data, size, msg)     0, or -2 for a malformed body
      rcd_NAME_send (msg, sock)      topic + body frames on a socket
      rcd_NAME_clear (msg)           frees the strings, zeroes the struct
    rcd_proto_recv () reads one message of any type from a socket.
*/
#ifndef RCD_PROTO_H_INCLUDED
#define RCD_PROTO_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcd_proto_model.h"

#define RCD_PROTO_CTYPE_U32 uint32_t
#define RCD_PROTO_CTYPE_U64 uint64_t
#define RCD_PROTO_CTYPE_I64 int64_t
#define RCD_PROTO_CTYPE_STR char *

typedef enum {
#define RCD_PROTO_ENUM(name, topic, type) type,
    RCD_PROTO_MESSAGES (RCD_PROTO_ENUM)
#undef RCD_PROTO_ENUM
        RCD_MSG_COUNT
} rcd_msg_type_t;

#define RCD_PROTO_MEMBER(kind, fname, max, req) RCD_PROTO_CTYPE_##kind fname;
#define RCD_PROTO_STRUCT(name, topic, type)                                    \
    typedef struct {                                                           \
        RCD_PROTO_FIELDS_##name (RCD_PROTO_MEMBER) char *strbuf_;              \
    } rcd_##name##_t;
RCD_PROTO_MESSAGES (RCD_PROTO_STRUCT)
#undef RCD_PROTO_STRUCT
#undef RCD_PROTO_MEMBER

#define RCD_PROTO_DECLARE(name, topic, type)                                   \
    int rcd_##name##_encode (const rcd_##name##_t *msg, char **data_p,         \
                             size_t *size_p)                                   \
        __attribute__ ((warn_unused_result));                                  \
    int rcd_##name##_decode (const void *data, size_t size,                    \
                             rcd_##name##_t *msg)                              \
        __attribute__ ((warn_unused_result));                                  \
    int rcd_##name##_send (const rcd_##name##_t *msg, zsock_t *sock);          \
    void rcd_##name##_clear (rcd_##name##_t *msg);
RCD_PROTO_MESSAGES (RCD_PROTO_DECLARE)
#undef RCD_PROTO_DECLARE

/*  A received message of any type. */
typedef struct {
    rcd_msg_type_t type;
    union {
#define RCD_PROTO_UNION(name, topic, type) rcd_##name##_t name;
        RCD_PROTO_MESSAGES (RCD_PROTO_UNION)
#undef RCD_PROTO_UNION
    } u;
} rcd_proto_msg_t;

/*  Receives one message (blocking per the socket's timeout). Returns 0 and
    fills msg (call rcd_proto_msg_clear after), -1 when nothing could be
    received (interrupted, timeout), -2 for a malformed message, which has
    been consumed and dropped: count it. */
int
rcd_proto_recv (zsock_t *sock, rcd_proto_msg_t *msg);

/*  Decodes a topic + body pair already read from a socket. */
int
rcd_proto_decode (const char *topic, size_t topic_size, const void *data,
                  size_t size, rcd_proto_msg_t *msg);

void
rcd_proto_msg_clear (rcd_proto_msg_t *msg);

/*  Topic string of a message type. Borrowed. */
const char *
rcd_proto_topic (rcd_msg_type_t type);

/*  Why the last decode on this thread failed. Borrowed. */
const char *
rcd_proto_last_error (void);

#endif
