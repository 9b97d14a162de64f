/*  test_rcd_http.c - the libcurl multi client against real HTTP on loopback.

    Most tests talk to the gateway simulator in process (tests/sim), which
    answers Evolution's sendText, injects 429, hangs and resets, and counts
    what arrived. What the simulator cannot show is done with a tiny HTTP
    server of this file on its own thread: it counts the TCP connections it
    accepted (keep-alive reuse, the connection cap), answers bodies of any
    size (truncation at RCD_HTTP_MAX_BODY), keeps the last request as it
    arrived (headers sent, no "Expect:") and can close every connection
    after its answer (an idle connection the peer closed). Connect errors
    use bare sockets: a port bound but not listening refuses, and a
    listener whose accept queue the test has filled never answers a SYN.

    Waits poll with a deadline; the only sleep is the one that makes a pipe
    readable later than the call that must wake on it.
*/
#include "rcd_gwsim.h"
#include "rcd_http.h"
#include "rcd_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define S_INSTANCE "inst"
#define S_APIKEY   "k"
#define S_NUMBER   "5511912345678"
/*  Numbers the simulator is told to fail. */
#define S_NUMBER_429   "5511900000429"
#define S_NUMBER_HANG  "5511900000001"
#define S_NUMBER_RESET "5511900000002"
/*  Requests queued at once in the many-requests test. */
#define S_MANY 200
/*  Generous bound on anything that should take milliseconds. */
#define S_DEADLINE_MS 10000

/*  Monotonic milliseconds, to time calls. */
static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  --------------------------------------------------------------------
    Results: rcd_http_next lends its pointers until the next call, so the
    tests keep copies. */

typedef struct {
    void *user;             /* as returned */
    long status;            /* HTTP status, 0 when none */
    rcd_http_error_t error; /* error kind */
    char *error_text;       /* copy of libcurl's words */
    char *body;             /* copy of the body, NUL-terminated */
    size_t body_len;        /* bytes in body */
    bool body_truncated;    /* as returned */
    int retry_after_s;      /* as returned */
    int64_t total_us;       /* as returned */
    int64_t at_ms;          /* when the test took it */
} s_got_t;

static void
s_got_copy (s_got_t *got, const rcd_http_result_t *res)
{
    got->user = res->user;
    got->status = res->status;
    got->error = res->error;
    assert_non_null (res->error_text);
    got->error_text = strdup (res->error_text);
    assert_non_null (res->body);
    got->body = malloc (res->body_len + 1);
    assert_non_null (got->body);
    memcpy (got->body, res->body, res->body_len + 1);
    got->body_len = res->body_len;
    got->body_truncated = res->body_truncated;
    got->retry_after_s = res->retry_after_s;
    got->total_us = res->total_us;
    got->at_ms = s_now_ms ();
}

static void
s_got_free (s_got_t *got, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free (got[i].error_text);
        free (got[i].body);
        got[i].error_text = got[i].body = NULL;
    }
}

/*  Performs and takes results into got (at most cap) until want arrived
    or timeout_ms passed. Returns how many were taken. */
static size_t
s_collect (rcd_http_t *http, s_got_t *got, size_t cap, size_t want,
           int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    size_t n = 0;
    rcd_http_result_t res;
    while (true) {
        while (n < cap && rcd_http_next (http, &res))
            s_got_copy (&got[n++], &res);
        if (n >= want || s_now_ms () >= deadline)
            break;
        assert_true (rcd_http_perform (http, 50) >= 0);
    }
    return n;
}

/*  Takes exactly one result within the deadline. */
static s_got_t
s_one (rcd_http_t *http)
{
    s_got_t got;
    memset (&got, 0, sizeof got);
    assert_int_equal (s_collect (http, &got, 1, 1, S_DEADLINE_MS), 1);
    return got;
}

/*  --------------------------------------------------------------------
    The simulator */

static void
s_configure (rcd_gwsim_t *sim, const char *json)
{
    assert_int_equal (rcd_gwsim_configure (sim, json), 0);
}

/*  Queues an Evolution sendText to the simulator with the given apikey. */
static int
s_post_send_key (rcd_http_t *http, rcd_gwsim_t *sim, const char *apikey,
                 const char *number, const char *text, long total_timeout_ms,
                 void *user)
{
    char url[256];
    snprintf (url, sizeof url, "%s/message/sendText/%s", rcd_gwsim_url (sim),
              S_INSTANCE);
    char key_line[64];
    snprintf (key_line, sizeof key_line, "apikey: %s", apikey);
    const char *headers[] = {key_line, "Content-Type: application/json", NULL};
    json_t *doc = json_pack ("{s:s, s:s}", "number", number, "text", text);
    assert_non_null (doc);
    char *body = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    assert_non_null (body);
    int rc = rcd_http_post (http, url, headers, body, strlen (body), 2000,
                            total_timeout_ms, user);
    free (body);
    return rc;
}

static int
s_post_send (rcd_http_t *http, rcd_gwsim_t *sim, const char *number,
             const char *text, long total_timeout_ms, void *user)
{
    return s_post_send_key (http, sim, S_APIKEY, number, text, total_timeout_ms,
                            user);
}

/*  Performs until the simulator holds at least n answers. */
static void
s_perform_until_held (rcd_http_t *http, rcd_gwsim_t *sim, size_t n)
{
    int64_t deadline = s_now_ms () + S_DEADLINE_MS;
    while (rcd_gwsim_held (sim) < n && s_now_ms () < deadline)
        assert_true (rcd_http_perform (http, 10) >= 0);
    assert_true (rcd_gwsim_held (sim) >= n);
}

/*  Performs until at least n results are ready (not taken). */
static void
s_perform_until_ready (rcd_http_t *http, int n)
{
    int64_t deadline = s_now_ms () + S_DEADLINE_MS;
    int ready = 0;
    while (ready < n && s_now_ms () < deadline) {
        ready = rcd_http_perform (http, 50);
        assert_true (ready >= 0);
    }
    assert_int_equal (ready, n);
}

/*  --------------------------------------------------------------------
    A tiny HTTP/1.1 server on its own thread. Paths: /bytes/N answers N
    bytes of the pattern 'a'..'z' repeated; /date-retry/S answers 503 with
    Retry-After as an HTTP date S seconds ahead; anything else 200 "ok".
    Keep-alive unless close_after_answer, in which case every connection
    is closed after its first answer (without "Connection: close", as a
    server whose idle timeout fired would). Request bodies of any length
    are read; the last request's head and the start of its body are kept
    for the test to look at. */

#define S_SERVER_CLIENTS 128
#define S_SERVER_BUF     16384
/*  A multiple of 26, so every chunk starts the pattern at 'a'. */
#define S_PATTERN_CHUNK (26 * 600)

typedef struct {
    int fd;                     /* -1 when the slot is free */
    char buf[S_SERVER_BUF + 1]; /* bytes read, NUL after them */
    size_t len;                 /* bytes in buf */
    bool in_body;               /* head read, body still coming */
    size_t body_left;           /* body bytes still to read */
    char path[128];             /* path of the request being read */
} s_client_t;

typedef struct {
    int listen_fd;                        /* 127.0.0.1, ephemeral port */
    int port;                             /* the port bound */
    int wake[2];                          /* a byte here stops the thread */
    bool close_after_answer;              /* close after each answer */
    pthread_t thread;                     /* runs s_server_run */
    atomic_int accepts;                   /* TCP connections accepted */
    atomic_int requests;                  /* requests answered */
    atomic_int closes;                    /* connections closed, any side */
    pthread_mutex_t lock;                 /* guards last_* */
    char last_request[S_SERVER_BUF + 1];  /* head and body start */
    size_t last_len;                      /* bytes in last_request */
    size_t last_body_len;                 /* body bytes of that request */
    s_client_t clients[S_SERVER_CLIENTS]; /* server thread only */
    char chunk[S_PATTERN_CHUNK];          /* pattern to answer with */
} s_server_t;

/*  Whether body holds the server's pattern. */
static bool
s_pattern_ok (const char *body, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (body[i] != (char)('a' + i % 26))
            return false;
    return true;
}

/*  Case-insensitive search in a NUL-terminated text. */
static bool
s_contains_nocase (const char *text, const char *word)
{
    size_t n = strlen (word);
    for (const char *p = text; *p; p++)
        if (strncasecmp (p, word, n) == 0)
            return true;
    return false;
}

static void
s_client_close (s_server_t *srv, s_client_t *client)
{
    close (client->fd);
    client->fd = -1;
    client->len = 0;
    client->in_body = false;
    atomic_fetch_add (&srv->closes, 1);
}

static int
s_send_all (int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send (fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*  Content-Length of a request head (NUL-terminated), 0 when absent. */
static size_t
s_content_length (const char *head)
{
    for (const char *line = head; line;) {
        if (strncasecmp (line, "Content-Length:", 15) == 0)
            return (size_t)strtoull (line + 15, NULL, 10);
        line = strstr (line, "\r\n");
        if (line)
            line += 2;
    }
    return 0;
}

/*  Answers the request whose path is given, once its body was read. */
static int
s_server_answer (s_server_t *srv, s_client_t *client, const char *path)
{
    char head[512];
    int rc = 0;
    if (strncmp (path, "/bytes/", 7) == 0) {
        size_t size = (size_t)strtoull (path + 7, NULL, 10);
        snprintf (head, sizeof head,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  size);
        rc = s_send_all (client->fd, head, strlen (head));
        while (rc == 0 && size > 0) {
            size_t n = size < sizeof srv->chunk ? size : sizeof srv->chunk;
            rc = s_send_all (client->fd, srv->chunk, n);
            size -= n;
        }
    }
    else if (strncmp (path, "/date-retry/", 12) == 0) {
        time_t when = time (NULL) + atoi (path + 12);
        struct tm tm;
        gmtime_r (&when, &tm);
        char date[64];
        strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        snprintf (head, sizeof head,
                  "HTTP/1.1 503 Service Unavailable\r\nRetry-After: %s\r\n"
                  "Content-Length: 4\r\n\r\nbusy",
                  date);
        rc = s_send_all (client->fd, head, strlen (head));
    }
    else {
        snprintf (head, sizeof head,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  "Content-Length: 2\r\n\r\nok");
        rc = s_send_all (client->fd, head, strlen (head));
    }
    atomic_fetch_add (&srv->requests, 1);
    return rc;
}

/*  Takes a request head off the client's buffer and keeps a copy. */
static bool
s_server_take_head (s_server_t *srv, s_client_t *client)
{
    char *end = strstr (client->buf, "\r\n\r\n");
    if (!end)
        return false;
    end[2] = 0; /* parse the head only, not the body after it */
    size_t head_len = (size_t)(end + 4 - client->buf);
    client->body_left = s_content_length (client->buf);
    end[2] = '\r';
    client->path[0] = 0;
    sscanf (client->buf, "%*s %127s", client->path);
    pthread_mutex_lock (&srv->lock);
    memcpy (srv->last_request, client->buf, head_len);
    srv->last_len = head_len;
    srv->last_request[head_len] = 0;
    srv->last_body_len = client->body_left;
    pthread_mutex_unlock (&srv->lock);
    client->len -= head_len;
    memmove (client->buf, client->buf + head_len, client->len);
    client->buf[client->len] = 0;
    client->in_body = true;
    return true;
}

/*  Takes body bytes off the client's buffer, keeping what fits. */
static void
s_server_take_body (s_server_t *srv, s_client_t *client)
{
    size_t take =
        client->len < client->body_left ? client->len : client->body_left;
    pthread_mutex_lock (&srv->lock);
    size_t room = S_SERVER_BUF - srv->last_len;
    size_t keep = take < room ? take : room;
    memcpy (srv->last_request + srv->last_len, client->buf, keep);
    srv->last_len += keep;
    srv->last_request[srv->last_len] = 0;
    pthread_mutex_unlock (&srv->lock);
    client->body_left -= take;
    client->len -= take;
    memmove (client->buf, client->buf + take, client->len);
    client->buf[client->len] = 0;
}

/*  Reads from a client and answers every complete request in its buffer. */
static void
s_server_read (s_server_t *srv, s_client_t *client)
{
    ssize_t n = recv (client->fd, client->buf + client->len,
                      S_SERVER_BUF - client->len, 0);
    if (n <= 0) {
        s_client_close (srv, client);
        return;
    }
    client->len += (size_t)n;
    client->buf[client->len] = 0;
    while (client->fd >= 0) {
        if (!client->in_body && !s_server_take_head (srv, client)) {
            if (client->len == S_SERVER_BUF)
                s_client_close (srv, client); /* head too large: give up */
            break;
        }
        s_server_take_body (srv, client);
        if (client->body_left > 0)
            break; /* more body to come */
        client->in_body = false;
        if (s_server_answer (srv, client, client->path) != 0 ||
            srv->close_after_answer)
            s_client_close (srv, client);
    }
}

static void
s_server_accept (s_server_t *srv)
{
    int fd = accept (srv->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    atomic_fetch_add (&srv->accepts, 1);
    /* A client that stops reading must not pin this thread forever. */
    struct timeval tv = {5, 0};
    setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (int i = 0; i < S_SERVER_CLIENTS; i++)
        if (srv->clients[i].fd < 0) {
            srv->clients[i].fd = fd;
            srv->clients[i].len = 0;
            srv->clients[i].in_body = false;
            return;
        }
    close (fd);
    atomic_fetch_add (&srv->closes, 1);
}

static void *
s_server_run (void *arg)
{
    s_server_t *srv = arg;
    while (true) {
        struct pollfd pfd[2 + S_SERVER_CLIENTS];
        int slot[2 + S_SERVER_CLIENTS];
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
        for (int i = 0; i < S_SERVER_CLIENTS; i++)
            if (srv->clients[i].fd >= 0) {
                slot[n] = i;
                pfd[n++] =
                    (struct pollfd){.fd = srv->clients[i].fd, .events = POLLIN};
            }
        if (poll (pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[0].revents)
            break;
        for (nfds_t k = 2; k < n; k++)
            if (pfd[k].revents)
                s_server_read (srv, &srv->clients[slot[k]]);
        if (pfd[1].revents & POLLIN)
            s_server_accept (srv);
    }
    return NULL;
}

static s_server_t *
s_server_new (bool close_after_answer)
{
    s_server_t *srv = calloc (1, sizeof *srv);
    assert_non_null (srv);
    srv->close_after_answer = close_after_answer;
    for (int i = 0; i < S_SERVER_CLIENTS; i++)
        srv->clients[i].fd = -1;
    for (size_t i = 0; i < sizeof srv->chunk; i++)
        srv->chunk[i] = (char)('a' + i % 26);
    atomic_init (&srv->accepts, 0);
    atomic_init (&srv->requests, 0);
    atomic_init (&srv->closes, 0);
    pthread_mutex_init (&srv->lock, NULL);

    srv->listen_fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (srv->listen_fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    assert_int_equal (
        bind (srv->listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal (listen (srv->listen_fd, 64), 0);
    socklen_t len = sizeof addr;
    assert_int_equal (
        getsockname (srv->listen_fd, (struct sockaddr *)&addr, &len), 0);
    srv->port = ntohs (addr.sin_port);
    assert_int_equal (pipe (srv->wake), 0);
    assert_int_equal (pthread_create (&srv->thread, NULL, s_server_run, srv),
                      0);
    return srv;
}

static void
s_server_destroy (s_server_t **srv_p)
{
    s_server_t *srv = *srv_p;
    if (!srv)
        return;
    assert_int_equal (write (srv->wake[1], "x", 1), 1);
    pthread_join (srv->thread, NULL);
    for (int i = 0; i < S_SERVER_CLIENTS; i++)
        if (srv->clients[i].fd >= 0)
            close (srv->clients[i].fd);
    close (srv->listen_fd);
    close (srv->wake[0]);
    close (srv->wake[1]);
    pthread_mutex_destroy (&srv->lock);
    free (srv);
    *srv_p = NULL;
}

static void
s_server_url (s_server_t *srv, char *url, size_t size, const char *path)
{
    snprintf (url, size, "http://127.0.0.1:%d%s", srv->port, path);
}

static int
s_server_accepts (s_server_t *srv)
{
    return atomic_load (&srv->accepts);
}

static int
s_server_requests (s_server_t *srv)
{
    return atomic_load (&srv->requests);
}

/*  Closes of at least *want, for rcd_test_wait_until. */
typedef struct {
    s_server_t *srv;
    int want;
} s_closes_t;

static bool
s_server_closed (void *arg)
{
    s_closes_t *c = arg;
    return atomic_load (&c->srv->closes) >= c->want;
}

/*  Queues a GET of path on the server. */
static int
s_get (rcd_http_t *http, s_server_t *srv, const char *path, long connect_ms,
       long total_ms, void *user)
{
    char url[128];
    s_server_url (srv, url, sizeof url, path);
    return rcd_http_get (http, url, NULL, connect_ms, total_ms, user);
}

/*  --------------------------------------------------------------------
    Bare sockets for connect errors */

/*  A loopback port bound but not listening: connecting is refused. Kept
    bound so no one else takes the port meanwhile. */
static int
s_refusing_socket (int *port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    assert_int_equal (bind (fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    assert_int_equal (getsockname (fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs (addr.sin_port);
    return fd;
}

/*  A listener that never accepts, with its accept queue filled by our own
    connections. Linux drops a SYN to a listener whose accept queue is
    full, so a further connect gets no SYN-ACK and hangs until the client
    gives up. The probe that hangs proves the queue is full. */
#define S_FILL_MAX 16

typedef struct {
    int listen_fd;
    int port;
    int fds[S_FILL_MAX]; /* our connections filling the queue */
    int nfds;
} s_full_t;

static bool
s_full_open (s_full_t *full)
{
    memset (full, 0, sizeof *full);
    full->listen_fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (full->listen_fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    assert_int_equal (
        bind (full->listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    assert_int_equal (
        getsockname (full->listen_fd, (struct sockaddr *)&addr, &len), 0);
    full->port = ntohs (addr.sin_port);
    assert_int_equal (listen (full->listen_fd, 0), 0);
    while (full->nfds < S_FILL_MAX) {
        int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true (fd >= 0);
        full->fds[full->nfds++] = fd;
        if (connect (fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            continue;
        if (errno != EINPROGRESS)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll (&pfd, 1, 200) == 0)
            return true; /* no SYN-ACK: the queue is full */
    }
    return false;
}

static void
s_full_close (s_full_t *full)
{
    for (int i = 0; i < full->nfds; i++)
        close (full->fds[i]);
    close (full->listen_fd);
}

/*  --------------------------------------------------------------------
    Writes one byte to fd after delay_ms, on its own thread. */

typedef struct {
    int fd;
    int delay_ms;
    pthread_t thread;
} s_writer_t;

static void *
s_writer_run (void *arg)
{
    s_writer_t *w = arg;
    struct timespec ts = {w->delay_ms / 1000,
                          (long)(w->delay_ms % 1000) * 1000000L};
    nanosleep (&ts, NULL);
    if (write (w->fd, "x", 1) != 1)
        abort ();
    return NULL;
}

static void
s_writer_start (s_writer_t *w, int fd, int delay_ms)
{
    w->fd = fd;
    w->delay_ms = delay_ms;
    assert_int_equal (pthread_create (&w->thread, NULL, s_writer_run, w), 0);
}

/*  --------------------------------------------------------------------
    Fixture: a fresh simulator per test, the apikey enforced so lost
    headers show as 401. */

static int
s_setup (void **state)
{
    rcd_gwsim_t *sim = rcd_gwsim_new (NULL, 0);
    if (!sim)
        return -1;
    if (rcd_gwsim_configure (sim, "{\"instances\":{\"" S_INSTANCE
                                  "\":{\"apikey\":\"" S_APIKEY "\"}}}") != 0) {
        rcd_gwsim_destroy (&sim);
        return -1;
    }
    *state = sim;
    return 0;
}

static int
s_teardown (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_gwsim_destroy (&sim);
    return 0;
}

/*  --------------------------------------------------------------------
    Tests */

static void
test_post_to_evolution_returns_201_with_body_and_user (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_http_t *http = rcd_http_new (4);
    assert_non_null (http);
    assert_int_equal (rcd_http_inflight (http), 0);
    const char *text = "olá from rcd_http";
    int tag = 42;
    assert_int_equal (s_post_send (http, sim, S_NUMBER, text, 5000, &tag), 0);
    assert_int_equal (rcd_http_inflight (http), 1);

    s_got_t got = s_one (http);
    assert_ptr_equal (got.user, &tag);
    assert_int_equal (tag, 42);
    assert_int_equal (got.status, 201);
    assert_int_equal (got.error, RCD_HTTP_ERR_NONE);
    assert_string_equal (got.error_text, "");
    assert_false (got.body_truncated);
    assert_int_equal (got.retry_after_s, 0);
    assert_true (got.total_us > 0);
    assert_true (got.body_len > 0);
    assert_int_equal (strlen (got.body), got.body_len);
    json_error_t err;
    json_t *doc = json_loads (got.body, 0, &err);
    assert_non_null (doc);
    json_t *key = json_object_get (doc, "key");
    assert_string_equal (json_string_value (json_object_get (key, "remoteJid")),
                         S_NUMBER "@s.whatsapp.net");
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "message"), "conversation")),
                         text);
    json_decref (doc);
    assert_int_equal (rcd_gwsim_count (sim, S_INSTANCE, S_NUMBER, text), 1);
    assert_int_equal (rcd_gwsim_total (sim), 1);
    s_got_free (&got, 1);

    /* The header lines reach the server: a wrong apikey is refused. */
    assert_int_equal (
        s_post_send_key (http, sim, "wrong", S_NUMBER, "x", 5000, &tag), 0);
    got = s_one (http);
    assert_int_equal (got.status, 401);
    assert_int_equal (got.error, RCD_HTTP_ERR_NONE);
    assert_ptr_equal (got.user, &tag);
    assert_int_equal (rcd_gwsim_total (sim), 1);
    s_got_free (&got, 1);
    rcd_http_destroy (&http);
    assert_null (http);
}

static void
test_200_queued_requests_each_complete_exactly_once (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"latency_ms\":2}");
    rcd_http_t *http = rcd_http_new (8);
    assert_non_null (http);
    int seen[S_MANY];
    memset (seen, 0, sizeof seen);
    for (int i = 0; i < S_MANY; i++) {
        char text[32];
        snprintf (text, sizeof text, "many %d", i);
        assert_int_equal (
            s_post_send (http, sim, S_NUMBER, text, 20000, &seen[i]), 0);
    }
    assert_int_equal (rcd_http_inflight (http), S_MANY);

    s_got_t *got = calloc (S_MANY + 1, sizeof *got);
    assert_non_null (got);
    size_t n = s_collect (http, got, S_MANY + 1, S_MANY, 30000);
    assert_int_equal (n, S_MANY);
    for (size_t k = 0; k < n; k++) {
        int *p = got[k].user;
        assert_true (p >= seen && p < seen + S_MANY);
        seen[p - seen]++;
        assert_int_equal (got[k].status, 201);
        assert_int_equal (got[k].error, RCD_HTTP_ERR_NONE);
    }
    for (int i = 0; i < S_MANY; i++)
        assert_int_equal (seen[i], 1);
    /* Nothing more comes. */
    assert_int_equal (rcd_http_perform (http, 0), 0);
    rcd_http_result_t res;
    assert_false (rcd_http_next (http, &res));
    assert_int_equal (rcd_http_inflight (http), 0);
    assert_int_equal (rcd_gwsim_total (sim), S_MANY);
    assert_int_equal (rcd_gwsim_distinct (sim), S_MANY);
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);
    s_got_free (got, n);
    free (got);
    rcd_http_destroy (&http);
}

/*  The simulator does not expose how many TCP connections it accepted,
    so reuse is measured on the counting server. */
static void
test_sequential_requests_reuse_one_keepalive_connection (void **state)
{
    (void)state;
    s_server_t *srv = s_server_new (false);
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    for (int i = 0; i < 20; i++) {
        assert_int_equal (s_get (http, srv, "/n", 2000, 5000, NULL), 0);
        s_got_t got = s_one (http);
        assert_int_equal (got.status, 200);
        assert_string_equal (got.body, "ok");
        s_got_free (&got, 1);
    }
    assert_int_equal (s_server_requests (srv), 20);
    assert_int_equal (s_server_accepts (srv), 1);
    rcd_http_destroy (&http);
    s_server_destroy (&srv);
}

static void
test_queued_requests_open_at_most_max_connections (void **state)
{
    (void)state;
    s_server_t *srv = s_server_new (false);
    rcd_http_t *http = rcd_http_new (4);
    assert_non_null (http);
    for (int i = 0; i < 100; i++)
        assert_int_equal (s_get (http, srv, "/n", 2000, 10000, NULL), 0);
    s_got_t got[100];
    memset (got, 0, sizeof got);
    size_t n = s_collect (http, got, 100, 100, S_DEADLINE_MS);
    assert_int_equal (n, 100);
    for (size_t k = 0; k < n; k++)
        assert_int_equal (got[k].status, 200);
    assert_int_equal (s_server_requests (srv), 100);
    assert_true (s_server_accepts (srv) >= 1);
    assert_true (s_server_accepts (srv) <= 4);
    s_got_free (got, n);
    rcd_http_destroy (&http);
    s_server_destroy (&srv);
}

static void
test_retry_after_is_parsed_from_a_429 (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"retry_after_s\":7,\"number_errors\":{\"" S_NUMBER_429
                      "\":\"429\"}}");
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    assert_int_equal (s_post_send (http, sim, S_NUMBER_429, "t", 5000, NULL),
                      0);
    s_got_t got = s_one (http);
    assert_int_equal (got.status, 429);
    assert_int_equal (got.error, RCD_HTTP_ERR_NONE);
    assert_int_equal (got.retry_after_s, 7);
    assert_int_equal (rcd_gwsim_errors (sim, "429"), 1);
    s_got_free (&got, 1);

    /* The next request reuses the slot: no stale Retry-After. */
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "t", 5000, NULL), 0);
    got = s_one (http);
    assert_int_equal (got.status, 201);
    assert_int_equal (got.retry_after_s, 0);
    s_got_free (&got, 1);
    rcd_http_destroy (&http);
}

static void
test_retry_after_as_an_http_date_becomes_seconds (void **state)
{
    (void)state;
    s_server_t *srv = s_server_new (false);
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    assert_int_equal (s_get (http, srv, "/date-retry/30", 2000, 5000, NULL), 0);
    s_got_t got = s_one (http);
    assert_int_equal (got.status, 503);
    assert_string_equal (got.body, "busy");
    /* The date has whole seconds: 29 or 30 by the time it is read. */
    assert_true (got.retry_after_s >= 25 && got.retry_after_s <= 31);
    s_got_free (&got, 1);
    rcd_http_destroy (&http);
    s_server_destroy (&srv);
}

static void
test_connection_refused_is_a_connect_error (void **state)
{
    (void)state;
    int port = 0;
    int fd = s_refusing_socket (&port);
    rcd_http_t *http = rcd_http_new (2);
    assert_non_null (http);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/message/sendText/inst",
              port);
    const char *headers[] = {"apikey: k", NULL};
    int tag = 7;
    int64_t start = s_now_ms ();
    assert_int_equal (
        rcd_http_post (http, url, headers, "{}", 2, 3000, 6000, &tag), 0);
    s_got_t got = s_one (http);
    assert_ptr_equal (got.user, &tag);
    assert_int_equal (got.error, RCD_HTTP_ERR_CONNECT);
    assert_int_equal (got.status, 0);
    assert_int_equal (got.body_len, 0);
    assert_string_equal (got.body, "");
    assert_true (strlen (got.error_text) > 0);
    assert_string_equal (rcd_http_error_name (got.error), "connect");
    /* Refused at once, not after the connect timeout. */
    assert_true (s_now_ms () - start < 2500);
    s_got_free (&got, 1);
    rcd_http_destroy (&http);
    close (fd);
}

static void
test_unanswered_request_times_out_after_send_while_others_complete (
    void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"hang_ms\":10000,\"number_errors\":{\"" S_NUMBER_HANG
                      "\":\"hang\"}}");
    rcd_http_t *http = rcd_http_new (4);
    assert_non_null (http);
    int hang_tag = 0;
    int ok_tags[5];
    int64_t start = s_now_ms ();
    assert_int_equal (
        s_post_send (http, sim, S_NUMBER_HANG, "hung", 300, &hang_tag), 0);
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf (text, sizeof text, "ok %d", i);
        assert_int_equal (
            s_post_send (http, sim, S_NUMBER, text, 5000, &ok_tags[i]), 0);
    }
    s_got_t got[6];
    memset (got, 0, sizeof got);
    size_t n = s_collect (http, got, 6, 6, S_DEADLINE_MS);
    assert_int_equal (n, 6);
    const s_got_t *hung = NULL;
    int64_t last_ok_ms = 0;
    for (size_t k = 0; k < n; k++) {
        if (got[k].user == &hang_tag) {
            hung = &got[k];
            continue;
        }
        assert_int_equal (got[k].status, 201);
        if (got[k].at_ms > last_ok_ms)
            last_ok_ms = got[k].at_ms;
    }
    assert_non_null (hung);
    assert_int_equal (hung->status, 0);
    assert_int_equal (hung->error, RCD_HTTP_ERR_TIMEOUT_AFTER_SEND);
    assert_string_equal (rcd_http_error_name (hung->error),
                         "timeout_after_send");
    /* The others did not wait for it... */
    assert_true (last_ok_ms <= hung->at_ms);
    /* ...and it gave up at its own timeout, not the server's 10 s. */
    assert_true (hung->total_us >= 250000);
    assert_true (hung->at_ms - start < 3000);
    /* It reached the simulator, once. */
    assert_int_equal (rcd_gwsim_errors (sim, "hang"), 1);
    assert_int_equal (rcd_gwsim_total (sim), 5);
    s_got_free (got, n);
    rcd_http_destroy (&http);
}

static void
test_connect_timeout_to_a_full_accept_queue_is_timeout_before_send (
    void **state)
{
    (void)state;
    s_full_t full;
    if (!s_full_open (&full)) {
        /* This kernel completed every handshake: no way to make a loopback
           connect hang, so the case cannot be shown here. */
        s_full_close (&full);
        skip ();
    }
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/x", full.port);
    int64_t start = s_now_ms ();
    assert_int_equal (rcd_http_post (http, url, NULL, "{}", 2, 300, 5000, NULL),
                      0);
    s_got_t got = s_one (http);
    int64_t elapsed = s_now_ms () - start;
    assert_int_equal (got.status, 0);
    assert_int_equal (got.error, RCD_HTTP_ERR_TIMEOUT_BEFORE_SEND);
    /* The connect timeout ended it, not the total timeout. */
    assert_true (elapsed >= 250);
    assert_true (elapsed < 2500);
    s_got_free (&got, 1);
    rcd_http_destroy (&http);
    s_full_close (&full);
}

static void
test_reset_without_answer_is_reset_after_send_and_never_resent (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"number_errors\":{\"" S_NUMBER_RESET "\":\"reset\"}}");
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);

    /* On a fresh connection. */
    assert_int_equal (s_post_send (http, sim, S_NUMBER_RESET, "r1", 5000, NULL),
                      0);
    s_got_t got = s_one (http);
    assert_int_equal (got.status, 0);
    assert_int_equal (got.error, RCD_HTTP_ERR_RESET_AFTER_SEND);
    assert_int_equal (rcd_gwsim_errors (sim, "reset"), 1);
    s_got_free (&got, 1);

    /* On a reused keep-alive connection libcurl would resend by itself;
       the class must refuse, so the simulator sees it once. */
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "warm", 5000, NULL), 0);
    got = s_one (http);
    assert_int_equal (got.status, 201);
    s_got_free (&got, 1);
    assert_int_equal (s_post_send (http, sim, S_NUMBER_RESET, "r2", 5000, NULL),
                      0);
    got = s_one (http);
    assert_int_equal (got.status, 0);
    assert_int_equal (got.error, RCD_HTTP_ERR_RESET_AFTER_SEND);
    assert_int_equal (rcd_gwsim_errors (sim, "reset"), 2);
    s_got_free (&got, 1);

    /* The client carries on. */
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "after", 5000, NULL),
                      0);
    got = s_one (http);
    assert_int_equal (got.status, 201);
    s_got_free (&got, 1);
    assert_int_equal (rcd_gwsim_errors (sim, "reset"), 2);
    assert_int_equal (rcd_gwsim_total (sim), 2);
    rcd_http_destroy (&http);
}

static void
test_idle_connection_closed_by_the_server_is_replaced (void **state)
{
    (void)state;
    s_server_t *srv = s_server_new (true);
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal (s_get (http, srv, "/n", 2000, 5000, NULL), 0);
        s_got_t got = s_one (http);
        assert_int_equal (got.status, 200);
        assert_int_equal (got.error, RCD_HTTP_ERR_NONE);
        s_got_free (&got, 1);
        /* The server closed the idle connection before the next request. */
        s_closes_t closes = {srv, i};
        assert_true (rcd_test_wait_until (s_server_closed, &closes, 5000));
    }
    assert_int_equal (s_server_requests (srv), 3);
    assert_int_equal (s_server_accepts (srv), 3);
    rcd_http_destroy (&http);
    s_server_destroy (&srv);
}

static void
test_inflight_counts_requests_until_returned (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_http_t *http = rcd_http_new (2);
    assert_non_null (http);
    assert_int_equal (rcd_http_inflight (http), 0);
    for (int i = 0; i < 3; i++) {
        char text[16];
        snprintf (text, sizeof text, "c %d", i);
        assert_int_equal (s_post_send (http, sim, S_NUMBER, text, 5000, NULL),
                          0);
    }
    /* A request that fails without a connection counts too. */
    assert_int_equal (
        rcd_http_get (http, "ftp://127.0.0.1/nope", NULL, 1000, 1000, NULL), 0);
    assert_int_equal (rcd_http_inflight (http), 4);
    s_perform_until_ready (http, 4);
    /* Finished but not taken: still in flight. */
    assert_int_equal (rcd_http_inflight (http), 4);
    rcd_http_result_t res;
    int taken = 0, other = 0;
    while (rcd_http_next (http, &res)) {
        taken++;
        if (res.error == RCD_HTTP_ERR_OTHER && res.status == 0)
            other++;
        else
            assert_int_equal (res.status, 201);
    }
    assert_int_equal (taken, 4);
    assert_int_equal (other, 1);
    assert_int_equal (rcd_http_inflight (http), 0);
    rcd_http_destroy (&http);
}

/*  rcd_http.h: "Requests queued and not yet returned by rcd_http_next."
    The counts are read first and checked after destroy, so a failure here
    leaves no leak behind to confuse the sanitizer's report. */
static void
test_inflight_drops_as_soon_as_next_returns_a_result (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_http_t *http = rcd_http_new (2);
    assert_non_null (http);
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "a", 5000, NULL), 0);
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "b", 5000, NULL), 0);
    s_perform_until_ready (http, 2);
    rcd_http_result_t res;
    bool took_first = rcd_http_next (http, &res);
    size_t after_first = rcd_http_inflight (http);
    bool took_second = rcd_http_next (http, &res);
    size_t after_second = rcd_http_inflight (http);
    bool took_third = rcd_http_next (http, &res);
    size_t after_none = rcd_http_inflight (http);
    rcd_http_destroy (&http);
    assert_true (took_first);
    assert_true (took_second);
    assert_false (took_third);
    assert_int_equal (after_none, 0);
    assert_int_equal (after_first, 1);
    assert_int_equal (after_second, 0);
}

/*  Leaks here show in ASan's leak check at exit. */
static void
test_destroy_with_requests_in_flight_frees_everything (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"hang_ms\":10000,\"number_errors\":{\"" S_NUMBER_HANG
                      "\":\"hang\"}}");
    rcd_http_t *http = rcd_http_new (2);
    assert_non_null (http);
    /* A result taken (its slot is the one lent out)... */
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "first", 5000, NULL),
                      0);
    rcd_http_result_t res;
    s_perform_until_ready (http, 1);
    assert_true (rcd_http_next (http, &res));
    /* ...two sent and unanswered, one waiting for a connection, one
       finished and not taken, and a header set too long to cache. */
    assert_int_equal (s_post_send (http, sim, S_NUMBER_HANG, "h1", 30000, NULL),
                      0);
    assert_int_equal (s_post_send (http, sim, S_NUMBER_HANG, "h2", 30000, NULL),
                      0);
    s_perform_until_held (http, sim, 2);
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "queued", 30000, NULL),
                      0);
    assert_int_equal (
        rcd_http_get (http, "ftp://127.0.0.1/nope", NULL, 1000, 1000, NULL), 0);
    char *pad = malloc (5001);
    assert_non_null (pad);
    memset (pad, 'p', 5000);
    memcpy (pad, "X-Pad: ", 7);
    pad[5000] = 0;
    const char *headers[] = {pad, NULL};
    char url[256];
    snprintf (url, sizeof url, "%s/message/sendText/%s", rcd_gwsim_url (sim),
              S_INSTANCE);
    assert_int_equal (
        rcd_http_post (http, url, headers, "{}", 2, 1000, 30000, NULL), 0);
    free (pad);
    assert_true (rcd_http_perform (http, 10) >= 0);
    assert_true (rcd_http_inflight (http) >= 5);

    int64_t start = s_now_ms ();
    rcd_http_destroy (&http);
    assert_null (http);
    /* Aborted, not waited for. */
    assert_true (s_now_ms () - start < 1000);
    rcd_http_destroy (&http); /* safe on NULL */
}

static void
test_long_header_set_is_sent_and_freed (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    /* Longer than the header cache's key: built per request. */
    char *pad = malloc (6001);
    assert_non_null (pad);
    memset (pad, 'p', 6000);
    memcpy (pad, "X-Pad: ", 7);
    pad[6000] = 0;
    const char *headers[] = {pad, "apikey: " S_APIKEY,
                             "Content-Type: application/json", NULL};
    char url[256];
    snprintf (url, sizeof url, "%s/message/sendText/%s", rcd_gwsim_url (sim),
              S_INSTANCE);
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf (body, sizeof body, "{\"number\":\"%s\",\"text\":\"pad %d\"}",
                  S_NUMBER, i);
        assert_int_equal (rcd_http_post (http, url, headers, body,
                                         strlen (body), 2000, 5000, NULL),
                          0);
        s_got_t got = s_one (http);
        assert_int_equal (got.status, 201);
        s_got_free (&got, 1);
    }
    free (pad);
    assert_int_equal (rcd_gwsim_distinct (sim), 3);
    rcd_http_destroy (&http);
}

static void
test_perform_fds_wakes_when_an_extra_fd_is_readable (void **state)
{
    rcd_gwsim_t *sim = *state;
    int fds[2];
    assert_int_equal (pipe (fds), 0);
    rcd_http_t *http = rcd_http_new (2);
    assert_non_null (http);

    /* Nothing readable: it waits its timeout... */
    int64_t start = s_now_ms ();
    assert_int_equal (rcd_http_perform_fds (http, &fds[0], 1, 300), 0);
    assert_true (s_now_ms () - start >= 250);

    /* ...and wakes as soon as the pipe is readable. */
    s_writer_t writer;
    s_writer_start (&writer, fds[1], 100);
    start = s_now_ms ();
    assert_int_equal (rcd_http_perform_fds (http, &fds[0], 1, 5000), 0);
    int64_t elapsed = s_now_ms () - start;
    pthread_join (writer.thread, NULL);
    assert_true (elapsed < 500);
    char byte;
    assert_int_equal (read (fds[0], &byte, 1), 1);

    /* The same with a transfer of its own waiting for an answer. */
    s_configure (sim, "{\"hang_ms\":10000,\"number_errors\":{\"" S_NUMBER_HANG
                      "\":\"hang\"}}");
    assert_int_equal (
        s_post_send (http, sim, S_NUMBER_HANG, "wait", 10000, NULL), 0);
    s_perform_until_held (http, sim, 1);
    s_writer_start (&writer, fds[1], 100);
    start = s_now_ms ();
    assert_int_equal (rcd_http_perform_fds (http, &fds[0], 1, 5000), 0);
    elapsed = s_now_ms () - start;
    pthread_join (writer.thread, NULL);
    assert_true (elapsed < 500);
    assert_int_equal (read (fds[0], &byte, 1), 1);
    assert_int_equal (rcd_http_inflight (http), 1);

    rcd_http_destroy (&http);
    close (fds[0]);
    close (fds[1]);
}

static void
test_perform_does_not_wait_when_results_are_ready (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "ready", 5000, NULL),
                      0);
    s_perform_until_ready (http, 1);
    int64_t start = s_now_ms ();
    assert_int_equal (rcd_http_perform (http, 5000), 1);
    assert_true (s_now_ms () - start < 500);
    rcd_http_result_t res;
    assert_true (rcd_http_next (http, &res));
    assert_int_equal (res.status, 201);
    assert_false (rcd_http_next (http, &res));
    rcd_http_destroy (&http);
}

static void
test_body_beyond_max_is_truncated_and_flagged (void **state)
{
    (void)state;
    s_server_t *srv = s_server_new (false);
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    char path[64];

    snprintf (path, sizeof path, "/bytes/%zu", RCD_HTTP_MAX_BODY + 65536);
    assert_int_equal (s_get (http, srv, path, 2000, 10000, NULL), 0);
    s_got_t got = s_one (http);
    assert_int_equal (got.status, 200);
    assert_int_equal (got.error, RCD_HTTP_ERR_NONE);
    assert_true (got.body_truncated);
    assert_int_equal (got.body_len, RCD_HTTP_MAX_BODY);
    assert_int_equal (strlen (got.body), RCD_HTTP_MAX_BODY);
    assert_true (s_pattern_ok (got.body, got.body_len));
    s_got_free (&got, 1);

    /* Exactly the maximum is kept whole. */
    snprintf (path, sizeof path, "/bytes/%zu", RCD_HTTP_MAX_BODY);
    assert_int_equal (s_get (http, srv, path, 2000, 10000, NULL), 0);
    got = s_one (http);
    assert_int_equal (got.status, 200);
    assert_false (got.body_truncated);
    assert_int_equal (got.body_len, RCD_HTTP_MAX_BODY);
    assert_true (s_pattern_ok (got.body, got.body_len));
    s_got_free (&got, 1);

    /* A small one on the recycled slot carries no flag over. */
    assert_int_equal (s_get (http, srv, "/bytes/10", 2000, 10000, NULL), 0);
    got = s_one (http);
    assert_false (got.body_truncated);
    assert_string_equal (got.body, "abcdefghij");
    s_got_free (&got, 1);

    /* The discarded rest was read: the connection was reused. */
    assert_int_equal (s_server_accepts (srv), 1);
    rcd_http_destroy (&http);
    s_server_destroy (&srv);
}

static void
test_get_after_post_on_a_recycled_slot_is_a_get (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "p1", 5000, NULL), 0);
    s_got_t got = s_one (http);
    assert_int_equal (got.status, 201);
    s_got_free (&got, 1);

    char url[256];
    snprintf (url, sizeof url, "%s/instance/connectionState/%s",
              rcd_gwsim_url (sim), S_INSTANCE);
    const char *headers[] = {"apikey: " S_APIKEY, NULL};
    assert_int_equal (rcd_http_get (http, url, headers, 2000, 5000, NULL), 0);
    got = s_one (http);
    assert_int_equal (got.status, 200);
    json_error_t err;
    json_t *doc = json_loads (got.body, 0, &err);
    assert_non_null (doc);
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "instance"), "state")),
                         "open");
    json_decref (doc);
    s_got_free (&got, 1);

    /* And a POST after the GET is a POST again. */
    assert_int_equal (s_post_send (http, sim, S_NUMBER, "p2", 5000, NULL), 0);
    got = s_one (http);
    assert_int_equal (got.status, 201);
    s_got_free (&got, 1);
    assert_int_equal (rcd_gwsim_distinct (sim), 2);
    rcd_http_destroy (&http);
}

static void
test_post_sends_the_headers_and_body_without_expect (void **state)
{
    (void)state;
    s_server_t *srv = s_server_new (false);
    rcd_http_t *http = rcd_http_new (1);
    assert_non_null (http);
    /* Over 1 MiB, where libcurl 7.88 asks for 100-continue by default. */
    size_t len = (size_t)1024 * 1024 + 4096;
    char *body = malloc (len);
    assert_non_null (body);
    memset (body, 'b', len);
    const char *headers[] = {"X-Recado-Test: 1",
                             "Content-Type: application/json", NULL};
    char url[128];
    s_server_url (srv, url, sizeof url, "/echo");
    int64_t start = s_now_ms ();
    assert_int_equal (
        rcd_http_post (http, url, headers, body, len, 2000, 5000, NULL), 0);
    free (body); /* copied by post */
    s_got_t got = s_one (http);
    assert_int_equal (got.status, 200);
    /* No wait for a 100 that never comes (libcurl waits 1 s for it). */
    assert_true (s_now_ms () - start < 900);
    s_got_free (&got, 1);

    pthread_mutex_lock (&srv->lock);
    char *seen = strdup (srv->last_request);
    size_t seen_body = srv->last_body_len;
    pthread_mutex_unlock (&srv->lock);
    assert_non_null (seen);
    assert_memory_equal (seen, "POST /echo HTTP/1.1\r\n", 21);
    assert_true (strstr (seen, "\r\nX-Recado-Test: 1\r\n") != NULL);
    assert_true (strstr (seen, "\r\nContent-Type: application/json\r\n") !=
                 NULL);
    assert_false (s_contains_nocase (seen, "\r\nExpect:"));
    assert_int_equal (seen_body, len);
    const char *sent = strstr (seen, "\r\n\r\n") + 4;
    assert_true (strlen (sent) > 0);
    assert_int_equal (strspn (sent, "b"), strlen (sent));
    free (seen);
    rcd_http_destroy (&http);
    s_server_destroy (&srv);
}

int
main (void)
{
    if (rcd_http_global_init () != 0)
        return 1;
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown (name, s_setup, s_teardown)
        T (test_post_to_evolution_returns_201_with_body_and_user),
        T (test_200_queued_requests_each_complete_exactly_once),
        T (test_sequential_requests_reuse_one_keepalive_connection),
        T (test_queued_requests_open_at_most_max_connections),
        T (test_retry_after_is_parsed_from_a_429),
        T (test_retry_after_as_an_http_date_becomes_seconds),
        T (test_connection_refused_is_a_connect_error),
        T (test_unanswered_request_times_out_after_send_while_others_complete),
        T (test_connect_timeout_to_a_full_accept_queue_is_timeout_before_send),
        T (test_reset_without_answer_is_reset_after_send_and_never_resent),
        T (test_idle_connection_closed_by_the_server_is_replaced),
        T (test_inflight_counts_requests_until_returned),
        T (test_inflight_drops_as_soon_as_next_returns_a_result),
        T (test_destroy_with_requests_in_flight_frees_everything),
        T (test_long_header_set_is_sent_and_freed),
        T (test_perform_fds_wakes_when_an_extra_fd_is_readable),
        T (test_perform_does_not_wait_when_results_are_ready),
        T (test_body_beyond_max_is_truncated_and_flagged),
        T (test_get_after_post_on_a_recycled_slot_is_a_get),
        T (test_post_sends_the_headers_and_body_without_expect),
#undef T
    };
    int rc = cmocka_run_group_tests (tests, NULL, NULL);
    rcd_http_global_cleanup ();
    return rc;
}
