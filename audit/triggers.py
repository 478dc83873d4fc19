"""Database triggers that make the event log and the audit log append-only.

Installed by migrations. UPDATE is always refused; DELETE (and TRUNCATE on
PostgreSQL) only while the same transaction holds a `DeletionGrant` row, which
`audit_deletion_granted()` inserts and removes before commit.

SQLite rebuilds a table on most ALTERs and drops its triggers with it: a
migration that alters these tables must call `install()` again.
"""

APPEND_ONLY_TABLES = ("audit_event", "audit_auditlog")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION swarmsite_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
       AND EXISTS (SELECT 1 FROM audit_deletiongrant) THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'swarmsite: % is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END
$$;
"""


def _pg_statements(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION swarmsite_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION swarmsite_append_only()",
    ]


def _sqlite_statements(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_update",
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'swarmsite: {table} is append-only "
        "(UPDATE refused)'); END",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        "WHEN NOT EXISTS (SELECT 1 FROM audit_deletiongrant) "
        f"BEGIN SELECT RAISE(ABORT, 'swarmsite: {table} is append-only "
        "(DELETE refused)'); END",
    ]


def install(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = [_PG_FUNCTION]
        for table in APPEND_ONLY_TABLES:
            statements += _pg_statements(table)
    elif vendor == "sqlite":
        statements = []
        for table in APPEND_ONLY_TABLES:
            statements += _sqlite_statements(table)
    else:
        raise NotImplementedError(f"No append-only triggers for {vendor}.")
    for sql in statements:
        schema_editor.execute(sql, params=None)


def uninstall(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    for table in APPEND_ONLY_TABLES:
        if vendor == "postgresql":
            schema_editor.execute(
                f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}"
            )
            schema_editor.execute(
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}"
            )
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS swarmsite_append_only()")
