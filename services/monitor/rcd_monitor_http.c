/*  rcd_monitor_http.c - published documents served by libmicrohttpd. */
#include "rcd_monitor_http.h"
#include "rcd_dashboard.h"
#include "rcd_log.h"

#include <assert.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RCD_MONITOR_HTTP_CONNECTIONS 64
#define RCD_MONITOR_HTTP_TIMEOUT_S   10

/*  One published document. */
typedef struct {
    char *text;          /* owned; NULL before the first publish */
    size_t size;         /* strlen (text) */
    unsigned int status; /* HTTP status to answer with */
} s_doc_t;

struct rcd_monitor_http {
    struct MHD_Daemon *daemon; /* serving thread */
    pthread_mutex_t lock;      /* guards docs */
    s_doc_t docs[RCD_MONITOR_DOC_COUNT];
};

/*  Path, document and content type of each JSON or text route. */
static const struct {
    const char *path;
    rcd_monitor_doc_t doc;
    const char *type;
} s_routes[] = {
    {"/metrics", RCD_MONITOR_DOC_METRICS, "text/plain; version=0.0.4"},
    {"/health", RCD_MONITOR_DOC_HEALTH, "application/json"},
    {"/alerts", RCD_MONITOR_DOC_ALERTS, "application/json"},
    {"/queue-stats", RCD_MONITOR_DOC_QUEUE_STATS, "application/json"},
};

static enum MHD_Result
s_answer (struct MHD_Connection *conn, unsigned int status, const char *type,
          const char *text, size_t size, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *res =
        MHD_create_response_from_buffer (size, (void *)text, mode);
    if (!res) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free ((void *)text);
        return MHD_NO;
    }
    MHD_add_response_header (res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response (conn, status, res);
    MHD_destroy_response (res);
    return rc;
}

/*  The JSON error body of API.md; code and message are constants. */
static enum MHD_Result
s_answer_error (struct MHD_Connection *conn, unsigned int status,
                const char *code, const char *message)
{
    char body[256];
    int n = snprintf (body, sizeof body,
                      "{\"error\":{\"code\":\"%s\",\"message\":\"%s\","
                      "\"field\":null}}",
                      code, message);
    return s_answer (conn, status, "application/json", body, (size_t)n,
                     MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result
s_handle_request (void *cls, struct MHD_Connection *conn, const char *url,
                  const char *method, const char *version,
                  const char *upload_data, size_t *upload_data_size,
                  void **con_cls)
{
    rcd_monitor_http_t *self = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    bool get = strcmp (method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp (method, MHD_HTTP_METHOD_HEAD) == 0;
    if (strcmp (url, "/") == 0) {
        if (!get)
            return s_answer_error (conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                   "method_not_allowed", "use GET");
        const char *page = rcd_dashboard_html ();
        return s_answer (conn, MHD_HTTP_OK, "text/html; charset=utf-8", page,
                         strlen (page), MHD_RESPMEM_PERSISTENT);
    }
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++) {
        if (strcmp (url, s_routes[i].path) != 0)
            continue;
        if (!get)
            return s_answer_error (conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                   "method_not_allowed", "use GET");
        char *copy = NULL;
        size_t size = 0;
        unsigned int status = 0;
        pthread_mutex_lock (&self->lock);
        s_doc_t *doc = &self->docs[s_routes[i].doc];
        if (doc->text && (copy = malloc (doc->size + 1)) != NULL) {
            memcpy (copy, doc->text, doc->size + 1);
            size = doc->size;
            status = doc->status;
        }
        pthread_mutex_unlock (&self->lock);
        if (!copy)
            return s_answer_error (conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable", "not ready yet");
        return s_answer (conn, status, s_routes[i].type, copy, size,
                         MHD_RESPMEM_MUST_FREE);
    }
    return s_answer_error (conn, MHD_HTTP_NOT_FOUND, "not_found",
                           "no such path");
}

rcd_monitor_http_t *
rcd_monitor_http_new (const char *bind_address, int port)
{
    assert (bind_address);
    rcd_monitor_http_t *self = NULL;
    struct addrinfo *ai = NULL;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    char service[16];
    snprintf (service, sizeof service, "%d", port);
    if (getaddrinfo (bind_address, service, &hints, &ai) != 0 || !ai) {
        rcd_log_error ("http: bad bind address", "{s:s}", "bind", bind_address);
        goto cleanup;
    }
    self = calloc (1, sizeof *self);
    if (!self)
        goto cleanup;
    pthread_mutex_init (&self->lock, NULL);
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* the logger goes first so that no option's complaint escapes it */
    self->daemon = MHD_start_daemon (
        flags, (uint16_t)port, NULL, NULL, s_handle_request, self,
        MHD_OPTION_EXTERNAL_LOGGER, rcd_log_external, "http: libmicrohttpd",
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)RCD_MONITOR_HTTP_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)RCD_MONITOR_HTTP_TIMEOUT_S,
        MHD_OPTION_END);
    if (!self->daemon) {
        rcd_log_error ("http: cannot listen", "{s:s, s:i}", "bind",
                       bind_address, "port", port);
        rcd_monitor_http_destroy (&self);
        goto cleanup;
    }
    rcd_log_info ("http: listening", "{s:s, s:i}", "bind", bind_address, "port",
                  port);
cleanup:
    if (ai)
        freeaddrinfo (ai);
    return self;
}

void
rcd_monitor_http_destroy (rcd_monitor_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_monitor_http_t *self = *self_p;
    if (self->daemon)
        MHD_stop_daemon (self->daemon);
    for (int i = 0; i < RCD_MONITOR_DOC_COUNT; i++)
        free (self->docs[i].text);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void
rcd_monitor_http_publish (rcd_monitor_http_t *self, rcd_monitor_doc_t doc,
                          char **text_p, unsigned int status)
{
    assert (self && doc < RCD_MONITOR_DOC_COUNT && text_p);
    char *text = *text_p;
    *text_p = NULL;
    if (!text)
        return;
    size_t size = strlen (text);
    pthread_mutex_lock (&self->lock);
    char *old = self->docs[doc].text;
    self->docs[doc].text = text;
    self->docs[doc].size = size;
    self->docs[doc].status = status;
    pthread_mutex_unlock (&self->lock);
    free (old);
}
