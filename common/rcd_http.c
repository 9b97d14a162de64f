/*  rcd_http.c - libcurl's multi interface behind a small class.

    Each request rides a transfer slot: an easy handle with its own request
    and answer buffers. Slots are kept on a free list after use and set up
    again for the next request (no curl_easy_init per request); their
    connections stay in the multi handle's cache for keep-alive reuse.
    Header lines are turned into curl_slists once per distinct set and
    cached, because a sender posts the same few header sets (one per
    gateway instance) thousands of times a second.

    Event loop: curl_multi_poll (with the caller's extra descriptors),
    then curl_multi_perform. Measured against libcurl's socket API on an
    epoll set (curl_multi_socket_action): at 512 requests in flight the
    epoll loop cost ~20% more CPU per request (two epoll_ctl per request,
    more wake-ups), so the simple loop stays.

    No blind resends: libcurl resends a request by itself when a reused
    keep-alive connection dies without any answer. That is right when the
    peer closed the idle connection first, and a duplicate when it acted
    on the request and then died. libcurl calls s_on_prereq before every
    attempt to send a request; a second call for one transfer is such a
    resend, and we abort it: the transfer fails as "reset after send"
    (outcome unknown) instead of going out twice. (A read callback with a
    refused rewind would do the same but makes libcurl send headers and
    body in two writes: slower.) Idle connections are not reused
    after S_MAX_IDLE_S, below common servers' keep-alive timeouts (Node,
    so Evolution: 5 s), so the benign race stays rare.

    Telling "sent" from "not sent" when no answer came: libcurl counts the
    body bytes it wrote to the socket (CURLINFO_SIZE_UPLOAD_T) and the
    header bytes of the request (CURLINFO_REQUEST_SIZE). A request is sent
    when the headers went out and every body byte did too.
*/
#include "rcd_http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Header sets cached at most; beyond that, each request builds its own
    list and frees it when done. */
#define S_HEADER_CACHE_MAX 4096
#define S_HEADER_BUCKETS   256
#define S_HEADER_KEY_MAX   4096
/*  Oldest idle connection we reuse, in seconds. */
#define S_MAX_IDLE_S 4L
/*  Extra descriptors a caller may add to a wait. */
#define S_EXTRA_FDS_MAX 8

/*  One cached header list, keyed by its lines joined with '\n'. */
typedef struct s_headers {
    struct s_headers *next;  /* bucket chain */
    uint64_t hash;           /* FNV-1a of key */
    struct curl_slist *list; /* what libcurl sends */
    char key[];              /* the joined lines */
} s_headers_t;

/*  A transfer slot: one easy handle and its buffers, reused. */
typedef struct s_xfer {
    struct s_xfer *next;            /* free list or finished queue */
    struct s_xfer *all_next;        /* every slot, for destroy */
    CURL *easy;                     /* the handle */
    void *user;                     /* caller's tag */
    char *body;                     /* request body (POSTFIELDS) */
    size_t body_len;                /* bytes in body */
    size_t body_cap;                /* bytes allocated */
    int sends;                      /* attempts to send this request */
    bool resend_refused;            /* libcurl wanted to resend: refused */
    char *resp;                     /* answer body, NUL-terminated */
    size_t resp_len;                /* bytes in resp */
    size_t resp_cap;                /* bytes allocated */
    bool resp_truncated;            /* answer exceeded RCD_HTTP_MAX_BODY */
    struct curl_slist *own_headers; /* uncached header list, freed after */
    CURLcode code;                  /* transfer result */
    char errbuf[CURL_ERROR_SIZE];   /* libcurl's detailed error */
} s_xfer_t;

struct rcd_http {
    CURLM *multi;        /* one multi handle: connections, DNS cache */
    s_xfer_t *free_list; /* idle slots */
    s_xfer_t *done_head; /* finished, not yet taken */
    s_xfer_t *done_tail;
    s_xfer_t *returned;                     /* last slot given out by next */
    s_xfer_t *all;                          /* every slot created */
    size_t done_count;                      /* slots in the finished queue */
    size_t inflight;                        /* queued and not yet returned */
    size_t slots;                           /* slots created */
    s_headers_t *buckets[S_HEADER_BUCKETS]; /* header list cache */
    size_t cached_headers;                  /* entries in the cache */
};

int
rcd_http_global_init (void)
{
    return curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
rcd_http_global_cleanup (void)
{
    curl_global_cleanup ();
}

const char *
rcd_http_error_name (rcd_http_error_t error)
{
    switch (error) {
        case RCD_HTTP_ERR_NONE:
            return "none";
        case RCD_HTTP_ERR_CONNECT:
            return "connect";
        case RCD_HTTP_ERR_TIMEOUT_BEFORE_SEND:
            return "timeout_before_send";
        case RCD_HTTP_ERR_TIMEOUT_AFTER_SEND:
            return "timeout_after_send";
        case RCD_HTTP_ERR_RESET_BEFORE_SEND:
            return "reset_before_send";
        case RCD_HTTP_ERR_RESET_AFTER_SEND:
            return "reset_after_send";
        case RCD_HTTP_ERR_OTHER:
            return "other";
    }
    return "other";
}

/*  Grows *buf to hold at least need bytes. */
static int
s_reserve (char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 512;
    while (ncap < need)
        ncap *= 2;
    char *nbuf = realloc (*buf, ncap);
    if (!nbuf)
        return -1;
    *buf = nbuf;
    *cap = ncap;
    return 0;
}

/*  libcurl hands us the answer body in pieces. */
static size_t
s_on_write (char *data, size_t size, size_t nmemb, void *arg)
{
    s_xfer_t *xfer = arg;
    size_t n = size * nmemb;
    size_t keep = n;
    if (xfer->resp_len + keep > RCD_HTTP_MAX_BODY) {
        keep = RCD_HTTP_MAX_BODY - xfer->resp_len;
        xfer->resp_truncated = true;
    }
    if (keep) {
        if (s_reserve (&xfer->resp, &xfer->resp_cap,
                       xfer->resp_len + keep + 1) != 0)
            return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        memcpy (xfer->resp + xfer->resp_len, data, keep);
        xfer->resp_len += keep;
        xfer->resp[xfer->resp_len] = 0;
    }
    return n;
}

/*  libcurl is about to send the request (again, when > 1). */
static int
s_on_prereq (void *arg, char *primary_ip, char *local_ip, int primary_port,
             int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    s_xfer_t *xfer = arg;
    if (++xfer->sends > 1) {
        xfer->resend_refused = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

static uint64_t
s_fnv1a (const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/*  Builds a curl_slist of lines plus "Expect:" (no 100-continue). */
static struct curl_slist *
s_build_slist (const char *const *lines)
{
    struct curl_slist *list = NULL;
    for (size_t i = 0; lines && lines[i]; i++) {
        struct curl_slist *next = curl_slist_append (list, lines[i]);
        if (!next) {
            curl_slist_free_all (list);
            return NULL;
        }
        list = next;
    }
    struct curl_slist *next = curl_slist_append (list, "Expect:");
    if (!next)
        curl_slist_free_all (list);
    return next;
}

/*  Finds or makes the header list for lines. Sets *own when the list is
    not cached and must be freed by the caller after the transfer. */
static struct curl_slist *
s_headers_for (rcd_http_t *self, const char *const *lines, bool *own)
{
    *own = false;
    char key[S_HEADER_KEY_MAX];
    size_t len = 0;
    for (size_t i = 0; lines && lines[i]; i++) {
        size_t n = strlen (lines[i]);
        if (len + n + 2 > sizeof key) {
            *own = true; /* too long to cache: rare, build it each time */
            return s_build_slist (lines);
        }
        memcpy (key + len, lines[i], n);
        len += n;
        key[len++] = '\n';
    }
    key[len] = 0;
    uint64_t hash = s_fnv1a (key, len);
    s_headers_t **bucket = &self->buckets[hash % S_HEADER_BUCKETS];
    for (s_headers_t *h = *bucket; h; h = h->next)
        if (h->hash == hash && memcmp (h->key, key, len + 1) == 0)
            return h->list;
    if (self->cached_headers >= S_HEADER_CACHE_MAX) {
        *own = true;
        return s_build_slist (lines);
    }
    s_headers_t *entry = malloc (sizeof *entry + len + 1);
    if (!entry)
        return NULL;
    entry->list = s_build_slist (lines);
    if (!entry->list) {
        free (entry);
        return NULL;
    }
    entry->hash = hash;
    memcpy (entry->key, key, len + 1);
    entry->next = *bucket;
    *bucket = entry;
    self->cached_headers++;
    return entry->list;
}

/*  Frees a slot and its handle. */
static void
s_xfer_destroy (s_xfer_t **xfer_p)
{
    s_xfer_t *xfer = *xfer_p;
    if (!xfer)
        return;
    if (xfer->easy)
        curl_easy_cleanup (xfer->easy);
    curl_slist_free_all (xfer->own_headers);
    free (xfer->body);
    free (xfer->resp);
    free (xfer);
    *xfer_p = NULL;
}

/*  Takes a free slot or makes one, with the options that never change. */
static s_xfer_t *
s_xfer_take (rcd_http_t *self)
{
    s_xfer_t *xfer = self->free_list;
    if (xfer) {
        self->free_list = xfer->next;
        xfer->next = NULL;
        return xfer;
    }
    xfer = calloc (1, sizeof *xfer);
    if (!xfer)
        return NULL;
    xfer->easy = curl_easy_init ();
    if (!xfer->easy) {
        free (xfer);
        return NULL;
    }
    CURL *e = xfer->easy;
    curl_easy_setopt (e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt (e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (e, CURLOPT_WRITEFUNCTION, s_on_write);
    curl_easy_setopt (e, CURLOPT_WRITEDATA, xfer);
    curl_easy_setopt (e, CURLOPT_PRIVATE, xfer);
    curl_easy_setopt (e, CURLOPT_ERRORBUFFER, xfer->errbuf);
    curl_easy_setopt (e, CURLOPT_USERAGENT, "recado/0.1");
    curl_easy_setopt (e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt (e, CURLOPT_MAXAGE_CONN, S_MAX_IDLE_S);
    curl_easy_setopt (e, CURLOPT_PREREQFUNCTION, s_on_prereq);
    curl_easy_setopt (e, CURLOPT_PREREQDATA, xfer);
    xfer->all_next = self->all;
    self->all = xfer;
    self->slots++;
    return xfer;
}

/*  Puts a slot back on the free list, dropping per-request state. */
static void
s_xfer_release (rcd_http_t *self, s_xfer_t *xfer)
{
    curl_slist_free_all (xfer->own_headers);
    xfer->own_headers = NULL;
    xfer->user = NULL;
    xfer->next = self->free_list;
    self->free_list = xfer;
}

rcd_http_t *
rcd_http_new (int max_connections)
{
    rcd_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->multi = curl_multi_init ();
    if (!self->multi) {
        free (self);
        return NULL;
    }
    long max = max_connections > 0 ? max_connections : 64;
    /* Open connections in total, and idle ones kept for reuse. */
    curl_multi_setopt (self->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max);
    curl_multi_setopt (self->multi, CURLMOPT_MAXCONNECTS, max);
    curl_multi_setopt (self->multi, CURLMOPT_PIPELINING, CURLPIPE_NOTHING);
    return self;
}

void
rcd_http_destroy (rcd_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_http_t *self = *self_p;
    /* Removing a handle that is not in the multi handle is harmless. */
    s_xfer_t *xfer = self->all;
    while (xfer) {
        s_xfer_t *next = xfer->all_next;
        curl_multi_remove_handle (self->multi, xfer->easy);
        s_xfer_destroy (&xfer);
        xfer = next;
    }
    curl_multi_cleanup (self->multi);
    for (size_t b = 0; b < S_HEADER_BUCKETS; b++) {
        s_headers_t *h = self->buckets[b];
        while (h) {
            s_headers_t *next = h->next;
            curl_slist_free_all (h->list);
            free (h);
            h = next;
        }
    }
    free (self);
    *self_p = NULL;
}

/*  Sets up a slot for one request and adds it to the multi handle. */
static int
s_queue (rcd_http_t *self, bool post, const char *url,
         const char *const *headers, const char *body, size_t len,
         long connect_timeout_ms, long total_timeout_ms, void *user)
{
    s_xfer_t *xfer = s_xfer_take (self);
    if (!xfer)
        return -1;
    bool own = false;
    struct curl_slist *list = s_headers_for (self, headers, &own);
    if (!list)
        goto failed;
    if (own)
        xfer->own_headers = list;
    xfer->body_len = 0;
    if (post) {
        if (s_reserve (&xfer->body, &xfer->body_cap, len + 1) != 0)
            goto failed;
        if (len)
            memcpy (xfer->body, body, len);
        xfer->body[len] = 0;
        xfer->body_len = len;
    }
    xfer->resp_len = 0;
    xfer->resp_truncated = false;
    if (s_reserve (&xfer->resp, &xfer->resp_cap, 1) != 0)
        goto failed;
    xfer->resp[0] = 0;
    xfer->errbuf[0] = 0;
    xfer->code = CURLE_OK;
    xfer->sends = 0;
    xfer->resend_refused = false;
    xfer->user = user;

    CURL *e = xfer->easy;
    if (curl_easy_setopt (e, CURLOPT_URL, url) != CURLE_OK)
        goto failed;
    curl_easy_setopt (e, CURLOPT_HTTPHEADER, list);
    if (post) {
        curl_easy_setopt (e, CURLOPT_POST, 1L);
        curl_easy_setopt (e, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t)xfer->body_len);
        curl_easy_setopt (e, CURLOPT_POSTFIELDS, xfer->body);
    }
    else
        curl_easy_setopt (e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt (e, CURLOPT_CONNECTTIMEOUT_MS,
                      connect_timeout_ms > 0 ? connect_timeout_ms : 5000L);
    curl_easy_setopt (e, CURLOPT_TIMEOUT_MS,
                      total_timeout_ms > 0 ? total_timeout_ms : 30000L);
    if (curl_multi_add_handle (self->multi, e) != CURLM_OK)
        goto failed;
    self->inflight++;
    return 0;

failed:
    s_xfer_release (self, xfer);
    return -1;
}

int
rcd_http_post (rcd_http_t *self, const char *url, const char *const *headers,
               const char *body, size_t len, long connect_timeout_ms,
               long total_timeout_ms, void *user)
{
    return s_queue (self, true, url, headers, body, len, connect_timeout_ms,
                    total_timeout_ms, user);
}

int
rcd_http_get (rcd_http_t *self, const char *url, const char *const *headers,
              long connect_timeout_ms, long total_timeout_ms, void *user)
{
    return s_queue (self, false, url, headers, NULL, 0, connect_timeout_ms,
                    total_timeout_ms, user);
}

/*  Moves finished transfers from the multi handle to our queue. */
static void
s_collect (rcd_http_t *self)
{
    int left = 0;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read (self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode code = msg->data.result;
        s_xfer_t *xfer = NULL;
        curl_easy_getinfo (e, CURLINFO_PRIVATE, (char **)&xfer);
        curl_multi_remove_handle (self->multi, e); /* msg is invalid now */
        xfer->code = code;
        xfer->next = NULL;
        if (self->done_tail)
            self->done_tail->next = xfer;
        else
            self->done_head = xfer;
        self->done_tail = xfer;
        self->done_count++;
    }
}

int
rcd_http_perform_fds (rcd_http_t *self, const int *fds, int nfds,
                      int timeout_ms)
{
    struct curl_waitfd extra[S_EXTRA_FDS_MAX];
    if (nfds > S_EXTRA_FDS_MAX)
        nfds = S_EXTRA_FDS_MAX;
    for (int i = 0; i < nfds; i++) {
        extra[i].fd = fds[i];
        extra[i].events = CURL_WAIT_POLLIN;
        extra[i].revents = 0;
    }
    /* Finished results waiting: report them without sleeping. */
    if (timeout_ms > 0 && !self->done_head &&
        curl_multi_poll (self->multi, nfds ? extra : NULL, (unsigned)nfds,
                         timeout_ms, NULL) != CURLM_OK)
        return -1;
    int running = 0;
    if (curl_multi_perform (self->multi, &running) != CURLM_OK)
        return -1;
    s_collect (self);
    return (int)self->done_count;
}

int
rcd_http_perform (rcd_http_t *self, int timeout_ms)
{
    return rcd_http_perform_fds (self, NULL, 0, timeout_ms);
}

/*  Sorts a failed transfer into our error kinds. */
static rcd_http_error_t
s_error_kind (s_xfer_t *xfer)
{
    CURL *e = xfer->easy;
    curl_off_t uploaded = 0;
    long header_bytes = 0;
    curl_easy_getinfo (e, CURLINFO_SIZE_UPLOAD_T, &uploaded);
    curl_easy_getinfo (e, CURLINFO_REQUEST_SIZE, &header_bytes);
    bool sent = xfer->resend_refused ||
                (header_bytes > 0 && uploaded >= (curl_off_t)xfer->body_len);
    switch (xfer->code) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
            return RCD_HTTP_ERR_CONNECT;
        case CURLE_OPERATION_TIMEDOUT:
            return sent ? RCD_HTTP_ERR_TIMEOUT_AFTER_SEND
                        : RCD_HTTP_ERR_TIMEOUT_BEFORE_SEND;
        case CURLE_ABORTED_BY_CALLBACK: /* a resend we refused */
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            return sent ? RCD_HTTP_ERR_RESET_AFTER_SEND
                        : RCD_HTTP_ERR_RESET_BEFORE_SEND;
        default:
            return RCD_HTTP_ERR_OTHER;
    }
}

bool
rcd_http_next (rcd_http_t *self, rcd_http_result_t *res)
{
    if (self->returned) {
        s_xfer_release (self, self->returned);
        self->returned = NULL;
    }
    s_xfer_t *xfer = self->done_head;
    if (!xfer)
        return false;
    self->done_head = xfer->next;
    self->done_count--;
    if (!self->done_head)
        self->done_tail = NULL;
    xfer->next = NULL;
    self->returned = xfer; /* released on the next call */
    self->inflight--;      /* returned: no longer in flight */

    memset (res, 0, sizeof *res);
    res->user = xfer->user;
    res->body = xfer->resp ? xfer->resp : "";
    res->body_len = xfer->resp_len;
    res->body_truncated = xfer->resp_truncated;
    curl_off_t total_us = 0;
    curl_easy_getinfo (xfer->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    res->total_us = (int64_t)total_us;
    if (xfer->code == CURLE_OK) {
        curl_easy_getinfo (xfer->easy, CURLINFO_RESPONSE_CODE, &res->status);
        curl_off_t retry_after = 0;
        curl_easy_getinfo (xfer->easy, CURLINFO_RETRY_AFTER, &retry_after);
        res->retry_after_s =
            retry_after > 0 && retry_after < INT32_MAX ? (int)retry_after : 0;
        res->error = RCD_HTTP_ERR_NONE;
        res->error_text = "";
    }
    else {
        res->status = 0;
        res->error = s_error_kind (xfer);
        res->error_text =
            xfer->errbuf[0] ? xfer->errbuf : curl_easy_strerror (xfer->code);
    }
    return true;
}

size_t
rcd_http_inflight (rcd_http_t *self)
{
    return self->inflight;
}

char *
rcd_http_escape (const char *text)
{
    /* libcurl's escaping keeps exactly the RFC 3986 unreserved set. */
    char *escaped = curl_easy_escape (NULL, text ? text : "", 0);
    if (!escaped)
        return NULL;
    char *out = strdup (escaped); /* ours is freed with free() */
    curl_free (escaped);
    return out;
}
