/* The SQLite store on a real database file in a temporary directory. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "store.h"

typedef struct {
  char     *dir;
  char     *path;
  CtlStore *st;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp("ctlfs-store-XXXXXX", NULL);
  f->path = g_build_filename(f->dir, "t.db", NULL);
  GError *error = NULL;
  f->st = ctl_store_open(f->path, &error);
  g_assert_no_error(error);
  g_assert_nonnull(f->st);
}

static void
remove_tree(const char *dir)
{
  GDir *d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d))) {
    char *p = g_build_filename(dir, name, NULL);
    g_unlink(p);
    g_free(p);
  }
  if (d)
    g_dir_close(d);
  g_rmdir(dir);
}

static void
teardown(Fixture *f, gconstpointer data)
{
  ctl_store_close(f->st);
  remove_tree(f->dir);
  g_free(f->path);
  g_free(f->dir);
}

static void
reopen(Fixture *f)
{
  ctl_store_close(f->st);
  GError *error = NULL;
  f->st = ctl_store_open(f->path, &error);
  g_assert_no_error(error);
}

static void
collect_names(const CtlObjectRow *row, gpointer data)
{
  GString *out = data;
  g_string_append_printf(out, "%s:%d:%s:%s;", row->name, row->kind,
                         row->desired ? row->desired : "-", row->observed ? row->observed : "-");
}

static void
test_objects_persist(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  gint64 rt = ctl_store_object_insert(f->st, 0, 2, "rt1", 1, &error);
  g_assert_no_error(error);
  gint64 res = ctl_store_object_insert(f->st, rt, 3, "svc", 1, &error);
  g_assert_cmpint(res, >, rt);
  CtlObjectRow row = { .id = res, .desired = "paused", .observed = "running" };
  g_assert_true(ctl_store_object_save(f->st, &row, &error));
  reopen(f);
  GString *names = g_string_new(NULL);
  g_assert_true(ctl_store_objects_foreach(f->st, collect_names, names, &error));
  g_assert_cmpstr(names->str, ==, "rt1:2:-:-;svc:3:paused:running;");
  g_string_free(names, TRUE);
}

static void
test_duplicate_name_refused(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_assert_cmpint(ctl_store_object_insert(f->st, 0, 2, "rt1", 1, &error), >, 0);
  g_assert_cmpint(ctl_store_object_insert(f->st, 0, 2, "rt1", 1, &error), ==, 0);
  g_assert_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_IO);
  g_error_free(error);
}

static void
test_ids_never_reused(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  gint64 a = ctl_store_object_insert(f->st, 0, 2, "a", 1, &error);
  g_assert_true(ctl_store_object_delete(f->st, a, &error));
  gint64 b = ctl_store_object_insert(f->st, 0, 2, "a", 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(b, >, a);
}

static void
append(CtlStore *st, gint64 obj, gint64 rt, const char *line, gint64 *root, gint64 *rts,
       gint64 *objs)
{
  gsize len = strlen(line);
  CtlEventPos pos = { .ts = 1, .object_id = obj, .runtime_id = rt, .off_root = *root,
                      .off_runtime = rt ? *rts : -1, .off_object = obj ? *objs : -1 };
  GError *error = NULL;
  g_assert_true(ctl_store_event_append(st, &pos, line, len, &error));
  *root += len;
  if (rt)
    *rts += len;
  if (obj)
    *objs += len;
}

static char *
read_all(CtlStore *st, CtlStream which, gint64 id, gint64 offset, gsize chunk)
{
  GString *out = g_string_new(NULL);
  char buf[256];
  g_assert_cmpuint(chunk, <=, sizeof buf);
  for (;;) {
    GError *error = NULL;
    gssize n = ctl_store_stream_read(st, which, id, offset, buf, chunk, &error);
    g_assert_no_error(error);
    if (n == 0)
      break;
    g_string_append_len(out, buf, n);
    offset += n;
  }
  return g_string_free(out, FALSE);
}

static void
test_streams(Fixture *f, gconstpointer data)
{
  gint64 root = 0, rt = 0, obj = 0;
  gint64 dummy = 0;
  append(f->st, 0, 0, "daemon up\n", &root, &dummy, &dummy);
  append(f->st, 7, 5, "svc one\n", &root, &rt, &obj);
  append(f->st, 5, 5, "rt one\n", &root, &rt, &dummy);
  append(f->st, 7, 5, "svc two\n", &root, &rt, &obj);
  GError *error = NULL;
  g_assert_cmpint(ctl_store_stream_size(f->st, CTL_STREAM_ROOT, 0, &error), ==, root);
  g_assert_cmpint(ctl_store_stream_size(f->st, CTL_STREAM_RUNTIME, 5, &error), ==, rt);
  g_assert_cmpint(ctl_store_stream_size(f->st, CTL_STREAM_OBJECT, 7, &error), ==, obj);
  g_assert_cmpint(ctl_store_stream_size(f->st, CTL_STREAM_OBJECT, 99, &error), ==, 0);
  /* Reads in small chunks and from the middle of a line give the same bytes. */
  for (gsize chunk = 1; chunk <= 64; chunk *= 3) {
    char *all = read_all(f->st, CTL_STREAM_ROOT, 0, 0, chunk);
    g_assert_cmpstr(all, ==, "daemon up\nsvc one\nrt one\nsvc two\n");
    g_free(all);
    all = read_all(f->st, CTL_STREAM_RUNTIME, 5, 0, chunk);
    g_assert_cmpstr(all, ==, "svc one\nrt one\nsvc two\n");
    g_free(all);
    all = read_all(f->st, CTL_STREAM_OBJECT, 7, 3, chunk);
    g_assert_cmpstr(all, ==, " one\nsvc two\n");
    g_free(all);
  }
}

static void
test_stream_tail_of_long_history(Fixture *f, gconstpointer data)
{
  /* 100,000 lines: the tail reads back exactly, through one index seek. */
  gint64 root = 0, rt = 0, obj = 0;
  GError *error = NULL;
  g_assert_true(ctl_store_begin(f->st, &error));
  for (int i = 0; i < 100000; i++) {
    char line[64];
    g_snprintf(line, sizeof line, "line %06d\n", i);
    append(f->st, 7, 5, line, &root, &rt, &obj);
  }
  g_assert_true(ctl_store_commit(f->st, &error));
  char buf[32];
  gssize n = ctl_store_stream_read(f->st, CTL_STREAM_OBJECT, 7, obj - 12, buf, sizeof buf, &error);
  g_assert_cmpint(n, ==, 12);
  g_assert_cmpint(memcmp(buf, "line 099999\n", 12), ==, 0);
}

static void
count_row(const CtlCommandRow *row, gpointer data)
{
  GString *out = data;
  g_string_append_printf(out, "%s:%s:%s:%" G_GINT64_FORMAT ";", row->id, row->verb, row->result,
                         row->offset);
}

static void
test_commands(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  CtlCommandRow a = { .id = "a", .object_id = 7, .runtime = "rt", .resource = "svc",
                      .verb = "pause", .mode = "queued", .uid = 0, .user = "root", .pid = 1,
                      .comm = "sh", .host = "h", .issued_at = 1, .result = "queued", .offset = -1 };
  CtlCommandRow b = a;
  b.id = "b";
  b.verb = "resume";
  g_assert_true(ctl_store_command_insert(f->st, &a, &error));
  g_assert_true(ctl_store_command_insert(f->st, &b, &error));
  g_assert_false(ctl_store_command_insert(f->st, &b, &error));   /* ids are unique */
  g_clear_error(&error);
  g_assert_true(ctl_store_command_update(f->st, "a", "sent", 17, NULL, &error));
  GString *out = g_string_new(NULL);
  g_assert_true(ctl_store_queued_commands(f->st, "queued", count_row, out, &error));
  g_assert_cmpstr(out->str, ==, "b:resume:queued:-1;");
  g_string_truncate(out, 0);
  g_assert_true(ctl_store_last_commands(f->st, count_row, out, &error));
  g_assert_cmpstr(out->str, ==, "b:resume:queued:-1;");
  g_assert_cmpint(ctl_store_commands_count(f->st, "sent"), ==, 1);
  g_string_free(out, TRUE);
}

static void
test_offsets_roll_back_with_state(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_assert_cmpint(ctl_store_offset_get(f->st, "t", 0), ==, -1);
  g_assert_true(ctl_store_offset_set(f->st, "t", 0, 5, &error));
  g_assert_true(ctl_store_begin(f->st, &error));
  g_assert_true(ctl_store_offset_set(f->st, "t", 0, 9, &error));
  ctl_store_rollback(f->st);
  g_assert_cmpint(ctl_store_offset_get(f->st, "t", 0), ==, 5);
  g_assert_true(ctl_store_begin(f->st, &error));
  g_assert_true(ctl_store_offset_set(f->st, "t", 0, 9, &error));
  g_assert_true(ctl_store_commit(f->st, &error));
  reopen(f);
  g_assert_cmpint(ctl_store_offset_get(f->st, "t", 0), ==, 9);
}

static void
test_nested_rollback_dooms_outer(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_assert_true(ctl_store_begin(f->st, &error));
  g_assert_true(ctl_store_offset_set(f->st, "t", 0, 1, &error));
  g_assert_true(ctl_store_begin(f->st, &error));
  ctl_store_rollback(f->st);
  g_assert_false(ctl_store_commit(f->st, &error));
  g_clear_error(&error);
  g_assert_cmpint(ctl_store_offset_get(f->st, "t", 0), ==, -1);
}

static void
test_second_open_refused(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  CtlStore *again = ctl_store_open(f->path, &error);
  g_assert_null(again);
  g_assert_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_LOCKED);
  g_error_free(error);
}

static void
test_garbage_file_refused(void)
{
  char *dir = g_dir_make_tmp("ctlfs-store-XXXXXX", NULL);
  char *path = g_build_filename(dir, "bad.db", NULL);
  char garbage[4096];
  for (gsize i = 0; i < sizeof garbage; i++)
    garbage[i] = (char) (i * 7 + 3);
  g_assert_true(g_file_set_contents(path, garbage, sizeof garbage, NULL));
  GError *error = NULL;
  g_assert_null(ctl_store_open(path, &error));
  g_assert_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_CORRUPT);
  g_error_free(error);
  /* Nothing was written over the operator's file. */
  char *after = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(path, &after, &len, NULL));
  g_assert_cmpmem(after, len, garbage, sizeof garbage);
  g_free(after);
  remove_tree(dir);
  g_free(path);
  g_free(dir);
}

static void
test_missing_directory_refused(void)
{
  GError *error = NULL;
  g_assert_null(ctl_store_open("/nonexistent-ctlfs-dir/x.db", &error));
  g_assert_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_OPEN);
  g_error_free(error);
}

static void
test_newer_schema_refused(Fixture *f, gconstpointer data)
{
  ctl_store_close(f->st);
  f->st = NULL;
  char *cmd = g_strdup_printf("sqlite3 '%s' 'PRAGMA user_version=99'", f->path);
  int status = 0;
  if (!g_spawn_command_line_sync(cmd, NULL, NULL, &status, NULL) || status != 0) {
    g_free(cmd);
    g_test_skip("sqlite3 command line tool not available");
    reopen(f);
    return;
  }
  g_free(cmd);
  GError *error = NULL;
  g_assert_null(ctl_store_open(f->path, &error));
  g_assert_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_VERSION);
  g_error_free(error);
}

/* A database written by the previous version (1, before the refusals table)
 * is migrated forward on open and keeps its objects. */
static void
test_version_1_migrated(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_assert_cmpint(ctl_store_object_insert(f->st, 0, 2, "rt1", 1, &error), >, 0);
  g_assert_true(ctl_store_flush(f->st, &error));
  ctl_store_close(f->st);
  f->st = NULL;
  char *cmd = g_strdup_printf("sqlite3 '%s' 'DROP TABLE refusals; DROP TABLE announcements; DROP TABLE tree_keys; DROP TABLE settings; PRAGMA user_version=1'", f->path);
  int status = 0;
  gboolean ran = g_spawn_command_line_sync(cmd, NULL, NULL, &status, NULL) && status == 0;
  g_free(cmd);
  reopen(f);
  if (!ran) {
    g_test_skip("sqlite3 command line tool not available");
    return;
  }
  GString *names = g_string_new(NULL);
  g_assert_true(ctl_store_objects_foreach(f->st, collect_names, names, &error));
  g_assert_cmpstr(names->str, ==, "rt1:2:-:-;");
  g_string_free(names, TRUE);
  CtlRefusalRow row = { .ts = 1, .action = "command", .path = "runtimes/rt1/svc",
                        .input = "pause", .err = "EACCES", .reason = "policy", .uid = 1001,
                        .user = "alice", .pid = 42, .comm = "bash", .host = "adm1" };
  g_assert_true(ctl_store_begin(f->st, &error));
  g_assert_true(ctl_store_refusal_insert(f->st, &row, &error));
  g_assert_true(ctl_store_setting_put(f->st, 1, "mode", "realtime", 2, &error));
  g_assert_true(ctl_store_commit(f->st, &error));
  g_assert_true(ctl_store_flush(f->st, &error));
  g_assert_no_error(error);
}

static void
collect_setting(gint64 object_id, const char *name, const char *value, gint64 updated_at,
                gpointer data)
{
  g_string_append_printf(data, "%" G_GINT64_FORMAT ":%s=%s;", object_id, name, value);
}

/* Settings survive a reopen, a second put replaces the value, and they go
 * with their object. */
static void
test_settings(Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  gint64 a = ctl_store_object_insert(f->st, 0, 2, "rt1", 1, &error);
  gint64 b = ctl_store_object_insert(f->st, a, 3, "flow", 1, &error);
  g_assert_true(ctl_store_setting_put(f->st, b, "mode", "ordinary", 1, &error));
  g_assert_true(ctl_store_setting_put(f->st, b, "mode", "realtime", 2, &error));
  g_assert_true(ctl_store_setting_put(f->st, a, "x", "1", 2, &error));
  g_assert_true(ctl_store_flush(f->st, &error));
  reopen(f);
  GString *got = g_string_new(NULL);
  g_assert_true(ctl_store_settings_foreach(f->st, collect_setting, got, &error));
  char *want = g_strdup_printf("%" G_GINT64_FORMAT ":x=1;%" G_GINT64_FORMAT ":mode=realtime;",
                               a, b);
  g_assert_cmpstr(got->str, ==, want);
  g_free(want);
  g_assert_true(ctl_store_object_delete(f->st, b, &error));
  g_string_truncate(got, 0);
  g_assert_true(ctl_store_settings_foreach(f->st, collect_setting, got, &error));
  want = g_strdup_printf("%" G_GINT64_FORMAT ":x=1;", a);
  g_assert_cmpstr(got->str, ==, want);
  g_free(want);
  g_string_free(got, TRUE);
  g_assert_no_error(error);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define T(name, fn) g_test_add("/store/" name, Fixture, NULL, setup, fn, teardown)
  T("objects-persist", test_objects_persist);
  T("duplicate-name-refused", test_duplicate_name_refused);
  T("ids-never-reused", test_ids_never_reused);
  T("streams", test_streams);
  T("stream-tail-of-long-history", test_stream_tail_of_long_history);
  T("commands", test_commands);
  T("offsets-roll-back-with-state", test_offsets_roll_back_with_state);
  T("nested-rollback-dooms-outer", test_nested_rollback_dooms_outer);
  T("second-open-refused", test_second_open_refused);
  T("newer-schema-refused", test_newer_schema_refused);
  T("version-1-migrated", test_version_1_migrated);
  T("settings", test_settings);
#undef T
  g_test_add_func("/store/garbage-file-refused", test_garbage_file_refused);
  g_test_add_func("/store/missing-directory-refused", test_missing_directory_refused);
  return g_test_run();
}
