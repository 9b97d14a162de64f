/*  =========================================================================
    rcd_gwsim - loopback simulator of the WhatsApp gateways' send endpoints

    Contract (README.md in this folder is the long form):

    Gateway endpoints, answered as API.md "Gateways" says the real ones do:
      POST /message/sendText/{instance}         Evolution, header apikey,
           body {number, text, delay?, linkPreview?} -> 201 {key, ...}
      GET  /instance/connectionState/{instance} Evolution -> 200 {instance}
      POST /{version}/{phone_number_id}/messages Meta, Authorization Bearer,
           body {messaging_product, to, type: text|template, ...} -> 200
    Control endpoints (JSON, unauthenticated: bind to loopback):
      GET|POST /_sim/config   read / merge knobs (latency, error rates,
                              per-number errors, instances, rate cap, down)
      POST /_sim/reset        forget counts, log, errors and knobs
      GET  /_sim/counts       {total, distinct, duplicates, errors, items?}
      GET  /_sim/stats        the counts without items, plus webhooks:
                              {scheduled, posted, rejected, failed, ...}
      GET  /_sim/log          arrival log, paged by since_seq
    Every answered send runs one pipeline: auth, instance, body, down,
    instance state, forced error for the number, random error, per-number
    rate cap, then count and log. Only successes and unknown_400 are counted
    (a real gateway may have delivered the latter), and only they call the
    client's webhooks back (rcd_gwhooks: Evolution's send.message echo and
    messages.update receipts, Meta's signed statuses), from a thread of
    their own, when the "webhook" knob names a URL. Latency, jitter and
    Evolution's delay hold the answer with MHD_suspend_connection and one
    timer thread, so no server thread sleeps; a hang holds it for hang_ms
    and then closes the connection; reset closes it at once.

    Threads: libmicrohttpd's pool (2 threads, epoll) runs the handlers; one
    timer thread resumes held connections; rcd_gwhooks' thread posts the
    webhooks. Locks, never nested except reset_lock -> store_lock and
    config_lock -> rcd_gwhooks' own (a config or a reset installs the
    webhook settings): config_lock (knobs), store_lock (counts, log, rate
    windows), hold_lock (timer heap).

    Shutdown (destroy): stop holding new answers, resume every held
    connection, wait up to 1 s for the delayed answers to go out (their
    messages were counted), then stop the daemon, which closes all
    connections; hung requests are closed without an answer. Webhooks
    still queued or in flight are abandoned.
    =========================================================================
*/

#include "rcd_gwsim.h"
#include "rcd_gwhooks.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_POOL_THREADS       2
#define S_CONNECTION_LIMIT   4096
#define S_CONNECTION_TIMEOUT 300
#define S_LOG_PAGE_MAX       10000
#define S_MAX_HOLD_MS        3600000
#define S_DEFAULT_HANG_MS    120000
#define S_DRAIN_MS           1000
#define S_DEFAULT_SEED       0x5eed5eedULL
#define S_KEY_MAX            256
#define S_FNV_BASIS          0xcbf29ce484222325ULL

//  What happened to one send. The first S_KIND_COUNT values are the kinds
//  a test may inject by error_rates or number_errors, in that order.
typedef enum {
    FATE_5XX,
    FATE_429,
    FATE_META_130429,
    FATE_META_131048,
    FATE_NOT_ON_WHATSAPP,
    FATE_UNKNOWN_400,
    FATE_HANG,
    FATE_RESET,
    FATE_RATE_CAP,
    FATE_DOWN,
    FATE_CLOSED,
    FATE_UNAUTHORIZED,
    FATE_BAD_REQUEST,
    FATE_NOT_FOUND,
    FATE_TOO_LARGE,
    FATE_SENT,
    FATE_COUNT
} s_fate_t;

#define S_KIND_COUNT (FATE_RESET + 1)

//  Names used in the control API and rcd_gwsim_errors, indexed by fate.
static const char *s_fate_names[FATE_COUNT] = {"5xx",
                                               "429",
                                               "meta_130429",
                                               "meta_131048",
                                               "not_on_whatsapp",
                                               "unknown_400",
                                               "hang",
                                               "reset",
                                               "rate_cap",
                                               "down",
                                               "instance_closed",
                                               "unauthorized",
                                               "bad_request",
                                               "not_found",
                                               "too_large",
                                               "sent"};

//  Which endpoint a request addresses.
typedef enum {
    ROUTE_NONE,
    ROUTE_EVO_SEND,
    ROUTE_EVO_STATE,
    ROUTE_META_SEND,
    ROUTE_SIM_CONFIG,
    ROUTE_SIM_RESET,
    ROUTE_SIM_COUNTS,
    ROUTE_SIM_STATS,
    ROUTE_SIM_LOG
} s_route_t;

//  Where a request is in its life: being read, held by the timer, hung.
typedef enum { PHASE_READING, PHASE_HELD, PHASE_HUNG, PHASE_DONE } s_phase_t;

//  A hash table node; embedded first in items and rate windows.
typedef struct s_node {
    struct s_node *next; //  next node in the same bucket
    uint64_t hash;       //  full hash of the key
    size_t key_len;      //  key length in bytes
    const char *key;     //  key bytes, stored after the containing struct
} s_node_t;

//  Chained hash table with power-of-two buckets, grown at load factor 1.
typedef struct {
    s_node_t **buckets; //  bucket heads
    size_t mask;        //  bucket count - 1
    size_t count;       //  nodes stored
} s_table_t;

//  One counted key: (instance, number, text) and how often it arrived.
typedef struct {
    s_node_t node;      //  key = instance \0 number \0 text
    size_t count;       //  times counted
    const char *number; //  points into blob
    const char *text;   //  points into blob
    char blob[];        //  the key bytes
} s_item_t;

//  Requests seen for one number in the current wall-clock second.
typedef struct {
    s_node_t node;  //  key = number
    int64_t second; //  unix second the count belongs to
    int count;      //  requests counted in that second
    char blob[];    //  the key bytes
} s_rate_t;

//  One arrival in the log; seq is implicit (log_base + index).
typedef struct {
    s_item_t *item;  //  the key that arrived; lives until reset
    int64_t recv_ms; //  unix milliseconds at arrival
} s_entry_t;

//  A held connection and when the timer thread must resume it.
typedef struct {
    int64_t due_ms;              //  monotonic milliseconds
    struct MHD_Connection *conn; //  suspended connection
} s_hold_t;

//  The knobs; one copy under config_lock, replaced whole on each change.
typedef struct {
    int latency_ms;             //  added to every gateway answer
    int jitter_ms;              //  plus uniform [0, jitter_ms]
    double rates[S_KIND_COUNT]; //  probability of each injected kind
    int retry_after_s;          //  Retry-After on 429 answers
    int rate_cap;               //  max requests per number per second, 0 off
    int hang_ms;                //  how long a hang holds the connection
    bool down;                  //  answer 503 to every send
    json_int_t seed;            //  last seed applied
    json_t *instances;          //  name -> {state, apikey, token,
                                //  app_secret, unknown}
    json_t *number_errors;      //  number -> kind name
    json_t *webhook;            //  full webhook settings (rcd_gwhooks);
                                //  never changed once installed
} s_config_t;

//  What one send needs from the knobs, copied out under config_lock.
typedef struct {
    bool unknown;               //  instance configured as unknown
    bool has_apikey;            //  instance has a configured apikey
    bool has_token;             //  instance has a configured Meta token
    char state[32];             //  connection state, default "open"
    char apikey[S_KEY_MAX];     //  configured apikey
    char token[S_KEY_MAX];      //  configured Meta bearer token
    bool has_app_secret;        //  instance has its own Meta app secret
    char app_secret[S_KEY_MAX]; //  it, for signing webhooks
    s_fate_t forced;            //  number_errors kind, or FATE_SENT
    s_fate_t drawn;             //  kind drawn from error_rates, or FATE_SENT
    bool down;                  //  every send fails
    int hold_ms;                //  latency plus jitter for this answer
    int retry_after_s;          //  for 429 answers
    int rate_cap;               //  per-number cap, 0 off
    int hang_ms;                //  hang duration
} s_snapshot_t;

//  Per-request state, kept in MHD's con_cls until the request completes.
typedef struct {
    rcd_gwsim_t *self;             //  owning simulator
    struct MHD_Connection *conn;   //  the connection
    s_route_t route;               //  endpoint addressed
    char *name;                    //  instance or phone_number_id from URL
    char *body;                    //  upload so far
    size_t size;                   //  bytes in body
    size_t cap;                    //  bytes allocated
    bool too_large;                //  body exceeded RCD_GWSIM_MAX_BODY
    s_phase_t phase;               //  where the request is
    bool was_held;                 //  counted in held_live until completed
    struct MHD_Response *response; //  answer waiting for the timer
    unsigned int status;           //  its HTTP status
} s_request_t;

struct rcd_gwsim {
    struct MHD_Daemon *daemon;        //  libmicrohttpd server
    int port;                         //  bound port
    char url[80];                     //  base URL
    pthread_mutex_t config_lock;      //  guards config
    s_config_t config;                //  current knobs
    pthread_rwlock_t reset_lock;      //  readers of items outside store_lock
    pthread_mutex_t store_lock;       //  guards everything below to log_base
    s_table_t items;                  //  counted keys
    s_item_t **order;                 //  items in first-arrival order
    size_t order_cap;                 //  slots in order
    s_table_t rates;                  //  per-number rate windows
    s_entry_t *log;                   //  arrivals
    size_t log_count;                 //  entries in log
    size_t log_cap;                   //  slots in log
    uint64_t log_base;                //  seq of log[0]
    size_t total;                     //  sends counted
    atomic_size_t errors[FATE_COUNT]; //  answers per error kind
    _Atomic uint64_t prng;            //  splitmix64 state
    _Atomic uint64_t ids;             //  message id counter
    pthread_mutex_t hold_lock;        //  guards holds and stopping
    pthread_cond_t hold_cond;         //  wakes the timer thread
    s_hold_t *holds;                  //  min-heap on due_ms
    size_t hold_count;                //  entries in holds
    size_t hold_cap;                  //  slots in holds
    size_t held_live;                 //  held requests not yet completed
    bool stopping;                    //  destroy started: hold nothing new
    pthread_t timer;                  //  resumes held connections
    bool timer_started;               //  timer must be joined
    rcd_gwhooks_t *hooks;             //  posts the webhooks of sends
};

//  --------------------------------------------------------------------------
//  Small helpers: clocks, hashing, random numbers, ids

//  Monotonic milliseconds, for hold deadlines.
static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Wall-clock milliseconds, for the log and rate windows.
static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  FNV-1a: cheap and good enough for short keys we generate ourselves.
static uint64_t
s_hash_bytes (const void *data, size_t len, uint64_t hash)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

//  splitmix64 finaliser: a bijection, so distinct counters give distinct
//  ids and consecutive states give well-mixed random numbers.
static uint64_t
s_mix_u64 (uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

//  Thread-safe PRNG: one atomic add per draw, reproducible from the seed
//  when requests arrive in a fixed order.
static uint64_t
s_random_u64 (rcd_gwsim_t *self)
{
    uint64_t state = atomic_fetch_add (&self->prng, 0x9e3779b97f4a7c15ULL) +
                     0x9e3779b97f4a7c15ULL;
    return s_mix_u64 (state);
}

//  Uniform double in [0, 1).
static double
s_random_unit (rcd_gwsim_t *self)
{
    return (double)(s_random_u64 (self) >> 11) * 0x1.0p-53;
}

//  A fresh 64-bit value never returned before by this simulator.
static uint64_t
s_unique_u64 (rcd_gwsim_t *self)
{
    return s_mix_u64 (atomic_fetch_add (&self->ids, 1));
}

//  Keep only the digits of a phone number, as the gateways do for JIDs.
static void
s_copy_digits (char *dest, size_t dest_size, const char *number)
{
    size_t used = 0;
    for (const char *c = number; *c && used + 1 < dest_size; c++)
        if (*c >= '0' && *c <= '9')
            dest[used++] = *c;
    dest[used] = '\0';
}

//  Meta's fbtrace_id looks like 11 random letters and digits.
static void
s_make_fbtrace (rcd_gwsim_t *self, char *dest)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t bits = s_unique_u64 (self);
    for (int i = 0; i < 11; i++) {
        dest[i] = alphabet[bits % 62];
        bits /= 62;
    }
    dest[11] = '\0';
}

//  --------------------------------------------------------------------------
//  Hash table

//  Find the node with this key, or NULL.
static s_node_t *
s_table_find (s_table_t *table, uint64_t hash, const char *key, size_t len)
{
    if (!table->buckets)
        return NULL;
    s_node_t *node = table->buckets[hash & table->mask];
    for (; node; node = node->next)
        if (node->hash == hash && node->key_len == len &&
            memcmp (node->key, key, len) == 0)
            return node;
    return NULL;
}

//  Link a node in, doubling the buckets when the table is full so chains
//  stay short at 100 000 keys. Returns -1 when memory is exhausted.
static int
s_table_insert (s_table_t *table, s_node_t *node)
{
    if (!table->buckets || table->count >= table->mask + 1) {
        size_t size = table->buckets ? (table->mask + 1) * 2 : 1024;
        s_node_t **buckets = calloc (size, sizeof *buckets);
        if (!buckets)
            return -1;
        for (size_t i = 0; table->buckets && i <= table->mask; i++) {
            s_node_t *next;
            for (s_node_t *old = table->buckets[i]; old; old = next) {
                next = old->next;
                old->next = buckets[old->hash & (size - 1)];
                buckets[old->hash & (size - 1)] = old;
            }
        }
        free (table->buckets);
        table->buckets = buckets;
        table->mask = size - 1;
    }
    node->next = table->buckets[node->hash & table->mask];
    table->buckets[node->hash & table->mask] = node;
    table->count++;
    return 0;
}

//  Empty the table, freeing the nodes when they are owned by it.
static void
s_table_clear (s_table_t *table, bool free_nodes)
{
    for (size_t i = 0; free_nodes && table->buckets && i <= table->mask; i++) {
        s_node_t *next;
        for (s_node_t *node = table->buckets[i]; node; node = next) {
            next = node->next;
            free (node);
        }
    }
    free (table->buckets);
    memset (table, 0, sizeof *table);
}

//  --------------------------------------------------------------------------
//  Configuration

//  Map a kind name to its fate, or -1 when it is not an injectable kind.
static int
s_kind_from_name (const char *name)
{
    for (int kind = 0; kind < S_KIND_COUNT; kind++)
        if (strcmp (s_fate_names[kind], name) == 0)
            return kind;
    return -1;
}

//  Defaults: no latency, no errors, every instance open and known.
static int
s_config_init (s_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->retry_after_s = 1;
    config->hang_ms = S_DEFAULT_HANG_MS;
    config->seed = (json_int_t)S_DEFAULT_SEED;
    config->instances = json_object ();
    config->number_errors = json_object ();
    config->webhook = rcd_gwhooks_defaults ();
    return config->instances && config->number_errors && config->webhook ? 0
                                                                         : -1;
}

//  Release a configuration's JSON members.
static void
s_config_fini (s_config_t *config)
{
    json_decref (config->instances);
    json_decref (config->number_errors);
    json_decref (config->webhook);
    config->instances = NULL;
    config->number_errors = NULL;
    config->webhook = NULL;
}

//  Read an integer knob within [min, max]; -2 with a message otherwise.
static int
s_patch_int (json_t *value, const char *key, int min, int max, int *out,
             char *err, size_t err_size)
{
    if (!json_is_integer (value) || json_integer_value (value) < min ||
        json_integer_value (value) > max) {
        snprintf (err, err_size, "%s must be an integer in [%d, %d]", key, min,
                  max);
        return -2;
    }
    *out = (int)json_integer_value (value);
    return 0;
}

//  Merge error_rates into config: each known kind to a probability, null
//  removes one. The sum must stay <= 1 so one draw picks one kind.
static int
s_patch_rates (s_config_t *config, json_t *rates, char *err, size_t err_size)
{
    if (!json_is_object (rates)) {
        snprintf (err, err_size, "error_rates must be an object");
        return -2;
    }
    const char *name;
    json_t *value;
    json_object_foreach (rates, name, value)
    {
        int kind = s_kind_from_name (name);
        if (kind < 0) {
            snprintf (err, err_size, "error_rates.%s: unknown kind", name);
            return -2;
        }
        if (json_is_null (value)) {
            config->rates[kind] = 0;
            continue;
        }
        double rate = json_number_value (value);
        if (!json_is_number (value) || rate < 0 || rate > 1) {
            snprintf (err, err_size,
                      "error_rates.%s must be a number in [0, 1]", name);
            return -2;
        }
        config->rates[kind] = rate;
    }
    double sum = 0;
    for (int kind = 0; kind < S_KIND_COUNT; kind++)
        sum += config->rates[kind];
    if (sum > 1.0 + 1e-9) {
        snprintf (err, err_size, "error_rates must sum to at most 1");
        return -2;
    }
    return 0;
}

//  Check one instance entry: optional state/apikey/token strings and an
//  unknown flag, nothing else.
static int
s_check_instance (const char *name, json_t *entry, char *err, size_t err_size)
{
    if (!json_is_object (entry)) {
        snprintf (err, err_size, "instances.%s must be an object or null",
                  name);
        return -2;
    }
    const char *key;
    json_t *value;
    json_object_foreach (entry, key, value)
    {
        size_t limit = strcmp (key, "state") == 0        ? 32
                       : strcmp (key, "apikey") == 0     ? S_KEY_MAX
                       : strcmp (key, "token") == 0      ? S_KEY_MAX
                       : strcmp (key, "app_secret") == 0 ? S_KEY_MAX
                                                         : 0;
        if (limit && json_is_string (value) &&
            strlen (json_string_value (value)) < limit)
            continue;
        if (strcmp (key, "unknown") == 0 && json_is_boolean (value))
            continue;
        snprintf (err, err_size, "instances.%s.%s is not a known setting", name,
                  key);
        return -2;
    }
    return 0;
}

//  Merge a {name: value} patch into a JSON map; null removes a name, and
//  check_value rejects a bad value (name and value in, -2 out).
static int
s_patch_map (json_t *map, json_t *patch, const char *what,
             int (*check_value) (const char *, json_t *, char *, size_t),
             char *err, size_t err_size)
{
    if (!json_is_object (patch)) {
        snprintf (err, err_size, "%s must be an object", what);
        return -2;
    }
    const char *name;
    json_t *value;
    json_object_foreach (patch, name, value)
    {
        if (json_is_null (value)) {
            json_object_del (map, name);
            continue;
        }
        if (check_value (name, value, err, err_size))
            return -2;
        if (json_object_set (map, name, value))
            return -1;
    }
    return 0;
}

//  A number_errors value must name an injectable kind, alone (every send
//  to the number) or as {"kind", "nth"} (only its nth send from now).
static int
s_check_number_error (const char *number, json_t *value, char *err,
                      size_t err_size)
{
    if (json_is_string (value) &&
        s_kind_from_name (json_string_value (value)) >= 0)
        return 0;
    json_t *kind = json_object_get (value, "kind");
    json_t *nth = json_object_get (value, "nth");
    if (json_is_object (value) && json_object_size (value) == 2 &&
        json_is_string (kind) &&
        s_kind_from_name (json_string_value (kind)) >= 0 &&
        json_is_integer (nth) && json_integer_value (nth) >= 1 &&
        json_integer_value (nth) <= 1000000000) {
        //  its own copy: the sends to the number are counted in it
        json_t *copy =
            json_pack ("{s:O, s:O, s:i}", "kind", kind, "nth", nth, "seen", 0);
        if (!copy) {
            snprintf (err, err_size, "out of memory");
            return -2;
        }
        json_object_clear (value);
        json_object_update (value, copy);
        json_decref (copy);
        return 0;
    }
    snprintf (err, err_size, "number_errors.%s: unknown kind", number);
    return -2;
}

//  Apply one control document to a copy of the knobs and swap it in only
//  when every key was valid, so a bad document changes nothing.
static int
s_apply_config (rcd_gwsim_t *self, const char *json, size_t len, char *err,
                size_t err_size)
{
    json_error_t jerr;
    json_t *doc = json_loadb (json, len, 0, &jerr);
    if (!json_is_object (doc)) {
        snprintf (err, err_size, "body must be a JSON object");
        json_decref (doc);
        return -2;
    }
    pthread_mutex_lock (&self->config_lock);
    s_config_t next = self->config;
    next.instances = json_deep_copy (self->config.instances);
    next.number_errors = json_deep_copy (self->config.number_errors);
    next.webhook = json_incref (self->config.webhook);
    int rc = next.instances && next.number_errors ? 0 : -1;
    bool seeded = false;
    bool webhook_changed = false;
    const char *key;
    json_t *value;
    json_object_foreach (doc, key, value)
    {
        if (rc)
            break;
        if (strcmp (key, "latency_ms") == 0)
            rc = s_patch_int (value, key, 0, S_MAX_HOLD_MS, &next.latency_ms,
                              err, err_size);
        else if (strcmp (key, "latency_jitter_ms") == 0)
            rc = s_patch_int (value, key, 0, S_MAX_HOLD_MS, &next.jitter_ms,
                              err, err_size);
        else if (strcmp (key, "retry_after_s") == 0)
            rc = s_patch_int (value, key, 0, 86400, &next.retry_after_s, err,
                              err_size);
        else if (strcmp (key, "per_number_rate_cap") == 0)
            rc = s_patch_int (value, key, 0, 1000000, &next.rate_cap, err,
                              err_size);
        else if (strcmp (key, "hang_ms") == 0)
            rc = s_patch_int (value, key, 0, S_MAX_HOLD_MS, &next.hang_ms, err,
                              err_size);
        else if (strcmp (key, "error_rates") == 0)
            rc = s_patch_rates (&next, value, err, err_size);
        else if (strcmp (key, "instances") == 0)
            rc = s_patch_map (next.instances, value, key, s_check_instance, err,
                              err_size);
        else if (strcmp (key, "number_errors") == 0)
            rc = s_patch_map (next.number_errors, value, key,
                              s_check_number_error, err, err_size);
        else if (strcmp (key, "webhook") == 0) {
            json_t *merged = NULL;
            rc =
                rcd_gwhooks_merge (next.webhook, value, &merged, err, err_size);
            if (rc == 0) {
                json_decref (next.webhook);
                next.webhook = merged;
                webhook_changed = true;
            }
        }
        else if (strcmp (key, "down") == 0 && json_is_boolean (value))
            next.down = json_is_true (value);
        else if (strcmp (key, "seed") == 0 && json_is_integer (value)) {
            next.seed = json_integer_value (value);
            seeded = true;
        }
        else {
            snprintf (err, err_size, "%s: unknown knob or wrong type", key);
            rc = -2;
        }
    }
    //  the webhook thread takes its settings last: a failure there still
    //  leaves everything as it was
    if (rc == 0 && webhook_changed)
        rc = rcd_gwhooks_set_settings (self->hooks, next.webhook);
    if (rc == 0) {
        s_config_fini (&self->config);
        self->config = next;
        if (seeded)
            atomic_store (&self->prng, (uint64_t)next.seed);
    }
    else
        s_config_fini (&next);
    pthread_mutex_unlock (&self->config_lock);
    if (rc == -1)
        snprintf (err, err_size, "out of memory");
    json_decref (doc);
    return rc;
}

//  The effective knobs as a JSON document, for GET /_sim/config.
static json_t *
s_config_to_json (rcd_gwsim_t *self)
{
    json_t *rates = json_object ();
    pthread_mutex_lock (&self->config_lock);
    s_config_t *config = &self->config;
    for (int kind = 0; rates && kind < S_KIND_COUNT; kind++)
        if (config->rates[kind] > 0)
            json_object_set_new (rates, s_fate_names[kind],
                                 json_real (config->rates[kind]));
    json_t *doc = json_pack (
        "{s:i, s:i, s:o*, s:i, s:i, s:i, s:b, s:I, s:O, s:O, s:O}",
        "latency_ms", config->latency_ms, "latency_jitter_ms",
        config->jitter_ms, "error_rates", rates, "retry_after_s",
        config->retry_after_s, "per_number_rate_cap", config->rate_cap,
        "hang_ms", config->hang_ms, "down", config->down, "seed", config->seed,
        "instances", config->instances, "number_errors", config->number_errors,
        "webhook", config->webhook);
    pthread_mutex_unlock (&self->config_lock);
    return doc;
}

//  Copy a string knob into a fixed buffer; false when it is absent.
static bool
s_copy_knob (json_t *entry, const char *key, char *dest, size_t dest_size)
{
    const char *value = json_string_value (json_object_get (entry, key));
    if (!value)
        return false;
    snprintf (dest, dest_size, "%s", value);
    return true;
}

//  Everything one send needs from the knobs, in one lock acquisition, and
//  the random draws for it.
static void
s_take_snapshot (rcd_gwsim_t *self, const char *instance, const char *number,
                 s_snapshot_t *snap)
{
    memset (snap, 0, sizeof *snap);
    strcpy (snap->state, "open");
    snap->forced = FATE_SENT;
    snap->drawn = FATE_SENT;
    double draw = s_random_unit (self);
    double jitter_draw = s_random_unit (self);

    pthread_mutex_lock (&self->config_lock);
    s_config_t *config = &self->config;
    json_t *entry =
        instance ? json_object_get (config->instances, instance) : NULL;
    if (entry) {
        snap->unknown = json_is_true (json_object_get (entry, "unknown"));
        s_copy_knob (entry, "state", snap->state, sizeof snap->state);
        snap->has_apikey =
            s_copy_knob (entry, "apikey", snap->apikey, sizeof snap->apikey);
        snap->has_token =
            s_copy_knob (entry, "token", snap->token, sizeof snap->token);
        snap->has_app_secret = s_copy_knob (
            entry, "app_secret", snap->app_secret, sizeof snap->app_secret);
    }
    if (number && json_object_size (config->number_errors)) {
        json_t *kind = json_object_get (config->number_errors, number);
        if (!kind) {
            char digits[64];
            s_copy_digits (digits, sizeof digits, number);
            kind = json_object_get (config->number_errors, digits);
        }
        if (json_is_object (kind)) {
            //  {"kind", "nth"}: count this send; only the nth fails
            json_int_t seen =
                json_integer_value (json_object_get (kind, "seen")) + 1;
            json_object_set_new (kind, "seen", json_integer (seen));
            kind = seen == json_integer_value (json_object_get (kind, "nth"))
                       ? json_object_get (kind, "kind")
                       : NULL;
        }
        if (kind)
            snap->forced =
                (s_fate_t)s_kind_from_name (json_string_value (kind));
    }
    double cumulative = 0;
    for (int kind = 0; kind < S_KIND_COUNT; kind++) {
        cumulative += config->rates[kind];
        if (config->rates[kind] > 0 && draw < cumulative) {
            snap->drawn = (s_fate_t)kind;
            break;
        }
    }
    snap->down = config->down;
    snap->hold_ms =
        config->latency_ms + (int)(jitter_draw * (config->jitter_ms + 1));
    snap->retry_after_s = config->retry_after_s;
    snap->rate_cap = config->rate_cap;
    snap->hang_ms = config->hang_ms;
    pthread_mutex_unlock (&self->config_lock);
}

//  --------------------------------------------------------------------------
//  Counting store

//  Count one arrival of (instance, number, text) and log it, unless the
//  number is over its per-second cap. Returns FATE_SENT, FATE_RATE_CAP, or
//  FATE_5XX when memory ran out (answered as a gateway failure).
static s_fate_t
s_record_send (rcd_gwsim_t *self, const char *instance, const char *number,
               const char *text, int rate_cap)
{
    size_t instance_len = strlen (instance);
    size_t number_len = strlen (number);
    size_t text_len = strlen (text);
    size_t key_len = instance_len + number_len + text_len + 2;
    int64_t now_ms = s_wall_ms ();
    s_fate_t fate = FATE_5XX;

    //  Build the key before taking the lock; freed again when not new
    s_item_t *fresh = malloc (sizeof *fresh + key_len + 1);
    if (!fresh)
        return FATE_5XX;
    char *blob = fresh->blob;
    memcpy (blob, instance, instance_len + 1);
    memcpy (blob + instance_len + 1, number, number_len + 1);
    memcpy (blob + instance_len + number_len + 2, text, text_len + 1);
    uint64_t hash = s_hash_bytes (blob, key_len, S_FNV_BASIS);
    uint64_t number_hash = s_hash_bytes (number, number_len, S_FNV_BASIS);

    pthread_mutex_lock (&self->store_lock);
    if (rate_cap > 0) {
        s_rate_t *window = (s_rate_t *)s_table_find (&self->rates, number_hash,
                                                     number, number_len);
        if (!window) {
            window = calloc (1, sizeof *window + number_len + 1);
            if (!window)
                goto cleanup;
            memcpy (window->blob, number, number_len + 1);
            window->node.key = window->blob;
            window->node.key_len = number_len;
            window->node.hash = number_hash;
            if (s_table_insert (&self->rates, &window->node)) {
                free (window);
                goto cleanup;
            }
        }
        if (window->second != now_ms / 1000) {
            window->second = now_ms / 1000;
            window->count = 0;
        }
        if (window->count >= rate_cap) {
            fate = FATE_RATE_CAP;
            goto cleanup;
        }
        window->count++;
    }
    if (self->log_count == self->log_cap) {
        size_t cap = self->log_cap ? self->log_cap * 2 : 4096;
        s_entry_t *log = realloc (self->log, cap * sizeof *log);
        if (!log)
            goto cleanup;
        self->log = log;
        self->log_cap = cap;
    }
    s_item_t *item =
        (s_item_t *)s_table_find (&self->items, hash, blob, key_len);
    if (!item) {
        if (self->items.count == self->order_cap) {
            size_t cap = self->order_cap ? self->order_cap * 2 : 4096;
            s_item_t **order = realloc (self->order, cap * sizeof *order);
            if (!order)
                goto cleanup;
            self->order = order;
            self->order_cap = cap;
        }
        item = fresh;
        fresh = NULL;
        item->node.key = item->blob;
        item->node.key_len = key_len;
        item->node.hash = hash;
        item->count = 0;
        item->number = item->blob + instance_len + 1;
        item->text = item->number + number_len + 1;
        if (s_table_insert (&self->items, &item->node)) {
            free (item);
            goto cleanup;
        }
        self->order[self->items.count - 1] = item;
    }
    item->count++;
    self->total++;
    self->log[self->log_count].item = item;
    self->log[self->log_count].recv_ms = now_ms;
    self->log_count++;
    fate = FATE_SENT;
cleanup:
    pthread_mutex_unlock (&self->store_lock);
    free (fresh);
    return fate;
}

//  Forget every count, log entry and rate window. Caller holds reset_lock
//  for writing so no reader still walks the items.
static void
s_clear_store (rcd_gwsim_t *self)
{
    pthread_mutex_lock (&self->store_lock);
    for (size_t i = 0; i < self->items.count; i++)
        free (self->order[i]);
    s_table_clear (&self->items, false);
    s_table_clear (&self->rates, true);
    free (self->order);
    self->order = NULL;
    self->order_cap = 0;
    free (self->log);
    self->log_base += self->log_count;
    self->log = NULL;
    self->log_count = 0;
    self->log_cap = 0;
    self->total = 0;
    pthread_mutex_unlock (&self->store_lock);
    for (int fate = 0; fate < FATE_COUNT; fate++)
        atomic_store (&self->errors[fate], 0);
}

//  GET /_sim/counts: totals, error counters and, when asked, every key.
static json_t *
s_counts_to_json (rcd_gwsim_t *self, bool with_items)
{
    json_t *errors = json_object ();
    for (int fate = 0; errors && fate < FATE_SENT; fate++) {
        size_t n = atomic_load (&self->errors[fate]);
        if (n)
            json_object_set_new (errors, s_fate_names[fate],
                                 json_integer ((json_int_t)n));
    }
    json_t *items = with_items ? json_array () : NULL;
    pthread_mutex_lock (&self->store_lock);
    for (size_t i = 0; items && i < self->items.count; i++) {
        s_item_t *item = self->order[i];
        json_array_append_new (
            items, json_pack ("{s:s, s:s, s:s, s:I}", "instance",
                              item->node.key, "number", item->number, "text",
                              item->text, "count", (json_int_t)item->count));
    }
    json_t *doc = json_pack (
        "{s:I, s:I, s:I, s:o*}", "total", (json_int_t)self->total, "distinct",
        (json_int_t)self->items.count, "duplicates",
        (json_int_t)(self->total - self->items.count), "errors", errors);
    pthread_mutex_unlock (&self->store_lock);
    if (doc && items)
        json_object_set_new (doc, "items", items);
    else
        json_decref (items);
    return doc;
}

//  GET /_sim/stats: the counts without items, and the webhook counters.
static json_t *
s_stats_to_json (rcd_gwsim_t *self)
{
    json_t *doc = s_counts_to_json (self, false);
    json_t *webhooks = rcd_gwhooks_stats (self->hooks);
    if (doc && webhooks)
        json_object_set_new (doc, "webhooks", webhooks);
    else {
        json_decref (doc);
        json_decref (webhooks);
        doc = NULL;
    }
    return doc;
}

//  GET /_sim/log: copy a page of entries under the lock, then render it
//  outside, so a large page does not stall the send path.
static json_t *
s_log_to_json (rcd_gwsim_t *self, uint64_t since_seq, size_t limit)
{
    pthread_rwlock_rdlock (&self->reset_lock);
    pthread_mutex_lock (&self->store_lock);
    uint64_t first = since_seq > self->log_base ? since_seq : self->log_base;
    uint64_t end = self->log_base + self->log_count;
    size_t count = first < end ? (size_t)(end - first) : 0;
    if (count > limit)
        count = limit;
    s_entry_t *page = malloc ((count ? count : 1) * sizeof *page);
    if (page && count)
        memcpy (page, self->log + (first - self->log_base),
                count * sizeof *page);
    pthread_mutex_unlock (&self->store_lock);

    json_t *entries = page ? json_array () : NULL;
    for (size_t i = 0; entries && i < count; i++) {
        s_item_t *item = page[i].item;
        json_array_append_new (
            entries, json_pack ("[I, I, s, s, s]", (json_int_t)(first + i),
                                (json_int_t)page[i].recv_ms, item->node.key,
                                item->number, item->text));
    }
    pthread_rwlock_unlock (&self->reset_lock);
    free (page);
    if (!entries)
        return NULL;
    uint64_t next_seq = first + count;
    return json_pack ("{s:I, s:o}", "next_seq", (json_int_t)next_seq, "entries",
                      entries);
}

//  --------------------------------------------------------------------------
//  Holding answers: a min-heap of deadlines and one timer thread

//  Restore the heap after the last element was appended.
static void
s_sift_up_hold (s_hold_t *heap, size_t at)
{
    while (at > 0) {
        size_t parent = (at - 1) / 2;
        if (heap[parent].due_ms <= heap[at].due_ms)
            break;
        s_hold_t swap = heap[parent];
        heap[parent] = heap[at];
        heap[at] = swap;
        at = parent;
    }
}

//  Remove and return the earliest hold. Caller holds hold_lock.
static s_hold_t
s_pop_hold (rcd_gwsim_t *self)
{
    s_hold_t *heap = self->holds;
    s_hold_t top = heap[0];
    heap[0] = heap[--self->hold_count];
    size_t at = 0;
    while (true) {
        size_t left = at * 2 + 1, right = left + 1, least = at;
        if (left < self->hold_count && heap[left].due_ms < heap[least].due_ms)
            least = left;
        if (right < self->hold_count && heap[right].due_ms < heap[least].due_ms)
            least = right;
        if (least == at)
            break;
        s_hold_t swap = heap[least];
        heap[least] = heap[at];
        heap[at] = swap;
        at = least;
    }
    return top;
}

//  The timer thread: sleep until the earliest deadline, resume what is
//  due. Resumes happen outside hold_lock so MHD's own locks never nest
//  inside ours in this direction.
static void *
s_run_timer (void *arg)
{
    rcd_gwsim_t *self = arg;
    pthread_mutex_lock (&self->hold_lock);
    while (!self->stopping) {
        if (self->hold_count == 0) {
            pthread_cond_wait (&self->hold_cond, &self->hold_lock);
            continue;
        }
        int64_t due = self->holds[0].due_ms;
        if (due <= s_mono_ms ()) {
            s_hold_t hold = s_pop_hold (self);
            pthread_mutex_unlock (&self->hold_lock);
            MHD_resume_connection (hold.conn);
            pthread_mutex_lock (&self->hold_lock);
            continue;
        }
        struct timespec until = {.tv_sec = due / 1000,
                                 .tv_nsec = (due % 1000) * 1000000};
        pthread_cond_timedwait (&self->hold_cond, &self->hold_lock, &until);
    }
    pthread_mutex_unlock (&self->hold_lock);
    return NULL;
}

//  Answer now: queue the response and drop our reference.
static enum MHD_Result
s_queue_answer (s_request_t *req, unsigned int status,
                struct MHD_Response *response)
{
    req->phase = PHASE_DONE;
    if (!response)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response (req->conn, status, response);
    MHD_destroy_response (response);
    return rc;
}

//  Hold an answer for ms without a thread: suspend the connection and let
//  the timer resume it; the handler then queues req->response (or closes
//  the connection when response is NULL: a hang). Answers at once when the
//  simulator is stopping or ms is 0.
static enum MHD_Result
s_hold_answer (s_request_t *req, int ms, unsigned int status,
               struct MHD_Response *response)
{
    rcd_gwsim_t *self = req->self;
    if (ms <= 0)
        return s_queue_answer (req, status, response);
    pthread_mutex_lock (&self->hold_lock);
    if (self->stopping) {
        pthread_mutex_unlock (&self->hold_lock);
        return s_queue_answer (req, status, response);
    }
    if (self->hold_count == self->hold_cap) {
        size_t cap = self->hold_cap ? self->hold_cap * 2 : 256;
        s_hold_t *holds = realloc (self->holds, cap * sizeof *holds);
        if (!holds) {
            pthread_mutex_unlock (&self->hold_lock);
            return s_queue_answer (req, status, response);
        }
        self->holds = holds;
        self->hold_cap = cap;
    }
    req->phase = response ? PHASE_HELD : PHASE_HUNG;
    req->response = response;
    req->status = status;
    //  Suspend before the timer can see the entry: it may resume at once
    MHD_suspend_connection (req->conn);
    req->was_held = true;
    self->held_live++;
    self->holds[self->hold_count].due_ms = s_mono_ms () + ms;
    self->holds[self->hold_count].conn = req->conn;
    s_sift_up_hold (self->holds, self->hold_count++);
    if (self->holds[0].conn == req->conn)
        pthread_cond_signal (&self->hold_cond);
    pthread_mutex_unlock (&self->hold_lock);
    return MHD_YES;
}

//  --------------------------------------------------------------------------
//  Responses

//  Wrap a JSON document (consumed) as an MHD response; NULL on failure.
static struct MHD_Response *
s_new_json_response (json_t *doc)
{
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    if (!text)
        return NULL;
    struct MHD_Response *response = MHD_create_response_from_buffer (
        strlen (text), text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (text);
        return NULL;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE,
                             "application/json; charset=utf-8");
    return response;
}

//  Attach Retry-After to a throttling answer.
static struct MHD_Response *
s_add_retry_after (struct MHD_Response *response, int seconds)
{
    char value[16];
    snprintf (value, sizeof value, "%d", seconds);
    if (response)
        MHD_add_response_header (response, MHD_HTTP_HEADER_RETRY_AFTER, value);
    return response;
}

//  Evolution's error envelope {status, error, response: {message}}, where
//  message (consumed) is a string, a list of strings or of objects.
static struct MHD_Response *
s_new_evolution_error (unsigned int status, json_t *message)
{
    const char *reason = status == 400   ? "Bad Request"
                         : status == 401 ? "Unauthorized"
                         : status == 404 ? "Not Found"
                         : status == 413 ? "Payload Too Large"
                         : status == 429 ? "Too Many Requests"
                                         : "Service Unavailable";
    return s_new_json_response (json_pack ("{s:i, s:s, s:{s:o}}", "status",
                                           (int)status, "error", reason,
                                           "response", "message", message));
}

//  Meta's error envelope {error: {message, type, code, error_subcode?,
//  fbtrace_id}}.
static struct MHD_Response *
s_new_meta_error (rcd_gwsim_t *self, int code, int subcode, const char *message)
{
    char fbtrace[12];
    s_make_fbtrace (self, fbtrace);
    json_t *error =
        json_pack ("{s:s, s:s, s:i, s:s}", "message", message, "type",
                   "OAuthException", "code", code, "fbtrace_id", fbtrace);
    if (error && subcode)
        json_object_set_new (error, "error_subcode", json_integer (subcode));
    return s_new_json_response (json_pack ("{s:o*}", "error", error));
}

//  Our own control-API error, in recado's envelope (API.md "Errors").
static enum MHD_Result
s_answer_control_error (s_request_t *req, unsigned int status, const char *code,
                        const char *message)
{
    json_t *doc = json_pack ("{s:{s:s, s:s, s:n}}", "error", "code", code,
                             "message", message, "field");
    return s_queue_answer (req, status, s_new_json_response (doc));
}

//  Evolution's instanceId: a UUID-looking value, stable per instance name
//  as in the real one.
static void
s_make_instance_id (const char *instance, char instance_id[40])
{
    uint64_t hash = s_hash_bytes (instance, strlen (instance), S_FNV_BASIS);
    uint64_t hash2 = s_mix_u64 (hash);
    snprintf (instance_id, 40,
              "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-a%03" PRIx64
              "-%012" PRIx64,
              hash >> 32, (hash >> 16) & 0xffff, hash & 0xfff, hash2 >> 52,
              (uint64_t)(hash2 & 0xffffffffffffULL));
}

//  Evolution's 201 body: key.id is what receipts will refer to, so the
//  caller makes it unique.
static struct MHD_Response *
s_new_evolution_success (const char *instance, const char *number,
                         const char *text, const char *id, int64_t timestamp)
{
    char digits[80], jid[96], instance_id[40];
    s_copy_digits (digits, sizeof digits, number);
    snprintf (jid, sizeof jid, "%s@s.whatsapp.net", digits);
    s_make_instance_id (instance, instance_id);
    return s_new_json_response (json_pack (
        "{s:{s:s, s:b, s:s}, s:s, s:s, s:{s:s}, s:s, s:I, s:s, s:s}", "key",
        "remoteJid", jid, "fromMe", 1, "id", id, "pushName", "", "status",
        "PENDING", "message", "conversation", text, "messageType",
        "conversation", "messageTimestamp", (json_int_t)timestamp, "instanceId",
        instance_id, "source", "unknown"));
}

//  Queue the webhooks of an Evolution send that went out (or may have):
//  the same key.id and timestamp as its 201 would carry.
static void
s_evolution_webhooks (s_request_t *req, const char *apikey, const char *number,
                      const char *text, const char *id, int64_t timestamp,
                      int typing_ms)
{
    char instance_id[40];
    s_make_instance_id (req->name, instance_id);
    rcd_gwhooks_evolution_t send = {.instance = req->name,
                                    .instance_id = instance_id,
                                    .apikey = apikey,
                                    .number = number,
                                    .text = text,
                                    .key_id = id,
                                    .timestamp = timestamp,
                                    .typing_ms = typing_ms,
                                    .server_url = req->self->url};
    rcd_gwhooks_evolution_sent (req->self->hooks, &send);
}

//  Meta's 200 body with the wamid the caller made fresh, and wa_id as the
//  digits of to.
static struct MHD_Response *
s_new_meta_success (const char *to, const char *text, const char *wamid)
{
    char wa_id[64];
    s_copy_digits (wa_id, sizeof wa_id, to);
    json_t *message = json_pack ("{s:s}", "id", wamid);
    if (message && strncmp (text, "template:", 9) == 0)
        json_object_set_new (message, "message_status",
                             json_string ("accepted"));
    return s_new_json_response (json_pack (
        "{s:s, s:[{s:s, s:s}], s:[o*]}", "messaging_product", "whatsapp",
        "contacts", "input", to, "wa_id", wa_id, "messages", message));
}

//  Evolution's answer for each failure fate of a send.
static struct MHD_Response *
s_new_evolution_failure (s_fate_t fate, const char *number,
                         const s_snapshot_t *snap, unsigned int *status)
{
    char digits[80], jid[96];
    switch (fate) {
        case FATE_429:
        case FATE_META_130429:
        case FATE_META_131048:
        case FATE_RATE_CAP:
            *status = 429;
            return s_add_retry_after (
                s_new_evolution_error (429,
                                       json_pack ("[s]", "Too Many Requests")),
                snap->retry_after_s);
        case FATE_NOT_ON_WHATSAPP:
            *status = 400;
            s_copy_digits (digits, sizeof digits, number);
            snprintf (jid, sizeof jid, "%s@s.whatsapp.net", digits);
            return s_new_evolution_error (400, json_pack ("[{s:s, s:b, s:s}]",
                                                          "jid", jid, "exists",
                                                          0, "number", number));
        case FATE_UNKNOWN_400:
        case FATE_CLOSED:
            *status = 400;
            return s_new_evolution_error (
                400, json_pack ("[s]", "Connection Closed"));
        default:
            *status = 503;
            return s_new_evolution_error (
                503, json_pack ("[s]", "Service Unavailable"));
    }
}

//  Meta's answer for each failure fate of a send (branch on code, not on
//  the HTTP status, as Meta's own documentation disagrees about it).
static struct MHD_Response *
s_new_meta_failure (rcd_gwsim_t *self, s_fate_t fate, const s_snapshot_t *snap,
                    unsigned int *status)
{
    switch (fate) {
        case FATE_429:
            *status = 429;
            return s_add_retry_after (
                s_new_meta_error (self, 4, 0,
                                  "(#4) Application request limit reached"),
                snap->retry_after_s);
        case FATE_META_130429:
            *status = 400;
            return s_new_meta_error (
                self, 130429, 0,
                "(#130429) Rate limit hit: Cloud API message throughput "
                "has been reached.");
        case FATE_META_131048:
            *status = 400;
            return s_new_meta_error (
                self, 131048, 0,
                "(#131048) Spam rate limit hit: Message failed to send "
                "because there are restrictions on how many messages can "
                "be sent from this phone number.");
        case FATE_RATE_CAP:
            *status = 400;
            return s_new_meta_error (
                self, 131056, 0,
                "(#131056) (Business Account, Consumer Account) pair rate "
                "limit hit");
        case FATE_NOT_ON_WHATSAPP:
            *status = 400;
            return s_new_meta_error (self, 131026, 0,
                                     "(#131026) Message Undeliverable.");
        case FATE_UNKNOWN_400:
            *status = 500;
            return s_new_meta_error (self, 131000, 0,
                                     "(#131000) Something went wrong");
        default:
            *status = 503;
            return s_new_meta_error (self, 2, 0,
                                     "Service temporarily unavailable");
    }
}

//  --------------------------------------------------------------------------
//  Gateway endpoints

//  The shared tail of both send endpoints: pick the fate (down, closed,
//  forced, drawn, rate cap), count it, and tell the caller whether the
//  message was counted. Hang and reset are returned for the caller.
static s_fate_t
s_settle_send (rcd_gwsim_t *self, const s_snapshot_t *snap,
               const char *instance, const char *number, const char *text,
               bool evolution)
{
    s_fate_t fate = FATE_SENT;
    if (snap->down)
        fate = FATE_DOWN;
    else if (evolution && strcmp (snap->state, "open") != 0)
        fate = FATE_CLOSED;
    else if (snap->forced != FATE_SENT)
        fate = snap->forced;
    else if (snap->drawn != FATE_SENT)
        fate = snap->drawn;
    if (fate == FATE_SENT)
        fate = s_record_send (self, instance, number, text, snap->rate_cap);
    else if (fate == FATE_UNKNOWN_400)
        s_record_send (self, instance, number, text, 0);
    if (fate != FATE_SENT)
        atomic_fetch_add (&self->errors[fate], 1);
    return fate;
}

//  Evolution's delay may arrive as a number or a numeric string; the hold
//  is capped so a typo cannot pin a connection for days.
static int
s_read_delay (json_t *value)
{
    double delay = 0;
    if (json_is_number (value))
        delay = json_number_value (value);
    else if (json_is_string (value))
        delay = strtod (json_string_value (value), NULL);
    if (!(delay > 0))
        return 0;
    return delay > S_MAX_HOLD_MS ? S_MAX_HOLD_MS : (int)delay;
}

//  POST /message/sendText/{instance}: Evolution's guards (apikey, then
//  instance), its body schema, then the shared send pipeline.
static enum MHD_Result
s_handle_evolution_send (s_request_t *req)
{
    rcd_gwsim_t *self = req->self;
    json_t *doc = NULL;
    const char *apikey =
        MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, "apikey");
    const char *number = NULL;
    const char *text = NULL;
    json_error_t jerr;
    if (req->size)
        doc = json_loadb (req->body, req->size, 0, &jerr);
    if (doc) {
        number = json_string_value (json_object_get (doc, "number"));
        text = json_string_value (json_object_get (doc, "text"));
    }
    s_snapshot_t snap;
    s_take_snapshot (self, req->name, number, &snap);

    struct MHD_Response *response = NULL;
    unsigned int status = 201;
    s_fate_t fate = FATE_SENT;
    int hold_ms = snap.hold_ms;
    if (!apikey || !*apikey ||
        (snap.has_apikey && strcmp (apikey, snap.apikey) != 0)) {
        fate = FATE_UNAUTHORIZED;
        status = 401;
        response = s_new_evolution_error (401, json_string ("Unauthorized"));
    }
    else if (snap.unknown) {
        fate = FATE_NOT_FOUND;
        status = 404;
        char message[S_KEY_MAX + 32];
        snprintf (message, sizeof message,
                  "The \"%.*s\" instance does not exist", S_KEY_MAX, req->name);
        response = s_new_evolution_error (404, json_pack ("[s]", message));
    }
    else if (!number || !*number || !text) {
        fate = FATE_BAD_REQUEST;
        status = 400;
        response = s_new_evolution_error (
            400, json_pack ("[[s]]", !number || !*number
                                         ? "instance requires property "
                                           "\"number\""
                                         : "instance requires property "
                                           "\"text\""));
    }
    if (fate != FATE_SENT)
        atomic_fetch_add (&self->errors[fate], 1);
    else {
        fate = s_settle_send (self, &snap, req->name, number, text, true);
        if (fate == FATE_SENT || fate == FATE_UNKNOWN_400) {
            //  the message goes out (or may have): the webhooks follow
            int typing_ms = s_read_delay (json_object_get (doc, "delay"));
            char id[24];
            snprintf (id, sizeof id, "3EB0%016" PRIX64, s_unique_u64 (self));
            int64_t timestamp = s_wall_ms () / 1000;
            hold_ms += typing_ms;
            s_evolution_webhooks (req, apikey, number, text, id, timestamp,
                                  typing_ms);
            if (fate == FATE_SENT)
                response = s_new_evolution_success (req->name, number, text, id,
                                                    timestamp);
        }
        if (fate != FATE_SENT && fate != FATE_HANG && fate != FATE_RESET)
            response = s_new_evolution_failure (fate, number, &snap, &status);
    }
    json_decref (doc);
    if (fate == FATE_RESET)
        return MHD_NO;
    if (fate == FATE_HANG)
        return s_hold_answer (req, snap.hang_ms, 0, NULL);
    return s_hold_answer (req, hold_ms, status, response);
}

//  GET /instance/connectionState/{instance}: the configured state, "open"
//  unless told otherwise, behind the same guards as a send.
static enum MHD_Result
s_handle_evolution_state (s_request_t *req)
{
    rcd_gwsim_t *self = req->self;
    const char *apikey =
        MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, "apikey");
    s_snapshot_t snap;
    s_take_snapshot (self, req->name, NULL, &snap);
    if (!apikey || !*apikey ||
        (snap.has_apikey && strcmp (apikey, snap.apikey) != 0))
        return s_queue_answer (
            req, 401,
            s_new_evolution_error (401, json_string ("Unauthorized")));
    if (snap.unknown) {
        char message[S_KEY_MAX + 32];
        snprintf (message, sizeof message,
                  "The \"%.*s\" instance does not exist", S_KEY_MAX, req->name);
        return s_queue_answer (
            req, 404, s_new_evolution_error (404, json_pack ("[s]", message)));
    }
    json_t *doc = json_pack ("{s:{s:s, s:s}}", "instance", "instanceName",
                             req->name, "state", snap.state);
    return s_queue_answer (req, 200, s_new_json_response (doc));
}

//  Meta's bearer token: present, well formed, and equal to the configured
//  one when the phone_number_id has one.
static bool
s_meta_token_ok (s_request_t *req, const s_snapshot_t *snap)
{
    const char *header = MHD_lookup_connection_value (
        req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!header || strncasecmp (header, "Bearer ", 7) != 0 || !header[7])
        return false;
    return !snap->has_token || strcmp (header + 7, snap->token) == 0;
}

//  Read a Meta send body into the counted text: text.body, or
//  "template:<name>". Returns the error message for a bad body, or NULL.
static const char *
s_read_meta_body (json_t *doc, const char **to, char **text)
{
    if (!json_is_object (doc))
        return "(#100) Invalid parameter";
    const char *product =
        json_string_value (json_object_get (doc, "messaging_product"));
    if (!product || strcmp (product, "whatsapp") != 0)
        return "(#100) The parameter messaging_product is required.";
    *to = json_string_value (json_object_get (doc, "to"));
    if (!*to || !**to)
        return "(#100) The parameter to is required.";
    const char *type = json_string_value (json_object_get (doc, "type"));
    if (!type || strcmp (type, "text") == 0) {
        const char *body = json_string_value (
            json_object_get (json_object_get (doc, "text"), "body"));
        if (!body)
            return "(#100) The parameter text['body'] is required.";
        *text = strdup (body);
    }
    else if (strcmp (type, "template") == 0) {
        const char *name = json_string_value (
            json_object_get (json_object_get (doc, "template"), "name"));
        if (!name)
            return "(#100) The parameter template['name'] is required.";
        if (asprintf (text, "template:%s", name) < 0)
            *text = NULL;
    }
    else
        return "(#100) Invalid parameter";
    return *text ? NULL : "(#1) An unknown error occurred";
}

//  POST /{version}/{phone_number_id}/messages: Meta's token check, its body
//  schema, then the shared send pipeline.
static enum MHD_Result
s_handle_meta_send (s_request_t *req)
{
    rcd_gwsim_t *self = req->self;
    json_error_t jerr;
    json_t *doc =
        req->size ? json_loadb (req->body, req->size, 0, &jerr) : NULL;
    const char *to = NULL;
    char *text = NULL;
    const char *bad_body = s_read_meta_body (doc, &to, &text);
    s_snapshot_t snap;
    s_take_snapshot (self, req->name, to, &snap);

    struct MHD_Response *response = NULL;
    unsigned int status = 200;
    s_fate_t fate = FATE_SENT;
    if (!s_meta_token_ok (req, &snap)) {
        fate = FATE_UNAUTHORIZED;
        status = 401;
        response = s_new_meta_error (
            self, 190, 0,
            "Invalid OAuth access token - Cannot parse access token");
    }
    else if (snap.unknown) {
        fate = FATE_NOT_FOUND;
        status = 400;
        char message[S_KEY_MAX + 200];
        snprintf (message, sizeof message,
                  "Unsupported post request. Object with ID '%.*s' does not "
                  "exist, cannot be loaded due to missing permissions, or "
                  "does not support this operation.",
                  S_KEY_MAX, req->name);
        response = s_new_meta_error (self, 100, 33, message);
    }
    else if (bad_body) {
        fate = FATE_BAD_REQUEST;
        status = 400;
        response = s_new_meta_error (self, 100, 0, bad_body);
    }
    if (fate != FATE_SENT)
        atomic_fetch_add (&self->errors[fate], 1);
    else {
        fate = s_settle_send (self, &snap, req->name, to, text, false);
        if (fate == FATE_SENT || fate == FATE_UNKNOWN_400) {
            //  the message goes out (or may have): its statuses follow
            char wamid[64];
            snprintf (wamid, sizeof wamid,
                      "wamid.HBgM%016" PRIX64 "%016" PRIX64,
                      s_unique_u64 (self), s_unique_u64 (self));
            rcd_gwhooks_meta_t send = {
                .phone_number_id = req->name,
                .app_secret = snap.has_app_secret ? snap.app_secret : NULL,
                .to = to,
                .wamid = wamid};
            rcd_gwhooks_meta_sent (self->hooks, &send);
            if (fate == FATE_SENT)
                response = s_new_meta_success (to, text, wamid);
        }
        if (fate != FATE_SENT && fate != FATE_HANG && fate != FATE_RESET)
            response = s_new_meta_failure (self, fate, &snap, &status);
    }
    free (text);
    json_decref (doc);
    if (fate == FATE_RESET)
        return MHD_NO;
    if (fate == FATE_HANG)
        return s_hold_answer (req, snap.hang_ms, 0, NULL);
    return s_hold_answer (req, snap.hold_ms, status, response);
}

//  --------------------------------------------------------------------------
//  Control endpoints

//  GET or POST /_sim/config.
static enum MHD_Result
s_handle_config (s_request_t *req, bool is_post)
{
    if (is_post) {
        char err[256] = "";
        int rc = s_apply_config (req->self, req->body ? req->body : "",
                                 req->size, err, sizeof err);
        if (rc)
            return s_answer_control_error (
                req, rc == -2 ? 400 : 500,
                rc == -2 ? "invalid_field" : "unavailable", err);
    }
    return s_queue_answer (req, 200,
                           s_new_json_response (s_config_to_json (req->self)));
}

//  GET /_sim/log?since_seq=N&limit=M.
static enum MHD_Result
s_handle_log (s_request_t *req)
{
    const char *since = MHD_lookup_connection_value (
        req->conn, MHD_GET_ARGUMENT_KIND, "since_seq");
    const char *limit_arg =
        MHD_lookup_connection_value (req->conn, MHD_GET_ARGUMENT_KIND, "limit");
    uint64_t since_seq = since ? strtoull (since, NULL, 10) : 0;
    size_t limit = limit_arg ? strtoul (limit_arg, NULL, 10) : S_LOG_PAGE_MAX;
    if (limit == 0 || limit > S_LOG_PAGE_MAX)
        limit = S_LOG_PAGE_MAX;
    return s_queue_answer (
        req, 200,
        s_new_json_response (s_log_to_json (req->self, since_seq, limit)));
}

//  --------------------------------------------------------------------------
//  libmicrohttpd glue

//  Find the endpoint and copy the instance / phone_number_id out of the URL.
static s_route_t
s_match_route (const char *method, const char *url, char **name)
{
    bool get = strcmp (method, MHD_HTTP_METHOD_GET) == 0;
    bool post = strcmp (method, MHD_HTTP_METHOD_POST) == 0;
    const char *rest;
    if (post && strncmp (url, "/message/sendText/", 18) == 0) {
        rest = url + 18;
        if (*rest && !strchr (rest, '/')) {
            *name = strdup (rest);
            return *name ? ROUTE_EVO_SEND : ROUTE_NONE;
        }
        return ROUTE_NONE;
    }
    if (get && strncmp (url, "/instance/connectionState/", 26) == 0) {
        rest = url + 26;
        if (*rest && !strchr (rest, '/')) {
            *name = strdup (rest);
            return *name ? ROUTE_EVO_STATE : ROUTE_NONE;
        }
        return ROUTE_NONE;
    }
    if (strncmp (url, "/_sim/", 6) == 0) {
        rest = url + 6;
        if (strcmp (rest, "config") == 0 && (get || post))
            return ROUTE_SIM_CONFIG;
        if (strcmp (rest, "reset") == 0 && post)
            return ROUTE_SIM_RESET;
        if (strcmp (rest, "counts") == 0 && get)
            return ROUTE_SIM_COUNTS;
        if (strcmp (rest, "stats") == 0 && get)
            return ROUTE_SIM_STATS;
        if (strcmp (rest, "log") == 0 && get)
            return ROUTE_SIM_LOG;
        return ROUTE_NONE;
    }
    //  /{version}/{phone_number_id}/messages
    const char *id = url[0] == '/' ? strchr (url + 1, '/') : NULL;
    if (post && id && id > url + 1) {
        const char *end = strchr (id + 1, '/');
        if (end && end > id + 1 && strcmp (end, "/messages") == 0) {
            *name = strndup (id + 1, (size_t)(end - id - 1));
            return *name ? ROUTE_META_SEND : ROUTE_NONE;
        }
    }
    return ROUTE_NONE;
}

//  Collect upload data up to the limit; past it, discard and remember.
static void
s_append_body (s_request_t *req, const char *data, size_t size)
{
    if (req->too_large)
        return;
    if (req->size + size > RCD_GWSIM_MAX_BODY) {
        req->too_large = true;
        free (req->body);
        req->body = NULL;
        req->size = req->cap = 0;
        return;
    }
    if (req->size + size + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 1024;
        while (cap < req->size + size + 1)
            cap *= 2;
        char *body = realloc (req->body, cap);
        if (!body) {
            req->too_large = true;
            return;
        }
        req->body = body;
        req->cap = cap;
    }
    memcpy (req->body + req->size, data, size);
    req->size += size;
    req->body[req->size] = '\0';
}

//  413 in the envelope of the endpoint the client addressed.
static enum MHD_Result
s_answer_too_large (s_request_t *req)
{
    atomic_fetch_add (&req->self->errors[FATE_TOO_LARGE], 1);
    struct MHD_Response *response =
        req->route == ROUTE_META_SEND
            ? s_new_meta_error (req->self, 100, 0,
                                "(#100) Request body too large")
            : s_new_evolution_error (
                  413, json_pack ("[s]", "request entity too large"));
    return s_queue_answer (req, 413, response);
}

//  MHD's access handler: called once with the headers, once per chunk of
//  body, once when the body is complete, and once more after a resume.
static enum MHD_Result
s_handle_access (void *cls, struct MHD_Connection *conn, const char *url,
                 const char *method, const char *version,
                 const char *upload_data, size_t *upload_data_size,
                 void **con_cls)
{
    (void)version;
    rcd_gwsim_t *self = cls;
    s_request_t *req = *con_cls;
    if (!req) {
        req = calloc (1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->self = self;
        req->conn = conn;
        req->route = s_match_route (method, url, &req->name);
        *con_cls = req;
        //  A declared oversize body is refused before it is sent only when
        //  the client waits for 100 Continue; a client already sending it
        //  would get a reset instead of the 413, so that body is read and
        //  thrown away, and the 413 comes at the end
        const char *length = MHD_lookup_connection_value (
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *expect = MHD_lookup_connection_value (
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        if (length && strtoull (length, NULL, 10) > RCD_GWSIM_MAX_BODY) {
            req->too_large = true;
            if (expect && strcasestr (expect, "100-continue"))
                return s_answer_too_large (req);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        s_append_body (req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (req->phase) {
        case PHASE_HELD: {
            struct MHD_Response *response = req->response;
            req->response = NULL;
            return s_queue_answer (req, req->status, response);
        }
        case PHASE_HUNG:
            req->phase = PHASE_DONE;
            return MHD_NO;
        case PHASE_DONE:
            return MHD_YES;
        case PHASE_READING:
            break;
    }
    if (req->too_large)
        return s_answer_too_large (req);
    switch (req->route) {
        case ROUTE_EVO_SEND:
            return s_handle_evolution_send (req);
        case ROUTE_EVO_STATE:
            return s_handle_evolution_state (req);
        case ROUTE_META_SEND:
            return s_handle_meta_send (req);
        case ROUTE_SIM_CONFIG:
            return s_handle_config (req, strcmp (method, "POST") == 0);
        case ROUTE_SIM_RESET:
            rcd_gwsim_reset (self);
            return s_queue_answer (
                req, 200, s_new_json_response (json_pack ("{s:b}", "ok", 1)));
        case ROUTE_SIM_COUNTS: {
            const char *items = MHD_lookup_connection_value (
                conn, MHD_GET_ARGUMENT_KIND, "items");
            bool with_items = items && strcmp (items, "0") != 0;
            return s_queue_answer (
                req, 200,
                s_new_json_response (s_counts_to_json (self, with_items)));
        }
        case ROUTE_SIM_STATS:
            return s_queue_answer (
                req, 200, s_new_json_response (s_stats_to_json (self)));
        case ROUTE_SIM_LOG:
            return s_handle_log (req);
        case ROUTE_NONE:
            break;
    }
    char message[S_KEY_MAX];
    snprintf (message, sizeof message, "Cannot %s %.*s", method, 200, url);
    return s_queue_answer (
        req, 404, s_new_evolution_error (404, json_pack ("[s]", message)));
}

//  MHD's completion callback: the one place a request's state is freed.
static void
s_complete_request (void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    s_request_t *req = *con_cls;
    if (!req)
        return;
    if (req->was_held) {
        rcd_gwsim_t *self = req->self;
        pthread_mutex_lock (&self->hold_lock);
        self->held_live--;
        if (self->stopping)
            pthread_cond_broadcast (&self->hold_cond);
        pthread_mutex_unlock (&self->hold_lock);
    }
    if (req->response)
        MHD_destroy_response (req->response);
    free (req->body);
    free (req->name);
    free (req);
    *con_cls = NULL;
}

//  Parse the bind address into a socket address; -1 when it is neither an
//  IPv4 nor an IPv6 literal.
static int
s_parse_bind (const char *bind_addr, int port, struct sockaddr_storage *addr,
              bool *ipv6)
{
    memset (addr, 0, sizeof *addr);
    struct sockaddr_in *in4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
    if (inet_pton (AF_INET, bind_addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons ((uint16_t)port);
        *ipv6 = false;
        return 0;
    }
    if (inet_pton (AF_INET6, bind_addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons ((uint16_t)port);
        *ipv6 = true;
        return 0;
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  Public API

rcd_gwsim_t *
rcd_gwsim_new (const char *bind_addr, int port)
{
    if (!bind_addr)
        bind_addr = "127.0.0.1";
    struct sockaddr_storage addr;
    bool ipv6;
    if (port < 0 || port > 65535 ||
        s_parse_bind (bind_addr, port, &addr, &ipv6))
        return NULL;
    rcd_gwsim_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->config_lock, NULL);
    pthread_rwlock_init (&self->reset_lock, NULL);
    pthread_mutex_init (&self->store_lock, NULL);
    pthread_mutex_init (&self->hold_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->hold_cond, &attr);
    pthread_condattr_destroy (&attr);
    atomic_store (&self->prng, S_DEFAULT_SEED);
    atomic_store (&self->ids, ((uint64_t)s_wall_ms () * 1000003ULL) ^
                                  ((uint64_t)getpid () << 40));
    if (s_config_init (&self->config))
        goto failed;
    self->hooks = rcd_gwhooks_new ();
    if (!self->hooks)
        goto failed;
    if (pthread_create (&self->timer, NULL, s_run_timer, self))
        goto failed;
    self->timer_started = true;

    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_ALLOW_SUSPEND_RESUME | (ipv6 ? MHD_USE_IPv6 : 0);
#if defined(__linux__)
    flags |= MHD_USE_EPOLL;
#else
    flags |= MHD_USE_AUTO;
#endif
    self->daemon = MHD_start_daemon (
        flags, (uint16_t)port, NULL, NULL, s_handle_access, self,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)S_POOL_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)S_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)S_CONNECTION_TIMEOUT,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
        MHD_OPTION_NOTIFY_COMPLETED, s_complete_request, self, MHD_OPTION_END);
    if (!self->daemon)
        goto failed;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info && info->port ? info->port : port;
    bool any4 = strcmp (bind_addr, "0.0.0.0") == 0;
    bool any6 = ipv6 && strcmp (bind_addr, "::") == 0;
    snprintf (self->url, sizeof self->url,
              ipv6 ? "http://[%s]:%d" : "http://%s:%d",
              any4   ? "127.0.0.1"
              : any6 ? "::1"
                     : bind_addr,
              self->port);
    return self;

failed:
    rcd_gwsim_destroy (&self);
    return NULL;
}

void
rcd_gwsim_destroy (rcd_gwsim_t **self_p)
{
    assert (self_p);
    rcd_gwsim_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->hold_lock);
    self->stopping = true;
    pthread_cond_signal (&self->hold_cond);
    pthread_mutex_unlock (&self->hold_lock);
    if (self->timer_started)
        pthread_join (self->timer, NULL);
    //  MHD must not be stopped with suspended connections: release them
    //  all, and give the delayed answers a moment to go out, since their
    //  messages were already counted; hung ones are closed
    pthread_mutex_lock (&self->hold_lock);
    while (self->hold_count) {
        s_hold_t hold = s_pop_hold (self);
        pthread_mutex_unlock (&self->hold_lock);
        MHD_resume_connection (hold.conn);
        pthread_mutex_lock (&self->hold_lock);
    }
    int64_t deadline = s_mono_ms () + S_DRAIN_MS;
    struct timespec until = {.tv_sec = deadline / 1000,
                             .tv_nsec = (deadline % 1000) * 1000000};
    while (self->held_live > 0 &&
           pthread_cond_timedwait (&self->hold_cond, &self->hold_lock,
                                   &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock (&self->hold_lock);
    if (self->daemon)
        MHD_stop_daemon (self->daemon);
    //  no handler runs any more: nothing can queue a webhook
    rcd_gwhooks_destroy (&self->hooks);
    pthread_rwlock_wrlock (&self->reset_lock);
    s_clear_store (self);
    pthread_rwlock_unlock (&self->reset_lock);
    s_config_fini (&self->config);
    free (self->holds);
    pthread_cond_destroy (&self->hold_cond);
    pthread_mutex_destroy (&self->hold_lock);
    pthread_mutex_destroy (&self->store_lock);
    pthread_rwlock_destroy (&self->reset_lock);
    pthread_mutex_destroy (&self->config_lock);
    free (self);
    *self_p = NULL;
}

int
rcd_gwsim_port (rcd_gwsim_t *self)
{
    assert (self);
    return self->port;
}

const char *
rcd_gwsim_url (rcd_gwsim_t *self)
{
    assert (self);
    return self->url;
}

int
rcd_gwsim_configure (rcd_gwsim_t *self, const char *json)
{
    assert (self);
    assert (json);
    char err[256];
    return s_apply_config (self, json, strlen (json), err, sizeof err) ? -2 : 0;
}

void
rcd_gwsim_reset (rcd_gwsim_t *self)
{
    assert (self);
    pthread_rwlock_wrlock (&self->reset_lock);
    s_clear_store (self);
    pthread_rwlock_unlock (&self->reset_lock);
    s_config_t fresh;
    if (s_config_init (&fresh)) {
        s_config_fini (&fresh);
        return;
    }
    pthread_mutex_lock (&self->config_lock);
    s_config_fini (&self->config);
    self->config = fresh;
    atomic_store (&self->prng, S_DEFAULT_SEED);
    rcd_gwhooks_reset (self->hooks);
    pthread_mutex_unlock (&self->config_lock);
}

size_t
rcd_gwsim_total (rcd_gwsim_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->store_lock);
    size_t total = self->total;
    pthread_mutex_unlock (&self->store_lock);
    return total;
}

size_t
rcd_gwsim_distinct (rcd_gwsim_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->store_lock);
    size_t distinct = self->items.count;
    pthread_mutex_unlock (&self->store_lock);
    return distinct;
}

size_t
rcd_gwsim_duplicates (rcd_gwsim_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->store_lock);
    size_t duplicates = self->total - self->items.count;
    pthread_mutex_unlock (&self->store_lock);
    return duplicates;
}

size_t
rcd_gwsim_count (rcd_gwsim_t *self, const char *instance, const char *number,
                 const char *text)
{
    assert (self);
    assert (instance && number && text);
    size_t instance_len = strlen (instance);
    size_t number_len = strlen (number);
    size_t text_len = strlen (text);
    size_t key_len = instance_len + number_len + text_len + 2;
    char *key = malloc (key_len + 1);
    if (!key)
        return 0;
    memcpy (key, instance, instance_len + 1);
    memcpy (key + instance_len + 1, number, number_len + 1);
    memcpy (key + instance_len + number_len + 2, text, text_len + 1);
    uint64_t hash = s_hash_bytes (key, key_len, S_FNV_BASIS);
    pthread_mutex_lock (&self->store_lock);
    s_item_t *item =
        (s_item_t *)s_table_find (&self->items, hash, key, key_len);
    size_t count = item ? item->count : 0;
    pthread_mutex_unlock (&self->store_lock);
    free (key);
    return count;
}

size_t
rcd_gwsim_errors (rcd_gwsim_t *self, const char *kind)
{
    assert (self);
    assert (kind);
    for (int fate = 0; fate < FATE_SENT; fate++)
        if (strcmp (s_fate_names[fate], kind) == 0)
            return atomic_load (&self->errors[fate]);
    return 0;
}

size_t
rcd_gwsim_webhooks (rcd_gwsim_t *self, const char *counter)
{
    assert (self);
    assert (counter);
    return rcd_gwhooks_counter (self->hooks, counter);
}

size_t
rcd_gwsim_held (rcd_gwsim_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->hold_lock);
    size_t held = self->hold_count;
    pthread_mutex_unlock (&self->hold_lock);
    return held;
}
