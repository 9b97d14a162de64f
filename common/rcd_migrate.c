/*  rcd_migrate.c - applies the embedded migrations. */
#include "rcd_migrate.h"
#include "rcd_log.h"

#include <stdio.h>

/* Any constant shared by all recado processes; "rcdmigr" in ASCII. */
#define RCD_MIGRATE_LOCK_KEY "7166328424302706"

int
rcd_migrate_current (rcd_db_t *db)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db,
                     "SELECT coalesce(max(version), 0) FROM schema_migrations",
                     0, NULL, &res) != 0)
        /* a database never migrated has no table yet: version 0 */
        return rcd_db_error_is (db, "42P01") ? 0 : -1;
    int v = (int)rcd_db_res_int64 (res, 0, 0);
    rcd_db_res_destroy (&res);
    return v;
}

/*  Applies one migration in its own transaction. */
static int
s_apply_one (rcd_db_t *db, const rcd_migration_t *m)
{
    char version[16];
    snprintf (version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name};
    if (rcd_db_begin (db) != 0)
        return -1;
    if (rcd_db_script (db, m->sql) != 0 ||
        rcd_db_exec (db,
                     "INSERT INTO schema_migrations (version, name) "
                     "VALUES ($1, $2)",
                     2, params, NULL) != 0 ||
        rcd_db_commit (db) != 0) {
        rcd_log_error ("migration failed", "{s:s, s:s}", "migration", m->name,
                       "error", rcd_db_error (db));
        rcd_db_rollback (db);
        return -1;
    }
    rcd_log_info ("migration applied", "{s:s}", "migration", m->name);
    return 0;
}

int
rcd_migrate_apply (rcd_db_t *db)
{
    const char *lock[] = {RCD_MIGRATE_LOCK_KEY};
    if (rcd_db_exec (db, "SELECT pg_advisory_lock($1::bigint)", 1, lock,
                     NULL) != 0) {
        rcd_log_error ("migrate: cannot lock", "{s:s}", "error",
                       rcd_db_error (db));
        return -1;
    }
    int applied = 0;
    if (rcd_db_script (db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           " version integer PRIMARY KEY,"
                           " name text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())") !=
        0) {
        applied = -1;
        goto cleanup;
    }
    int current = rcd_migrate_current (db);
    if (current < 0) {
        applied = -1;
        goto cleanup;
    }
    for (const rcd_migration_t *m = rcd_migrations; m->name; m++) {
        if (m->version <= current)
            continue;
        if (s_apply_one (db, m) != 0) {
            applied = -1;
            goto cleanup;
        }
        applied++;
    }
cleanup:
    if (rcd_db_exec (db, "SELECT pg_advisory_unlock($1::bigint)", 1, lock,
                     NULL) != 0)
        rcd_log_warn ("migrate: unlock failed", "{s:s}", "error",
                      rcd_db_error (db));
    return applied;
}
