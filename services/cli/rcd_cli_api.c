/*  rcd_cli_api.c - `recado send`, `recado status` and `recado campaign`:
    one HTTP call to the ingestor each, through rcd_http, answer printed
    as it came. */
#include "rcd_cli.h"
#include "rcd_http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TIMEOUT_MS 30000

/*  Performs one request and prints the answer. Exit code: 0 for 2xx, 1
    for an HTTP error answer, 69 when the API could not be reached. */
static int
s_call (const char *method, const char *url, const char *key, const char *body)
{
    char auth[512];
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    if (rcd_http_global_init () != 0)
        return 1;
    rcd_http_t *http = rcd_http_new (1);
    int code = 1;
    int rc = !http ? -1
             : strcmp (method, "POST") == 0
                 ? rcd_http_post (http, url, headers, body ? body : "",
                                  body ? strlen (body) : 0, S_TIMEOUT_MS,
                                  S_TIMEOUT_MS, NULL)
                 : rcd_http_get (http, url, headers, S_TIMEOUT_MS, S_TIMEOUT_MS,
                                 NULL);
    rcd_http_result_t res;
    bool done = false;
    while (rc == 0 && !done) {
        if (rcd_http_perform (http, 1000) < 0)
            break;
        done = rcd_http_next (http, &res);
    }
    if (done && res.status > 0) {
        puts (res.body);
        code = res.status < 300 ? 0 : 1;
    }
    else if (done)
        fprintf (stderr, "recado: %s: %s\n", url,
                 res.error_text && *res.error_text
                     ? res.error_text
                     : rcd_http_error_name (res.error));
    if (done && res.status == 0)
        code = 69;
    rcd_http_destroy (&http);
    rcd_http_global_cleanup ();
    return code;
}

int
rcd_cli_api (int argc, char **argv, const char *api_url, const char *key)
{
    const char *to = NULL, *text = NULL, *priority = NULL, *send_at = NULL;
    const char *id = NULL, *action = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp (arg, "--to") && val)
            to = argv[++i];
        else if (!strcmp (arg, "--text") && val)
            text = argv[++i];
        else if (!strcmp (arg, "--priority") && val)
            priority = argv[++i];
        else if (!strcmp (arg, "--send-at") && val)
            send_at = argv[++i];
        else if (!strcmp (arg, "--key") && val)
            key = argv[++i];
        else if (!strcmp (arg, "--url") && val)
            api_url = argv[++i];
        else if (arg[0] != '-' && !id)
            id = arg;
        else if (arg[0] != '-' && !action && !strcmp (argv[0], "campaign"))
            action = arg;
        else {
            fprintf (stderr, "recado %s: unexpected '%s'\n", argv[0], arg);
            return 64;
        }
    }
    if (!key) {
        fprintf (stderr, "recado %s: no API key (RECADO_API_KEY or --key)\n",
                 argv[0]);
        return 64;
    }
    char url[1024];
    if (!strcmp (argv[0], "status")) {
        if (!id || strspn (id, "0123456789") != strlen (id)) {
            fprintf (stderr, "usage: recado status ID\n");
            return 64;
        }
        snprintf (url, sizeof url, "%s/v1/messages/%s", api_url, id);
        return s_call ("GET", url, key, NULL);
    }
    if (!strcmp (argv[0], "campaign")) {
        if (!id || strspn (id, "0123456789") != strlen (id) ||
            (action && strcmp (action, "pause") && strcmp (action, "resume") &&
             strcmp (action, "cancel"))) {
            fprintf (stderr,
                     "usage: recado campaign ID [pause|resume|cancel]\n");
            return 64;
        }
        if (!action) {
            snprintf (url, sizeof url, "%s/v1/campaigns/%s", api_url, id);
            return s_call ("GET", url, key, NULL);
        }
        snprintf (url, sizeof url, "%s/v1/campaigns/%s/%s", api_url, id,
                  action);
        return s_call ("POST", url, key, NULL);
    }
    if (!to || !text) {
        fprintf (stderr, "usage: recado send --to N --text T\n");
        return 64;
    }
    json_t *body = json_pack ("{s:s, s:s}", "to", to, "text", text);
    if (priority)
        json_object_set_new (body, "priority", json_string (priority));
    if (send_at)
        json_object_set_new (body, "send_at", json_string (send_at));
    char *text_body = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    snprintf (url, sizeof url, "%s/v1/messages", api_url);
    int code = s_call ("POST", url, key, text_body);
    free (text_body);
    return code;
}
