"""How volatile a function called in a DEFAULT is: the target's catalog when a target is at hand, else a
built-in table of PostgreSQL's own functions.

PostgreSQL 11+ stores a non-volatile default once, in the catalog, and ADD COLUMN is instant; a
volatile one (a value per row) rewrites the table. Volatility is a property of each function
(`pg_proc.provolatile`), so it is read from there rather than from a list of well-known names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pglast import ast

from plancheck.checks.rules.base import FunctionVolatility
from plancheck.checks.rules.script import Script, last_name

VOLATILE = "v"

# Every function of PostgreSQL's pg_catalog whose most volatile overload is VOLATILE: the names of
# `SELECT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace GROUP BY proname
# HAVING max(provolatile) = 'v'` on PostgreSQL 15, plus random_normal (16), uuidv4 and uuidv7 (18).
BUILT_IN_VOLATILE = frozenset(
    [
        "RI_FKey_cascade_del",
        "RI_FKey_cascade_upd",
        "RI_FKey_check_ins",
        "RI_FKey_check_upd",
        "RI_FKey_noaction_del",
        "RI_FKey_noaction_upd",
        "RI_FKey_restrict_del",
        "RI_FKey_restrict_upd",
        "RI_FKey_setdefault_del",
        "RI_FKey_setdefault_upd",
        "RI_FKey_setnull_del",
        "RI_FKey_setnull_upd",
        "amvalidate",
        "bernoulli",
        "binary_upgrade_create_empty_extension",
        "binary_upgrade_set_missing_value",
        "binary_upgrade_set_next_array_pg_type_oid",
        "binary_upgrade_set_next_attribute_versions",
        "binary_upgrade_set_next_heap_pg_class_oid",
        "binary_upgrade_set_next_heap_relfilenode",
        "binary_upgrade_set_next_index_pg_class_oid",
        "binary_upgrade_set_next_index_relfilenode",
        "binary_upgrade_set_next_multirange_array_pg_type_oid",
        "binary_upgrade_set_next_multirange_pg_type_oid",
        "binary_upgrade_set_next_pg_authid_oid",
        "binary_upgrade_set_next_pg_enum_oid",
        "binary_upgrade_set_next_pg_tablespace_oid",
        "binary_upgrade_set_next_pg_type_oid",
        "binary_upgrade_set_next_toast_pg_class_oid",
        "binary_upgrade_set_next_toast_relfilenode",
        "binary_upgrade_set_record_init_privs",
        "brin_desummarize_range",
        "brin_summarize_new_values",
        "brin_summarize_range",
        "brinhandler",
        "bthandler",
        "clock_timestamp",
        "current_query",
        "currtid2",
        "currval",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "dsnowball_init",
        "dsnowball_lexize",
        "gen_random_uuid",
        "gin_clean_pending_list",
        "ginhandler",
        "gisthandler",
        "hashhandler",
        "heap_tableam_handler",
        "lastval",
        "lo_close",
        "lo_creat",
        "lo_create",
        "lo_export",
        "lo_from_bytea",
        "lo_get",
        "lo_import",
        "lo_lseek",
        "lo_lseek64",
        "lo_open",
        "lo_put",
        "lo_tell",
        "lo_tell64",
        "lo_truncate",
        "lo_truncate64",
        "lo_unlink",
        "loread",
        "lowrite",
        "nextval",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_all",
        "pg_advisory_unlock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_blocking_pids",
        "pg_cancel_backend",
        "pg_collation_actual_version",
        "pg_control_checkpoint",
        "pg_control_init",
        "pg_control_recovery",
        "pg_control_system",
        "pg_copy_logical_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_create_restore_point",
        "pg_current_logfile",
        "pg_current_wal_flush_lsn",
        "pg_current_wal_insert_lsn",
        "pg_current_wal_lsn",
        "pg_database_collation_actual_version",
        "pg_database_size",
        "pg_drop_replication_slot",
        "pg_export_snapshot",
        "pg_extension_config_dump",
        "pg_get_backend_memory_contexts",
        "pg_get_multixact_members",
        "pg_get_shmem_allocations",
        "pg_get_wal_replay_pause_state",
        "pg_get_wal_resource_managers",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_import_system_collations",
        "pg_indexes_size",
        "pg_is_in_recovery",
        "pg_is_wal_replay_paused",
        "pg_isolation_test_session_is_blocked",
        "pg_jit_available",
        "pg_last_committed_xact",
        "pg_last_wal_receive_lsn",
        "pg_last_wal_replay_lsn",
        "pg_last_xact_replay_timestamp",
        "pg_lock_status",
        "pg_log_backend_memory_contexts",
        "pg_logical_emit_message",
        "pg_logical_slot_get_binary_changes",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_peek_binary_changes",
        "pg_logical_slot_peek_changes",
        "pg_ls_archive_statusdir",
        "pg_ls_dir",
        "pg_ls_logdir",
        "pg_ls_logicalmapdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_replslotdir",
        "pg_ls_tmpdir",
        "pg_ls_waldir",
        "pg_nextoid",
        "pg_notification_queue_usage",
        "pg_notify",
        "pg_partition_ancestors",
        "pg_partition_tree",
        "pg_prepared_xact",
        "pg_promote",
        "pg_read_binary_file",
        "pg_read_file",
        "pg_read_file_old",
        "pg_relation_size",
        "pg_reload_conf",
        "pg_replication_origin_advance",
        "pg_replication_origin_create",
        "pg_replication_origin_drop",
        "pg_replication_origin_progress",
        "pg_replication_origin_session_is_setup",
        "pg_replication_origin_session_progress",
        "pg_replication_origin_session_reset",
        "pg_replication_origin_session_setup",
        "pg_replication_origin_xact_reset",
        "pg_replication_origin_xact_setup",
        "pg_replication_slot_advance",
        "pg_rotate_logfile",
        "pg_rotate_logfile_old",
        "pg_safe_snapshot_blocking_pids",
        "pg_sequence_last_value",
        "pg_show_all_file_settings",
        "pg_show_replication_origin_status",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_stat_clear_snapshot",
        "pg_stat_file",
        "pg_stat_force_next_flush",
        "pg_stat_get_recovery_prefetch",
        "pg_stat_get_xact_blocks_fetched",
        "pg_stat_get_xact_blocks_hit",
        "pg_stat_get_xact_function_calls",
        "pg_stat_get_xact_function_self_time",
        "pg_stat_get_xact_function_total_time",
        "pg_stat_get_xact_numscans",
        "pg_stat_get_xact_tuples_deleted",
        "pg_stat_get_xact_tuples_fetched",
        "pg_stat_get_xact_tuples_hot_updated",
        "pg_stat_get_xact_tuples_inserted",
        "pg_stat_get_xact_tuples_returned",
        "pg_stat_get_xact_tuples_updated",
        "pg_stat_have_stats",
        "pg_stat_reset",
        "pg_stat_reset_replication_slot",
        "pg_stat_reset_shared",
        "pg_stat_reset_single_function_counters",
        "pg_stat_reset_single_table_counters",
        "pg_stat_reset_slru",
        "pg_stat_reset_subscription_stats",
        "pg_stop_making_pinned_objects",
        "pg_switch_wal",
        "pg_table_size",
        "pg_tablespace_size",
        "pg_terminate_backend",
        "pg_total_relation_size",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_wal_replay_pause",
        "pg_wal_replay_resume",
        "pg_xact_commit_timestamp",
        "pg_xact_commit_timestamp_origin",
        "pg_xact_status",
        "plpgsql_call_handler",
        "plpgsql_inline_handler",
        "plpgsql_validator",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "random",
        "random_normal",
        "set_config",
        "setseed",
        "setval",
        "spghandler",
        "suppress_redundant_updates_trigger",
        "system",
        "timeofday",
        "ts_rewrite",
        "ts_stat",
        "tsvector_update_trigger",
        "tsvector_update_trigger_column",
        "txid_status",
        "unique_key_recheck",
        "uuidv4",
        "uuidv7",
    ]
)
# Volatile functions of extensions that ship with PostgreSQL (uuid-ossp, pgcrypto).
EXTENSION_VOLATILE = frozenset(
    ["uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "gen_random_bytes", "gen_salt"]
)
_DECLARED = {"immutable": "i", "stable": "s", "volatile": "v"}


def is_volatile(
    script: Script,
    before: int,
    call: ast.FuncCall,
    target: FunctionVolatility | None,
    also_volatile: Iterable[str] = (),
) -> bool:
    """Whether call's function is VOLATILE: as the script declared it (in a statement before ordinal
    `before`), else as the target's catalog says, else by the built-in table (or `also_volatile`).
    A function none of them knows is taken as not volatile: only a target can tell."""
    schema, name = _qualified_name(call.funcname)
    declared_in_script = _declared_in_script(script, before)
    declared = declared_in_script.get((schema, name)) or declared_in_script.get((None, name))
    if declared is not None:
        return declared == VOLATILE
    if target is not None:
        known = target(schema, name)
        if known is not None:
            return known == VOLATILE
    if schema not in (None, "pg_catalog"):
        return name in also_volatile
    return name in BUILT_IN_VOLATILE or name in EXTENSION_VOLATILE or name in also_volatile


def _declared_in_script(script: Script, before: int) -> Mapping[tuple[str | None, str], str]:
    """(schema, name) -> declared volatility of the functions the script creates before ordinal `before`."""
    declared: dict[tuple[str | None, str], str] = {}
    for stmt, function in script.find(ast.CreateFunctionStmt):
        if stmt.ordinal < before:
            options = {option.defname: getattr(option.arg, "sval", None) for option in function.options or ()}
            declared[_qualified_name(function.funcname)] = _DECLARED.get(options.get("volatility") or "", VOLATILE)
    return declared


def _qualified_name(names: tuple[ast.Node, ...] | None) -> tuple[str | None, str]:
    """(schema or None, name) of a qualified function name."""
    names = names or ()
    return (getattr(names[-2], "sval", None) if len(names) > 1 else None), last_name(names)
