/*  rcd_log.h - JSON-lines logging to stderr.

    Every line is one JSON object: {"ts", "level", "service", "msg", ...}
    with extra fields given as a jansson pack format, e.g.
        rcd_log_info ("claimed", "{s:i, s:s}", "count", n, "phone", masked);
    Phone numbers must go through rcd_log_mask_phone first. Thread-safe:
    each line is written with one fwrite under a lock.
*/
#ifndef RCD_LOG_H_INCLUDED
#define RCD_LOG_H_INCLUDED

#include <jansson.h> /* json_int_t and the pack format of the fields */
#include <stdarg.h>
#include <stddef.h>

typedef enum {
    RCD_LOG_DEBUG = 0,
    RCD_LOG_INFO,
    RCD_LOG_WARN,
    RCD_LOG_ERROR
} rcd_log_level_t;

/*  Sets the service name put on every line and the minimum level
    (RECADO_LOG_LEVEL: debug, info, warn, error). Borrowed; must outlive
    logging (a string literal). */
void
rcd_log_init (const char *service);

void
rcd_log_set_level (rcd_log_level_t level);

/*  Writes one line. fields is NULL or a jansson pack format producing an
    object whose keys are added to the line. */
void
rcd_log_write (rcd_log_level_t level, const char *msg, const char *fields, ...);

#define rcd_log_debug(...) rcd_log_write (RCD_LOG_DEBUG, __VA_ARGS__, NULL)
#define rcd_log_info(...)  rcd_log_write (RCD_LOG_INFO, __VA_ARGS__, NULL)
#define rcd_log_warn(...)  rcd_log_write (RCD_LOG_WARN, __VA_ARGS__, NULL)
#define rcd_log_error(...) rcd_log_write (RCD_LOG_ERROR, __VA_ARGS__, NULL)

/*  A printf-style logger for libraries that report through a callback
    (libmicrohttpd's MHD_OPTION_EXTERNAL_LOGGER): one warn line whose msg
    is cls (a string naming the library) and whose "detail" is the
    formatted text, cut at the first newline. */
__attribute__ ((format (printf, 2, 0))) void
rcd_log_external (void *cls, const char *fmt, va_list ap);

/*  Masks a phone number for logs: keeps the '+', country code and first
    two digits and the last four ("+5511*****5678"). Writes into out (at
    least 33 bytes) and returns it. */
char *
rcd_log_mask_phone (const char *phone, char *out, size_t out_size);

#endif
