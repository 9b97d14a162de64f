/*  rcd_migrate.h - schema migrations embedded at build time.

    migrations/NNNN_name.sql files are compiled into rcd_migrations[] (see
    cmake/EmbedSql.cmake). Each is applied once, in order, inside its own
    transaction, and recorded in schema_migrations. Concurrent callers
    serialise on an advisory lock, so starting five services at once is
    safe.
*/
#ifndef RCD_MIGRATE_H_INCLUDED
#define RCD_MIGRATE_H_INCLUDED

#include "rcd_db.h"

typedef struct {
    int version;
    const char *name;
    const char *sql;
} rcd_migration_t;

/*  Terminated by an entry with name NULL. */
extern const rcd_migration_t rcd_migrations[];

/*  Applies every migration not yet recorded. Returns the number applied,
    or -1 on failure (nothing of the failed migration is kept). */
int
rcd_migrate_apply (rcd_db_t *db);

/*  Highest version recorded in schema_migrations, 0 for none, -1 on
    error. */
int
rcd_migrate_current (rcd_db_t *db);

#endif
