/*  rcd_log.h - JSON-lines logging to stderr.

    Every line is one JSON object, its keys in this order:
        {"time":"2026-11-22T12:00:00.123Z","level":"info",
         "service":"sender","event":"message.sent",
         "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",
         "fields":{"message_id":42,"to":"+5511*****5678"}}
      time      RFC 3339, UTC, milliseconds
      level     debug, info, warn, error
      service   the process (rcd_log_init)
      event     what happened: for a message's life the dotted names of
                the monitor's events (message.accepted, message.sent,
                message.retry, message.failed, ...), else a short phrase
      trace_id  only when there is one: the "trace_id" given among the
                fields, else the thread's current trace (rcd_log_set_trace);
                32 hex digits (rcd_trace.h)
      fields    the rest of the fields, given as a jansson pack format;
                absent when there are none. Nested, so no field can
                shadow the keys above
      log_error only when the fields could not be built (the line is
                still written)
    e.g. rcd_log_info ("claimed", "{s:i, s:s}", "count", n, "to", masked);
    Phone numbers must go through rcd_log_mask_phone first. Thread-safe:
    each line is written with one fwrite under a lock.
*/
#ifndef RCD_LOG_H_INCLUDED
#define RCD_LOG_H_INCLUDED

#include <jansson.h> /* json_int_t and the pack format of the fields */
#include <stdarg.h>
#include <stdbool.h>
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

/*  Whether lines of this level are written: to skip building costly
    fields for a line that would be dropped. */
bool
rcd_log_enabled (rcd_log_level_t level);

/*  Writes one line. fields is NULL or a jansson pack format producing an
    object: its "trace_id" (when not null) becomes the line's, the rest
    its "fields". */
void
rcd_log_write (rcd_log_level_t level, const char *msg, const char *fields, ...);

#define rcd_log_debug(...) rcd_log_write (RCD_LOG_DEBUG, __VA_ARGS__, NULL)
#define rcd_log_info(...)  rcd_log_write (RCD_LOG_INFO, __VA_ARGS__, NULL)
#define rcd_log_warn(...)  rcd_log_write (RCD_LOG_WARN, __VA_ARGS__, NULL)
#define rcd_log_error(...) rcd_log_write (RCD_LOG_ERROR, __VA_ARGS__, NULL)

/*  Sets (a copy of) the trace id put on this thread's lines that give
    none among their fields, e.g. for the length of one HTTP request;
    NULL or "" clears it. */
void
rcd_log_set_trace (const char *trace_id);

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
