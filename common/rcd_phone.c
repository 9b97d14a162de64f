/*  rcd_phone.c - phone numbers to E.164 (see rcd_phone.h for what is
    accepted and why).

    Works on the digits alone once the separators are gone: the length of
    what remains tells the forms apart (trunk 0, carrier code, country
    code written without '+'), the way Brazilian operators' own number
    plans do.
*/
#include "rcd_phone.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/*  Inputs longer than this are not phone numbers, whatever they hold. */
#define S_INPUT_MAX 64
/*  Digits kept while scanning; more is always too long. */
#define S_DIGITS_MAX 24

static bool
s_is_separator (char c)
{
    return c == ' ' || c == '\t' || c == '-' || c == '.' || c == '/' ||
           c == '(' || c == ')';
}

static bool
s_is_letter (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*  Sets *why and returns -2: the one way out for bad input. */
static int
s_reject (const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return -2;
}

/*  Brazilian national significant number (after +55): DDD + 8 or 9
    digits. */
static int
s_brazil (const char *d, size_t n, char *out, size_t out_size, const char **why)
{
    if (n < 10)
        return s_reject (why, "too short for a Brazilian number (area code "
                              "and 8 or 9 digits)");
    if (n > 11)
        return s_reject (why, "too long for a Brazilian number (area code "
                              "and 8 or 9 digits)");
    if (d[0] < '1' || d[0] > '9' || d[1] < '1' || d[1] > '9')
        return s_reject (why, "invalid area code (DDD 11-99 without a 0)");
    const char *sub = d + 2;
    if (n == 11) {
        if (sub[0] != '9')
            return s_reject (why, "a 9-digit Brazilian number must start "
                                  "with 9");
        snprintf (out, out_size, "+55%.2s%.9s", d, sub);
        return 0;
    }
    if (sub[0] >= '2' && sub[0] <= '5') { /* landline: kept as is */
        snprintf (out, out_size, "+55%.2s%.8s", d, sub);
        return 0;
    }
    if (sub[0] >= '6' && sub[0] <= '9') { /* mobile without the ninth 9 */
        snprintf (out, out_size, "+55%.2s9%.8s", d, sub);
        return 0;
    }
    return s_reject (why, "an 8-digit Brazilian number must start with 2-9");
}

/*  A Brazilian number written without an international prefix. */
static int
s_brazil_national (const char *d, size_t n, char *out, size_t out_size,
                   const char **why)
{
    if (d[0] == '0') {
        if (n == 11 || n == 12) { /* 0 + DDD + number */
            d += 1;
            n -= 1;
        }
        else if (n == 13 || n == 14) { /* 0 + carrier + DDD + number */
            d += 3;
            n -= 3;
        }
        else
            return s_reject (why, n < 11 ? "too short for a Brazilian "
                                           "number (area code and 8 or 9 "
                                           "digits)"
                                         : "too long for a Brazilian number");
    }
    else if ((n == 12 || n == 13) && d[0] == '5' && d[1] == '5') {
        d += 2; /* the country code without '+' */
        n -= 2;
    }
    else if (n == 8 || n == 9)
        return s_reject (why, "missing area code (DDD)");
    return s_brazil (d, n, out, out_size, why);
}

/*  Any other country: the digits as they are, within E.164's limits. */
static int
s_generic (const char *cc, const char *d, size_t n, char *out, size_t out_size,
           const char **why)
{
    size_t total = strlen (cc) + n;
    if (total < 8)
        return s_reject (why, "too short (at least 8 digits with the "
                              "country code)");
    if (total > 15)
        return s_reject (why, "too long (at most 15 digits with the country "
                              "code)");
    snprintf (out, out_size, "+%s%.*s", cc, (int)n, d);
    if (out[1] == '0')
        return s_reject (why, "a country code cannot start with 0");
    return 0;
}

int
rcd_phone_normalize (const char *input, const char *default_country, char *out,
                     size_t out_size, const char **why)
{
    if (!out || out_size < RCD_PHONE_MAX)
        return -1;
    out[0] = 0;
    if (why)
        *why = NULL;
    if (!input)
        return s_reject (why, "empty");
    if (strlen (input) > S_INPUT_MAX)
        return s_reject (why, "too long");

    char digits[S_DIGITS_MAX + 1];
    size_t n = 0;
    bool plus = false;
    for (const char *p = input; *p; p++) {
        char c = *p;
        if (s_is_separator (c))
            continue;
        if (c == '+') {
            if (plus || n > 0)
                return s_reject (why, "'+' is allowed only at the start");
            plus = true;
        }
        else if (c >= '0' && c <= '9') {
            if (n == S_DIGITS_MAX)
                return s_reject (why, "too many digits");
            digits[n++] = c;
        }
        else if (s_is_letter (c))
            return s_reject (why, "contains letters");
        else
            return s_reject (why, "contains a character that is not a digit "
                                  "or a separator");
    }
    digits[n] = 0;
    if (n == 0)
        return s_reject (why, plus ? "no digits after '+'" : "empty");

    const char *d = digits;
    bool international = plus;
    if (!plus && n > 2 && d[0] == '0' && d[1] == '0') {
        international = true; /* "00" international prefix */
        d += 2;
        n -= 2;
    }
    if (international) {
        if (d[0] == '0')
            return s_reject (why, "a country code cannot start with 0");
        if (n >= 2 && d[0] == '5' && d[1] == '5') {
            d += 2;
            n -= 2;
            if ((n == 11 || n == 12) && d[0] == '0') {
                d++; /* "+55 (011) ...": a trunk 0 kept by mistake */
                n--;
            }
            return s_brazil (d, n, out, out_size, why);
        }
        return s_generic ("", d, n, out, out_size, why);
    }
    if (!default_country || !*default_country)
        return s_reject (why, "missing country code (start with +)");
    if (strcmp (default_country, "55") == 0)
        return s_brazil_national (d, n, out, out_size, why);
    return s_generic (default_country, d, n, out, out_size, why);
}

int
rcd_phone_whatsapp_alias (const char *e164, char *out, size_t out_size)
{
    if (!out || out_size < RCD_PHONE_MAX)
        return -1;
    snprintf (out, out_size, "%s", e164 ? e164 : "");
    if (!e164 || strlen (e164) != 14 || strncmp (e164, "+55", 3) != 0)
        return 1;
    for (const char *p = e164 + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 1;
    /* +55 DDD 9 X...: only numbers whose 8-digit form was a mobile (6-9)
       can have an account registered without the 9; the alias then
       normalises back to the canonical form. */
    if (e164[5] != '9' || e164[6] < '6')
        return 1;
    snprintf (out, out_size, "+55%.2s%s", e164 + 3, e164 + 6);
    return 0;
}
