/*  fuzz_rcd_proto - libFuzzer target for the wire decoders.

    The first byte picks a message type, the rest is the body. Every
    decode must either fail with -2 or give a struct that encodes and
    decodes back to the same bytes; nothing may crash or leak. */
#include "rcd_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    rcd_msg_type_t type = (rcd_msg_type_t)(data[0] % RCD_MSG_COUNT);
    const char *topic = rcd_proto_topic (type);
    rcd_proto_msg_t msg;
    int rc = rcd_proto_decode (topic, strlen (topic), data + 1, size - 1, &msg);
    if (rc == 0) {
        /* a decoded message re-encodes to a body that decodes again */
        char *body = NULL;
        size_t body_size = 0;
        int enc = -1;
        switch (msg.type) {
#define FUZZ_ENCODE_CASE(name, tname, ttype)                                   \
    case ttype:                                                                \
        enc = rcd_##name##_encode (&msg.u.name, &body, &body_size);            \
        break;
            RCD_PROTO_MESSAGES (FUZZ_ENCODE_CASE)
#undef FUZZ_ENCODE_CASE
            default:
                break;
        }
        if (enc != 0)
            abort ();
        rcd_proto_msg_t again;
        if (rcd_proto_decode (topic, strlen (topic), body, body_size, &again) !=
            0)
            abort ();
        rcd_proto_msg_clear (&again);
        free (body);
    }
    else if (rc != -2 && rc != -1)
        abort ();
    rcd_proto_msg_clear (&msg);
    return 0;
}
