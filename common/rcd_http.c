/*  rcd_http.c - libcurl's multi interface behind a small class.

    Each request rides a transfer slot: an easy handle with its own request
    and answer buffers. Slots are kept on a free list after use and set up
    again for the next request (no curl_easy_init per request); their
    connections stay in the multi handle's cache for keep-alive reuse.
    Header lines are turned into curl_slists once per distinct set and
    cached, because a sender posts the same few header sets (one per
    gateway instance) thousands of times a second.

    Event loop: libcurl's socket API on our own epoll set. libcurl tells
    us which sockets to watch (s_on_socket) and when its next timer is due
    (s_on_timer); we hand each ready socket back with its event bits, so
    only the transfers on that socket run and libcurl does not poll() every
    socket itself. (curl_multi_perform would visit all transfers and poll
    each one on every call: four poll syscalls per message at 512 in
    flight.)

    Telling "sent" from "not sent" when no answer came: libcurl counts the
    body bytes it wrote to the socket (CURLINFO_SIZE_UPLOAD_T) and the
    header bytes of the request (CURLINFO_REQUEST_SIZE). A request is sent
    when the headers went out and every body byte did too.
*/
#include "rcd_http.h"
#include "rcd_log.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/*  Header sets cached at most; beyond that, each request builds its own
    list and frees it when done. */
#define S_HEADER_CACHE_MAX  4096
#define S_HEADER_BUCKETS    256
#define S_HEADER_KEY_MAX    4096
/*  Socket events taken from epoll per wake. */
#define S_EPOLL_BATCH       256
/*  Extra descriptors a caller may add to a wait. */
#define S_EXTRA_FDS_MAX     8

/*  One cached header list, keyed by its lines joined with '\n'. */
typedef struct s_headers {
    struct s_headers *next;     /* bucket chain */
    uint64_t hash;              /* FNV-1a of key */
    struct curl_slist *list;    /* what libcurl sends */
    char key[];                 /* the joined lines */
} s_headers_t;

/*  A transfer slot: one easy handle and its buffers, reused. */
typedef struct s_xfer {
    struct s_xfer *next;        /* free list or finished queue */
    struct s_xfer *all_next;    /* every slot, for destroy */
    CURL *easy;                 /* the handle */
    void *user;                 /* caller's tag */
    char *body;                 /* request body (POSTFIELDS points here) */
    size_t body_len;            /* bytes in body */
    size_t body_cap;            /* bytes allocated */
    char *resp;                 /* answer body, NUL-terminated */
    size_t resp_len;            /* bytes in resp */
    size_t resp_cap;            /* bytes allocated */
    bool resp_truncated;        /* answer exceeded RCD_HTTP_MAX_BODY */
    struct curl_slist *own_headers; /* uncached header list, freed after */
    CURLcode code;              /* transfer result */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's detailed error */
} s_xfer_t;

struct rcd_http {
    CURLM *multi;               /* one multi handle: connections, DNS cache */
    int epfd;                   /* sockets libcurl asked us to watch */
    int64_t timer_at_ms;        /* libcurl's next timeout (mono), -1: none */
    s_xfer_t *free_list;        /* idle slots */
    s_xfer_t *done_head;        /* finished, not yet taken */
    s_xfer_t *done_tail;
    s_xfer_t *returned;         /* last slot given out by next */
    s_xfer_t *all;              /* every slot created */
    size_t done_count;          /* slots in the finished queue */
    size_t inflight;            /* queued and not yet returned */
    size_t slots;               /* slots created */
    s_headers_t *buckets[S_HEADER_BUCKETS]; /* header list cache */
    size_t cached_headers;      /* entries in the cache */
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
        if (s_reserve (&xfer->resp, &xfer->resp_cap, xfer->resp_len + keep + 1)
            != 0)
            return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        memcpy (xfer->resp + xfer->resp_len, data, keep);
        xfer->resp_len += keep;
        xfer->resp[xfer->resp_len] = 0;
    }
    return n;
}

static uint64_t
s_fnv1a (const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
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
    curl_easy_setopt (e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
    curl_easy_setopt (e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (e, CURLOPT_WRITEFUNCTION, s_on_write);
    curl_easy_setopt (e, CURLOPT_WRITEDATA, xfer);
    curl_easy_setopt (e, CURLOPT_PRIVATE, xfer);
    curl_easy_setopt (e, CURLOPT_ERRORBUFFER, xfer->errbuf);
    curl_easy_setopt (e, CURLOPT_USERAGENT, "recado/0.1");
    curl_easy_setopt (e, CURLOPT_TCP_KEEPALIVE, 1L);
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

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  libcurl: start, change or stop watching socket s. socketp remembers
    that s is in our epoll set (an ADD on a known socket fails). */
static int
s_on_socket (CURL *easy, curl_socket_t s, int what, void *userp,
             void *socketp)
{
    (void) easy;
    rcd_http_t *self = userp;
    if (what == CURL_POLL_REMOVE) {
        /* may fail when libcurl closed s already: the kernel dropped it */
        epoll_ctl (self->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign (self->multi, s, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u)
                | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl (self->epfd, op, s, &ev) != 0 && op == EPOLL_CTL_ADD
        && errno == EEXIST)
        epoll_ctl (self->epfd, EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign (self->multi, s, (void *) 1);
    return 0;
}

/*  libcurl: call us back (socket_action with CURL_SOCKET_TIMEOUT) in
    timeout_ms; -1 cancels. */
static int
s_on_timer (CURLM *multi, long timeout_ms, void *userp)
{
    (void) multi;
    rcd_http_t *self = userp;
    self->timer_at_ms = timeout_ms < 0 ? -1 : s_mono_ms () + timeout_ms;
    return 0;
}

rcd_http_t *
rcd_http_new (int max_connections)
{
    rcd_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->timer_at_ms = -1;
    self->epfd = epoll_create1 (EPOLL_CLOEXEC);
    if (self->epfd < 0) {
        free (self);
        return NULL;
    }
    self->multi = curl_multi_init ();
    if (!self->multi) {
        close (self->epfd);
        free (self);
        return NULL;
    }
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, s_on_socket);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERFUNCTION, s_on_timer);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERDATA, self);
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
    close (self->epfd);
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
    xfer->user = user;

    CURL *e = xfer->easy;
    if (curl_easy_setopt (e, CURLOPT_URL, url) != CURLE_OK)
        goto failed;
    curl_easy_setopt (e, CURLOPT_HTTPHEADER, list);
    if (post) {
        curl_easy_setopt (e, CURLOPT_POST, 1L);
        curl_easy_setopt (e, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t) xfer->body_len);
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
        curl_easy_getinfo (e, CURLINFO_PRIVATE, (char **) &xfer);
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
    if (nfds > S_EXTRA_FDS_MAX)
        nfds = S_EXTRA_FDS_MAX;
    int64_t now = s_mono_ms ();
    int wait = self->done_head ? 0 : timeout_ms;
    if (self->timer_at_ms >= 0 && self->timer_at_ms - now < wait)
        wait = self->timer_at_ms > now ? (int) (self->timer_at_ms - now) : 0;
    if (wait < 0)
        wait = 0;
    /* One poll over the epoll set and the caller's descriptors. */
    struct pollfd pfd[1 + S_EXTRA_FDS_MAX];
    pfd[0].fd = self->epfd;
    pfd[0].events = POLLIN;
    pfd[0].revents = 0;
    for (int i = 0; i < nfds; i++) {
        pfd[1 + i].fd = fds[i];
        pfd[1 + i].events = POLLIN;
        pfd[1 + i].revents = 0;
    }
    if (poll (pfd, (nfds_t) (1 + nfds), wait) < 0 && errno != EINTR)
        return -1;
    int running = 0;
    if (pfd[0].revents & POLLIN) {
        struct epoll_event events[S_EPOLL_BATCH];
        int n = epoll_wait (self->epfd, events, S_EPOLL_BATCH, 0);
        for (int i = 0; i < n; i++) {
            int mask = 0;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                mask |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT)
                mask |= CURL_CSELECT_OUT;
            if (events[i].events & EPOLLERR)
                mask |= CURL_CSELECT_ERR;
            /* a socket closed earlier in this batch is unknown to
               libcurl by now: it answers CURLM_BAD_SOCKET, harmless */
            curl_multi_socket_action (self->multi, events[i].data.fd, mask,
                                      &running);
        }
    }
    if (self->timer_at_ms >= 0 && s_mono_ms () >= self->timer_at_ms) {
        self->timer_at_ms = -1;
        if (curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0,
                                      &running)
            != CURLM_OK)
            return -1;
    }
    s_collect (self);
    return (int) self->done_count;
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
    bool sent = header_bytes > 0 && uploaded >= (curl_off_t) xfer->body_len;
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
        self->inflight--;
    }
    s_xfer_t *xfer = self->done_head;
    if (!xfer)
        return false;
    self->done_head = xfer->next;
    self->done_count--;
    if (!self->done_head)
        self->done_tail = NULL;
    xfer->next = NULL;
    self->returned = xfer;

    memset (res, 0, sizeof *res);
    res->user = xfer->user;
    res->body = xfer->resp ? xfer->resp : "";
    res->body_len = xfer->resp_len;
    res->body_truncated = xfer->resp_truncated;
    curl_off_t total_us = 0;
    curl_easy_getinfo (xfer->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    res->total_us = (int64_t) total_us;
    if (xfer->code == CURLE_OK) {
        curl_easy_getinfo (xfer->easy, CURLINFO_RESPONSE_CODE, &res->status);
        curl_off_t retry_after = 0;
        curl_easy_getinfo (xfer->easy, CURLINFO_RETRY_AFTER, &retry_after);
        res->retry_after_s = retry_after > 0 && retry_after < INT32_MAX
                                 ? (int) retry_after
                                 : 0;
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
