/*  rcd_phone.h - phone numbers to E.164, with Brazil's rules.

    What rcd_phone_normalize accepts (default country "55"):
      - separators anywhere: space, tab, '-', '.', '/', '(' and ')';
      - an international prefix: a leading '+' or "00", followed directly
        by the country code ("00 55 11 ..."; the Brazilian "00 + carrier"
        dialling form is not recognised);
      - for Brazil (+55, or no prefix with the default country 55):
          DDD + number        "11 91234-5678", "(11) 1234-5678"
          0 + DDD + number    "011 91234-5678" (trunk prefix)
          0 + carrier + DDD + number
                              "0 21 11 91234-5678" (the operator-selection
                              form: 0 and a two-digit carrier code are
                              dropped when 12 or 13 digits follow the 0)
          55 + DDD + number   "5511912345678" (the country code without
                              '+': recognised by length, 12 or 13 digits)
        and "+55 (011) ..." (a trunk 0 written after the country code).
        The DDD is two digits 11-99 without a 0 digit. The number is
        8 digits (landline 2-5...; a mobile 6-9... written without the
        ninth digit gets the 9 added) or 9 digits starting with 9. The
        canonical form always carries the mobile 9.
      - other countries: '+' (or "00") and 8 to 15 digits, the first not
        0, kept as they are (no national rules).
      - no prefix and a default country other than 55: the default
        country code is prepended and the 8-15 digit rule applies; with
        default_country NULL a number without '+' or "00" is rejected.
    Rejected, with a reason: empty input, letters (extensions such as
    "ramal 12" included), other characters, a '+' not at the start, too
    few or too many digits, an invalid DDD or a number that cannot be
    Brazilian.
*/
#ifndef RCD_PHONE_H_INCLUDED
#define RCD_PHONE_H_INCLUDED

#include <stddef.h>

/*  Longest E.164 text with the NUL: '+', 15 digits, NUL. */
#define RCD_PHONE_MAX 17

/*  Normalises input to E.164 in out ("+5511912345678"). default_country
    is the calling code used when the input has no international prefix
    ("55"), or NULL. Returns 0; -2 when input is not a usable phone
    number, with *why (when why is not NULL) set to a static human
    reason; -1 when out_size is below RCD_PHONE_MAX. */
int
rcd_phone_normalize (const char *input, const char *default_country, char *out,
                     size_t out_size, const char **why)
    __attribute__ ((warn_unused_result));

/*  The form WhatsApp may know a canonical Brazilian mobile by: without
    the ninth digit ("+5531912345678" -> "+553112345678"), which older
    accounts are registered with. Returns 0 and writes it to out; 1 when
    e164 has no such form (not a Brazilian mobile in canonical form: out
    then holds a copy of e164); -1 when out_size is below RCD_PHONE_MAX. */
int
rcd_phone_whatsapp_alias (const char *e164, char *out, size_t out_size);

#endif
