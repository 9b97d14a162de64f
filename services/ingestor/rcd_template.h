/*  rcd_template.h - {{var}} placeholders: checking and filling them.

    A placeholder is "{{" name "}}", the name 1 to 64 letters, digits or
    '_', spaces allowed around it ("{{ name }}"). Text outside
    placeholders is copied as is; a "{{" that does not open a well-formed
    placeholder makes the template invalid, so a typo is caught when the
    template is stored, not when a customer reads "{{nmae" on WhatsApp.
*/
#ifndef RCD_TEMPLATE_H_INCLUDED
#define RCD_TEMPLATE_H_INCLUDED

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*  Longest placeholder name. */
#define RCD_TEMPLATE_NAME_MAX 64

/*  Checks the placeholders of text. Returns 0, or -2 with *why set to a
    static explanation. */
int
rcd_template_check (const char *text, const char **why);

/*  Fills the placeholders of text with values found in scopes[0..n), the
    first scope holding the name winning (NULL scopes are skipped). A
    value is a string, copied as is, or a number, written in decimal;
    any other value counts as missing. Returns 0 with *out_p (caller
    frees), -2 when a placeholder has no value (its name is copied into
    missing), or -1 when out of memory. */
int
rcd_template_render (const char *text, json_t *const *scopes, size_t nscopes,
                     char **out_p, char *missing, size_t missing_size);

/*  Writes cents as Brazilian reais: "R$ 1.234,56" (negative: "-R$ 5,00").
    Returns the length written (truncated like snprintf). */
int
rcd_template_brl (int64_t cents, char *buf, size_t size);

#endif
