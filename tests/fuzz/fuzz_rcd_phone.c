/*  fuzz_rcd_phone - libFuzzer target for the phone normaliser.

    Properties checked on every input: no crash or sanitizer report; a
    success is valid E.164 ('+' then 8-15 digits, no leading 0) that
    normalises to itself (idempotence); a failure gives a reason; the
    WhatsApp alias of a success normalises back to the same number. */
#include "rcd_phone.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size > 256)
        return 0;
    char input[257];
    memcpy (input, data, size);
    input[size] = 0;
    char out[RCD_PHONE_MAX], again[RCD_PHONE_MAX], alias[RCD_PHONE_MAX];
    const char *why = NULL;
    int rc = rcd_phone_normalize (input, "55", out, sizeof out, &why);
    if (rc != 0) {
        if (rc != -2 || !why || !*why)
            abort ();
        return 0;
    }
    size_t len = strlen (out);
    if (out[0] != '+' || len < 9 || len > 16 || out[1] == '0')
        abort ();
    for (size_t i = 1; i < len; i++)
        if (out[i] < '0' || out[i] > '9')
            abort ();
    if (rcd_phone_normalize (out, "55", again, sizeof again, &why) != 0 ||
        strcmp (out, again) != 0)
        abort ();
    if (rcd_phone_whatsapp_alias (out, alias, sizeof alias) == 0 &&
        (rcd_phone_normalize (alias, "55", again, sizeof again, &why) != 0 ||
         strcmp (again, out) != 0))
        abort ();
    return 0;
}
