/*  rcd_proto_model.h - the wire model: every ZeroMQ message recado sends.

    This is the single definition of every frame. Each message is two
    frames: a topic string and a msgpack array body whose first element is
    the schema version (RCD_PROTO_VERSION). Encoders, decoders, structs and
    the codec tests are all derived from the lists below; add a field here
    and nowhere else.

    Field kinds:
      U32, U64, I64   unsigned/signed integers (msgpack int of any width
                      that fits)
      STR             UTF-8 string, at most MAX bytes; OPT fields may be nil
                      (decoded as NULL)

    Changing a message: a new field goes at the end of its list, OPT. A
    body may stop before its trailing OPT fields (it comes from a peer
    built before they were added) and decodes them as nil; a body with
    more elements than the list is still malformed. So a process built
    with the new field reads old and new peers alike, while an old one
    drops the longer body: upgrade the processes that receive a message
    (for dispatch, the sender service) before those that send it (the
    scheduler). Anything else (removing, reordering or retyping a field,
    a new REQ field) is a new RCD_PROTO_VERSION.
*/
#ifndef RCD_PROTO_MODEL_H_INCLUDED
#define RCD_PROTO_MODEL_H_INCLUDED

#define RCD_PROTO_VERSION 1

/*  M (name, topic, TYPE_ENUM) */
#define RCD_PROTO_MESSAGES(M)                                                  \
    M (dispatch, "dispatch", RCD_MSG_DISPATCH)                                 \
    M (nudge, "nudge", RCD_MSG_NUDGE)                                          \
    M (heartbeat, "heartbeat", RCD_MSG_HEARTBEAT)                              \
    M (event, "event", RCD_MSG_EVENT)

/*  F (KIND, name, MAX, REQ|OPT)
    scheduler -> sender (PUSH/PULL): one claimed message to send. */
#define RCD_PROTO_FIELDS_dispatch(F)                                           \
    F (U64, id, 0, REQ)             /* messages.id */                          \
    F (U32, attempt, 0, REQ)        /* fencing token: messages.attempts */     \
    F (I64, lease_until_ms, 0, REQ) /* unix ms; drop unsent after it */        \
    F (U64, tenant_id, 0, REQ)                                                 \
    F (U64, instance_id, 0, REQ) /* instances.id to send through */            \
    F (STR, to, 32, REQ)         /* E.164 recipient */                         \
    F (STR, text, 65536, REQ)    /* rendered text */                           \
    F (U32, delay_ms, 0, REQ)    /* typing delay for the gateway */            \
    F (STR, trace_id, 32, OPT)   /* messages.trace_id (rcd_trace.h) */         \
    F (U32, parts_sent, 0, OPT)  /* long text: parts already accepted */       \
    F (U32, part_limit, 0, OPT)  /* chars a part, 0: sender's setting */

/*  ingestor, recovery -> scheduler (PUSH/PULL): there may be due work. */
#define RCD_PROTO_FIELDS_nudge(F)                                              \
    F (U64, tenant_id, 0, REQ) /* 0: any tenant */                             \
    F (U32, count, 0, REQ)     /* messages created or released */

/*  every service -> monitor (PUB/SUB), once a second. */
#define RCD_PROTO_FIELDS_heartbeat(F)                                          \
    F (STR, service, 32, REQ)                                                  \
    F (STR, replica, 64, REQ) /* hostname:pid, unique per process */           \
    F (U64, seq, 0, REQ)                                                       \
    F (U64, uptime_ms, 0, REQ)                                                 \
    F (STR, state, 32, OPT) /* e.g. "active", "standby", "draining" */

/*  every service -> monitor (PUB/SUB): something happened COUNT times. */
#define RCD_PROTO_FIELDS_event(F)                                              \
    F (STR, service, 32, REQ)                                                  \
    F (STR, replica, 64, REQ)                                                  \
    F (STR, kind, 64, REQ) /* dotted name, e.g. "message.sent" */              \
    F (U64, count, 0, REQ)                                                     \
    F (U64, tenant_id, 0, REQ) /* 0: not tenant specific */                    \
    F (I64, value, 0, REQ)     /* kind-specific, e.g. latency in us */         \
    F (STR, detail, 1024, OPT)

#endif
