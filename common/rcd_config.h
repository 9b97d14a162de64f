/*  rcd_config.h - one table of settings per service (Redis's
    static_configs[] in miniature).

    A service declares its settings as an array of rcd_config_spec_t that
    write into fields of its own config struct:

        static const rcd_config_spec_t s_specs[] = {
            RCD_CONFIG_INT ("claim_batch", my_cfg_t, claim_batch, "500", 1,
                            10000, "messages claimed per statement"),
            RCD_CONFIG_STR ("database_url", my_cfg_t, database_url, "...",
                            "PostgreSQL connection string"),
            RCD_CONFIG_END
        };

    Each key is read from the environment as RECADO_<KEY> (upper case),
    except keys given an explicit env name (DATABASE_URL). rcd_config_load
    validates everything; a bad value is one clear log line and the caller
    exits with RCD_CONFIG_EXIT (78, EX_CONFIG).
*/
#ifndef RCD_CONFIG_H_INCLUDED
#define RCD_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RCD_CONFIG_EXIT 78

typedef enum {
    RCD_CONFIG_TYPE_INT,    /* int64_t field */
    RCD_CONFIG_TYPE_STR,    /* char * field, owned by the struct */
    RCD_CONFIG_TYPE_SECRET, /* like STR, masked when logged */
    RCD_CONFIG_TYPE_BOOL    /* bool field: 1/0, true/false, yes/no */
} rcd_config_type_t;

typedef struct {
    const char *key; /* snake_case name */
    const char *env; /* environment variable; NULL: RECADO_<KEY> */
    rcd_config_type_t type;
    size_t offset;    /* offsetof the field in the target struct */
    const char *def;  /* default as text; NULL: no default (required) */
    int64_t min, max; /* INT bounds, inclusive */
    const char *help; /* one line for --help */
} rcd_config_spec_t;

#define RCD_CONFIG_INT(key, type, field, def, min, max, help)                  \
    {                                                                          \
        key, NULL, RCD_CONFIG_TYPE_INT, offsetof (type, field), def, min, max, \
            help                                                               \
    }
#define RCD_CONFIG_STR(key, type, field, def, help)                            \
    {                                                                          \
        key, NULL, RCD_CONFIG_TYPE_STR, offsetof (type, field), def, 0, 0,     \
            help                                                               \
    }
#define RCD_CONFIG_SECRET(key, type, field, def, help)                         \
    {                                                                          \
        key, NULL, RCD_CONFIG_TYPE_SECRET, offsetof (type, field), def, 0, 0,  \
            help                                                               \
    }
#define RCD_CONFIG_BOOL(key, type, field, def, help)                           \
    {                                                                          \
        key, NULL, RCD_CONFIG_TYPE_BOOL, offsetof (type, field), def, 0, 1,    \
            help                                                               \
    }
/*  The shared database URL setting, read from DATABASE_URL. */
#define RCD_CONFIG_DATABASE_URL(type, field)                                   \
    {                                                                          \
        "database_url", "DATABASE_URL", RCD_CONFIG_TYPE_SECRET,                \
            offsetof (type, field), "postgresql:///recado", 0, 0,              \
            "PostgreSQL connection string"                                     \
    }
#define RCD_CONFIG_END                                                         \
    {                                                                          \
        NULL, NULL, 0, 0, NULL, 0, 0, NULL                                     \
    }

/*  Fills target from defaults and the environment. Returns 0, or -1 after
    logging which key is wrong and why (the struct is then freed). */
int
rcd_config_load (const rcd_config_spec_t *specs, void *target)
    __attribute__ ((warn_unused_result));

/*  Logs the effective configuration as one line, secrets masked. */
void
rcd_config_log (const rcd_config_spec_t *specs, const void *target);

/*  Prints the settings table (key, env, default, help) for --help. */
void
rcd_config_print_help (const rcd_config_spec_t *specs, const char *usage);

/*  Frees the strings the table owns in target. */
void
rcd_config_free (const rcd_config_spec_t *specs, void *target);

/*  Name of the environment variable of a spec, in buf. */
const char *
rcd_config_env_name (const rcd_config_spec_t *spec, char *buf, size_t size);

#endif
