/* SQLite store. See store.h for the contract; the schema is below. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

G_DEFINE_QUARK(ctl-store-error-quark, ctl_store_error)

#define SCHEMA_VERSION 5

/* Version 1. Offsets of the three log streams are stored with each line so that
 * a read at any offset is one index seek. AUTOINCREMENT keeps ids (and so inode
 * numbers) from ever being reused after rmdir. */
static const char schema_v1[] =
  "CREATE TABLE objects("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  parent_id INTEGER NOT NULL,"
  "  kind INTEGER NOT NULL,"
  "  name TEXT NOT NULL,"
  "  desired TEXT, observed TEXT,"
  "  observed_at INTEGER NOT NULL DEFAULT 0,"
  "  feedback_at INTEGER NOT NULL DEFAULT 0,"
  "  pending TEXT, last_error TEXT,"
  "  created_at INTEGER NOT NULL,"
  "  UNIQUE(parent_id, kind, name));"
  "CREATE TABLE commands("
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  id TEXT NOT NULL UNIQUE,"
  "  object_id INTEGER NOT NULL,"
  "  runtime TEXT NOT NULL, resource TEXT NOT NULL, verb TEXT NOT NULL,"
  "  mode TEXT NOT NULL,"
  "  uid INTEGER, user TEXT, pid INTEGER, comm TEXT, host TEXT,"
  "  issued_at INTEGER NOT NULL,"
  "  result TEXT NOT NULL,"
  "  kafka_offset INTEGER NOT NULL DEFAULT -1,"
  "  error TEXT,"
  "  updated_at INTEGER NOT NULL);"
  "CREATE INDEX commands_by_object ON commands(object_id, seq);"
  "CREATE INDEX commands_by_result ON commands(result, mode, seq);"
  "CREATE TABLE events("
  "  seq INTEGER PRIMARY KEY,"
  "  ts INTEGER NOT NULL,"
  "  object_id INTEGER NOT NULL,"
  "  runtime_id INTEGER NOT NULL,"
  "  off_root INTEGER NOT NULL,"
  "  off_runtime INTEGER,"
  "  off_object INTEGER,"
  "  line BLOB NOT NULL);"
  "CREATE UNIQUE INDEX events_root ON events(off_root);"
  "CREATE INDEX events_runtime ON events(runtime_id, off_runtime);"
  "CREATE INDEX events_object ON events(object_id, off_object);"
  "CREATE TABLE offsets("
  "  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
  "  PRIMARY KEY(topic, partition));";

/* Version 2: every refused or rejected request, with who tried (the audit
 * trail of what did not become a command). */
static const char schema_v2[] =
  "CREATE TABLE refusals("
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  ts INTEGER NOT NULL,"
  "  action TEXT NOT NULL,"
  "  path TEXT NOT NULL,"
  "  input TEXT,"
  "  errno TEXT NOT NULL,"
  "  reason TEXT NOT NULL,"
  "  uid INTEGER, user TEXT, pid INTEGER, comm TEXT, host TEXT);";

/* Version 3: the announcement outbox. A declaration or removal made here is
 * stored with the object, in the same transaction, and deleted once the
 * broker has it on the shared tree topic: other hosts never miss one. */
static const char schema_v3[] =
  "CREATE TABLE announcements("
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  key TEXT NOT NULL,"
  "  value TEXT);"
  /* per tree key, the offset of the record the tree shows: a record read
   * again after a restart is never applied over a newer one */
  "CREATE TABLE tree_keys("
  "  key TEXT PRIMARY KEY,"
  "  tree_offset INTEGER NOT NULL);";

/* Version 4: named settings of an object, one value each: a flow's `mode`
 * (elastic.io), a module's dynamic options and scale (Rama). Kept apart from
 * objects' columns because each backend has its own. */
static const char schema_v4[] =
  "CREATE TABLE settings("
  "  object_id INTEGER NOT NULL,"
  "  name TEXT NOT NULL,"
  "  value TEXT NOT NULL,"
  "  updated_at INTEGER NOT NULL,"
  "  PRIMARY KEY(object_id, name));";

/* Version 5: commands are indexed for the outbox only.
 * - No index by object. Each command added an entry in its object's part of
 *   it, so a commit of commands to N objects rewrote N more pages (a quarter
 *   of a busy commit's pages; docs/performance.md). Only the two queries at
 *   start used it, and they are faster without it on a long history (one
 *   scan instead of a lookup per row: 1.1 s against 3.6 s for 1,000,000).
 * - The outbox's queries look commands up by result "queued" only: a partial
 *   index holds just those rows (a command enters it when stored and leaves
 *   it when sent, on one small page), where the old one took every command
 *   twice (queued, then sent) and kept them all. */
static const char schema_v5[] =
  "DROP INDEX IF EXISTS commands_by_object;"
  "DROP INDEX IF EXISTS commands_by_result;"
  "CREATE INDEX IF NOT EXISTS commands_queued ON commands(mode, seq) WHERE result = 'queued';";

enum {
  Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
  Q_OBJ_ALL, Q_OBJ_INSERT, Q_OBJ_DELETE, Q_OBJ_SAVE,
  Q_CMD_INSERT, Q_CMD_UPDATE, Q_CMD_QUEUED, Q_CMD_LAST, Q_CMD_COUNT,
  Q_EV_INSERT,
  Q_SIZE_ROOT, Q_SIZE_RT, Q_SIZE_OBJ,
  Q_READ_ROOT, Q_READ_RT, Q_READ_OBJ,
  Q_OFF_GET, Q_OFF_SET, Q_OFF_DEL, Q_OFF_ALL,
  Q_REFUSAL_INSERT,
  Q_ANN_INSERT, Q_ANN_DELETE, Q_ANN_ALL, Q_CMD_LOOKUP, Q_TREE_SET, Q_TREE_ALL, Q_CMD_PLACED,
  Q_SET_PUT, Q_SET_ALL, Q_SET_DEL_OBJ, Q_CMD_GET, Q_CMD_ISSUER,
  Q_COUNT
};

static const char *const queries[Q_COUNT] = {
  [Q_BEGIN]    = "BEGIN IMMEDIATE",
  [Q_COMMIT]   = "COMMIT",
  [Q_ROLLBACK] = "ROLLBACK",
  [Q_SAVEPOINT] = "SAVEPOINT op",
  [Q_RELEASE]  = "RELEASE op",
  [Q_ROLLBACK_TO] = "ROLLBACK TO op",
  [Q_OBJ_ALL]  = "SELECT id, parent_id, kind, name, desired, observed, observed_at,"
                 " feedback_at, pending, last_error FROM objects ORDER BY id",
  [Q_OBJ_INSERT] = "INSERT INTO objects(parent_id, kind, name, created_at) VALUES(?,?,?,?)",
  [Q_OBJ_DELETE] = "DELETE FROM objects WHERE id = ?",
  [Q_OBJ_SAVE] = "UPDATE objects SET desired=?2, observed=?3, observed_at=?4, feedback_at=?5,"
                 " pending=?6, last_error=?7 WHERE id=?1",
  [Q_CMD_INSERT] = "INSERT INTO commands(id, object_id, runtime, resource, verb, mode, uid, user,"
                   " pid, comm, host, issued_at, result, kafka_offset, error, updated_at)"
                   " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
  [Q_CMD_UPDATE] = "UPDATE commands SET result=?2,"
                   " kafka_offset=CASE WHEN ?3 >= 0 THEN ?3 ELSE kafka_offset END,"
                   " error=COALESCE(?4, error), updated_at=?5 WHERE id=?1",
  [Q_CMD_QUEUED] = "SELECT id, object_id, runtime, resource, verb, mode, uid, user, pid, comm,"
                   " host, issued_at, result, kafka_offset, error FROM commands"
                   " WHERE result='queued' AND mode=?1 ORDER BY seq",
  [Q_CMD_LAST] = "SELECT id, object_id, runtime, resource, verb, mode, uid, user, pid, comm,"
                 " host, issued_at, result, kafka_offset, error FROM commands"
                 " WHERE seq IN (SELECT MAX(seq) FROM commands GROUP BY object_id)",
  [Q_CMD_COUNT] = "SELECT count(*) FROM commands WHERE result=?1",
  [Q_EV_INSERT] = "INSERT INTO events(ts, object_id, runtime_id, off_root, off_runtime,"
                  " off_object, line) VALUES(?,?,?,?,?,?,?)",
  [Q_SIZE_ROOT] = "SELECT off_root + length(line) FROM events ORDER BY off_root DESC LIMIT 1",
  [Q_SIZE_RT]   = "SELECT off_runtime + length(line) FROM events WHERE runtime_id=?1"
                  " AND off_runtime IS NOT NULL ORDER BY off_runtime DESC LIMIT 1",
  [Q_SIZE_OBJ]  = "SELECT off_object + length(line) FROM events WHERE object_id=?1"
                  " AND off_object IS NOT NULL ORDER BY off_object DESC LIMIT 1",
  /* The line holding OFFSET, then the lines after it. */
  [Q_READ_ROOT] = "SELECT off_root, line FROM events WHERE off_root >= COALESCE("
                  "(SELECT MAX(off_root) FROM events WHERE off_root <= ?2), 0)"
                  " ORDER BY off_root",
  [Q_READ_RT]   = "SELECT off_runtime, line FROM events WHERE runtime_id=?1 AND off_runtime >="
                  " COALESCE((SELECT MAX(off_runtime) FROM events WHERE runtime_id=?1"
                  " AND off_runtime <= ?2), 0) ORDER BY off_runtime",
  [Q_READ_OBJ]  = "SELECT off_object, line FROM events WHERE object_id=?1 AND off_object >="
                  " COALESCE((SELECT MAX(off_object) FROM events WHERE object_id=?1"
                  " AND off_object <= ?2), 0) ORDER BY off_object",
  [Q_OFF_GET] = "SELECT next_offset FROM offsets WHERE topic=? AND partition=?",
  [Q_OFF_SET] = "INSERT INTO offsets(topic, partition, next_offset) VALUES(?1,?2,?3)"
                " ON CONFLICT(topic, partition) DO UPDATE SET next_offset=?3",
  [Q_OFF_DEL] = "DELETE FROM offsets WHERE topic=?",
  [Q_OFF_ALL] = "SELECT partition, next_offset FROM offsets WHERE topic=? ORDER BY partition",
  [Q_REFUSAL_INSERT] = "INSERT INTO refusals(ts, action, path, input, errno, reason, uid, user,"
                       " pid, comm, host) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
  [Q_ANN_INSERT] = "INSERT INTO announcements(key, value) VALUES(?,?)",
  [Q_ANN_DELETE] = "DELETE FROM announcements WHERE seq=?",
  [Q_ANN_ALL]    = "SELECT seq, key, value FROM announcements ORDER BY seq",
  [Q_CMD_LOOKUP] = "SELECT mode = 'peer' FROM commands WHERE id=?",
  [Q_TREE_SET]   = "INSERT INTO tree_keys(key, tree_offset) VALUES(?1,?2)"
                   " ON CONFLICT(key) DO UPDATE SET tree_offset=?2",
  [Q_TREE_ALL]   = "SELECT key, tree_offset FROM tree_keys",
  /* SQLite gives the bare column (verb) of the row holding the MAX */
  [Q_CMD_PLACED] = "SELECT object_id, verb, MAX(kafka_offset), id, mode = 'peer' FROM commands"
                   " WHERE kafka_offset >= 0 GROUP BY object_id",
  [Q_SET_PUT] = "INSERT INTO settings(object_id, name, value, updated_at) VALUES(?1,?2,?3,?4)"
                " ON CONFLICT(object_id, name) DO UPDATE SET value=?3, updated_at=?4",
  [Q_SET_ALL] = "SELECT object_id, name, value, updated_at FROM settings ORDER BY object_id, name",
  [Q_SET_DEL_OBJ] = "DELETE FROM settings WHERE object_id=?",
  [Q_CMD_GET] = "SELECT object_id, verb, result FROM commands WHERE id=?",
  [Q_CMD_ISSUER] = "SELECT uid, user, pid, comm, host FROM commands WHERE id=?",
};

typedef struct {
  CtlStoreCommitted fn;
  gpointer          data;
} AfterCommit;

struct CtlStore {
  sqlite3      *db;
  sqlite3_stmt *q[Q_COUNT];
  char         *path;
  int           lock_fd;     /* flock()ed: one daemon per database */
  int           depth;       /* transaction nesting */
  gboolean      failed;      /* an inner step failed: the outer commit rolls back */
  gboolean      batch;       /* BEGIN issued; COMMIT at the next flush */
  guint         flush_src;
  GArray       *after;       /* AfterCommit, run by the flush */
  CtlStoreCommitted on_lost; /* told when a batch failed to commit */
  gpointer      on_lost_data;
  /* WAL checkpoints, on their own thread and connection */
  GThread      *checkpointer;
  GMutex        cp_lock;
  GCond         cp_cond;
  gboolean      cp_stop;
};

static int
code_for(int rc)
{
  switch (rc & 0xff) {
  case SQLITE_NOTADB:
  case SQLITE_CORRUPT:   return CTL_STORE_ERROR_CORRUPT;
  case SQLITE_FULL:      return CTL_STORE_ERROR_FULL;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:    return CTL_STORE_ERROR_LOCKED;
  case SQLITE_CANTOPEN:
  case SQLITE_READONLY:
  case SQLITE_PERM:      return CTL_STORE_ERROR_OPEN;
  default:               return CTL_STORE_ERROR_IO;
  }
}

static gboolean
fail(CtlStore *st, int rc, GError **error)
{
  g_set_error(error, CTL_STORE_ERROR, code_for(rc), "%s",
              st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
  return FALSE;
}

static sqlite3_stmt *
prep(CtlStore *st, int which)
{
  sqlite3_stmt *s = st->q[which];
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return s;
}

/* Runs a statement that returns no rows. */
static gboolean
run(CtlStore *st, sqlite3_stmt *s, GError **error)
{
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    return fail(st, rc, error);
  return TRUE;
}

static void
bind_text(sqlite3_stmt *s, int i, const char *v)
{
  if (v)
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(s, i);
}

static const char *
col_text(sqlite3_stmt *s, int i)
{
  return (const char *) sqlite3_column_text(s, i);
}

static gboolean
exec(CtlStore *st, const char *sql, GError **error)
{
  int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? TRUE : fail(st, rc, error);
}

static gboolean
pragma_int(CtlStore *st, const char *sql, int *out, GError **error)
{
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    *out = sqlite3_column_int(s, 0);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(s);
  return rc == SQLITE_OK ? TRUE : fail(st, rc, error);
}

static gboolean
migrate(CtlStore *st, GError **error)
{
  int version = 0;
  if (!pragma_int(st, "PRAGMA user_version", &version, error))
    return FALSE;
  if (version > SCHEMA_VERSION) {
    g_set_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_VERSION,
                "schema version %d is newer than this ctlfs understands (%d)",
                version, SCHEMA_VERSION);
    return FALSE;
  }
  if (version == SCHEMA_VERSION)
    return TRUE;
  /* Each step moves one version forward inside one transaction. */
  if (!exec(st, "BEGIN IMMEDIATE", error))
    return FALSE;
  gboolean ok = TRUE;
  if (version < 1)
    ok = exec(st, schema_v1, error);
  if (ok && version < 2)
    ok = exec(st, schema_v2, error);
  if (ok && version < 3)
    ok = exec(st, schema_v3, error);
  if (ok && version < 4)
    ok = exec(st, schema_v4, error);
  if (ok && version < 5)
    ok = exec(st, schema_v5, error);
  if (ok) {
    char *sql = g_strdup_printf("PRAGMA user_version = %d", SCHEMA_VERSION);
    ok = exec(st, sql, error);
    g_free(sql);
  }
  if (ok)
    ok = exec(st, "COMMIT", error);
  if (!ok)
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
  return ok;
}

/* One daemon per database: a second one must refuse, never become a second
 * writer. flock() on our own descriptor is independent of SQLite's POSIX locks. */
static gboolean
take_lock(CtlStore *st, GError **error)
{
  st->lock_fd = open(st->path, O_RDONLY | O_CLOEXEC);
  if (st->lock_fd < 0) {
    g_set_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_OPEN, "%s", g_strerror(errno));
    return FALSE;
  }
  if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    g_set_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_LOCKED,
                "database is in use by another ctlfs (%s)", g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

static gboolean
prepare_all(CtlStore *st, GError **error)
{
  for (int i = 0; i < Q_COUNT; i++) {
    int rc = sqlite3_prepare_v3(st->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &st->q[i], NULL);
    if (rc != SQLITE_OK)
      return fail(st, rc, error);
  }
  return TRUE;
}

/* SQLite checkpoints the WAL into the database inside whichever commit crosses
 * 1,000 pages, with an fsync: a write that lands there waits for the disk
 * (the p99 of durable writes). Here a thread of its own, with its own
 * connection, checkpoints every second instead, next to the writer (PASSIVE
 * never blocks it), and the main connection never does.
 *
 * A PASSIVE checkpoint copies the frames but never rewinds the WAL: the next
 * writer does that, when it finds every frame copied. Under a sustained load
 * a new commit always lands first and the file grows for as long as the load
 * lasts (tens of MB per second). Past CHECKPOINT_RESTART_FRAMES, the thread
 * follows the PASSIVE one with a RESTART, which makes the writer wait (its
 * busy timeout) while it copies the few frames written meanwhile, so that the
 * next commit starts the WAL over. */
#define CHECKPOINT_INTERVAL_US G_USEC_PER_SEC
#define CHECKPOINT_RESTART_FRAMES 16384     /* 64 MiB of 4 KiB pages */

static void
checkpoint(sqlite3 *db)
{
  int frames = 0, copied = 0;
  int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
  /* Frames left uncopied: a reader (sqlite3 on the file, a backup) holds an
   * older snapshot. A RESTART would hold our writer back for its whole busy
   * timeout, every second, until that reader ends: the WAL grows meanwhile,
   * as SQLite lets it for any reader. */
  if (rc == SQLITE_OK && frames >= CHECKPOINT_RESTART_FRAMES && copied == frames)
    rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY)
    g_warning("store: checkpoint: %s", sqlite3_errmsg(db));
}

static gpointer
checkpointer(gpointer data)
{
  CtlStore *st = data;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
      != SQLITE_OK) {
    g_warning("store: checkpoint connection: %s", db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return NULL;
  }
  /* A connection learns that the database is in WAL mode when it first reads
   * it; until then a checkpoint does nothing and says it succeeded. */
  if (sqlite3_exec(db, "PRAGMA busy_timeout=100; SELECT count(*) FROM sqlite_schema",
                   NULL, NULL, NULL) != SQLITE_OK)
    g_warning("store: checkpoint connection: %s", sqlite3_errmsg(db));
  g_mutex_lock(&st->cp_lock);
  while (!st->cp_stop) {
    gint64 until = g_get_monotonic_time() + CHECKPOINT_INTERVAL_US;
    while (!st->cp_stop && g_cond_wait_until(&st->cp_cond, &st->cp_lock, until))
      ;
    if (st->cp_stop)
      break;
    g_mutex_unlock(&st->cp_lock);
    checkpoint(db);
    g_mutex_lock(&st->cp_lock);
  }
  g_mutex_unlock(&st->cp_lock);
  sqlite3_close(db);
  return NULL;
}

static void
stop_checkpointer(CtlStore *st)
{
  if (!st->checkpointer)
    return;
  g_mutex_lock(&st->cp_lock);
  st->cp_stop = TRUE;
  g_cond_signal(&st->cp_cond);
  g_mutex_unlock(&st->cp_lock);
  g_thread_join(st->checkpointer);
  st->checkpointer = NULL;
}

CtlStore *
ctl_store_open(const char *path, GError **error)
{
  CtlStore *st = g_new0(CtlStore, 1);
  st->path = g_strdup(path);
  st->after = g_array_new(FALSE, FALSE, sizeof(AfterCommit));
  st->lock_fd = -1;
  int rc = sqlite3_open_v2(path, &st->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  gboolean ok = rc == SQLITE_OK || fail(st, rc, error);
  int readonly = 0;
  ok = ok && take_lock(st, error);
  if (ok && (readonly = sqlite3_db_readonly(st->db, "main")) != 0) {
    g_set_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_OPEN, "database is read-only");
    ok = FALSE;
  }
  /* The first statement that touches the file tells a database from garbage. */
  ok = ok && exec(st, "PRAGMA journal_mode=WAL", error);
  ok = ok && exec(st, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
                      " PRAGMA busy_timeout=2000; PRAGMA wal_autocheckpoint=0;"
                      /* the WAL file is cut back to this when it starts over */
                      " PRAGMA journal_size_limit=67108864", error);
  ok = ok && migrate(st, error);
  ok = ok && exec(st, "SELECT count(*) FROM objects", error);
  ok = ok && prepare_all(st, error);
  if (!ok) {
    ctl_store_close(st);
    return NULL;
  }
  g_mutex_init(&st->cp_lock);
  g_cond_init(&st->cp_cond);
  st->checkpointer = g_thread_new("ctlfs-checkpoint", checkpointer, st);
  return st;
}

void
ctl_store_close(CtlStore *st)
{
  if (!st)
    return;
  if (st->q[Q_COMMIT]) {
    GError *error = NULL;
    if (!ctl_store_flush(st, &error)) {
      g_warning("store: last commit failed: %s", error->message);
      g_error_free(error);
    }
  }
  if (st->checkpointer) {
    stop_checkpointer(st);
    g_mutex_clear(&st->cp_lock);
    g_cond_clear(&st->cp_cond);
    /* Leave a small WAL behind: the next start reads less. */
    sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
  }
  for (int i = 0; i < Q_COUNT; i++)
    sqlite3_finalize(st->q[i]);
  if (st->db)
    sqlite3_close(st->db);
  /* Closed after SQLite so that its POSIX locks are not dropped early. */
  if (st->lock_fd >= 0)
    close(st->lock_fd);
  g_array_unref(st->after);
  g_free(st->path);
  g_free(st);
}

/* Group commit. The first write of a main-loop iteration opens a transaction
 * that the next flush (an idle callback at default priority, so it runs once
 * the iteration's requests are handled) commits: a burst of commands shares
 * one commit and its pages. Each logical transaction inside it is a savepoint,
 * so a failed step still rolls back alone. Replies that promise durability
 * wait for the commit (ctl_store_after_commit). */
static gboolean
on_flush(gpointer data)
{
  CtlStore *st = data;
  st->flush_src = 0;
  if (st->depth > 0) {     /* never commit half an operation: try again */
    st->flush_src = g_idle_add(on_flush, st);
    return G_SOURCE_REMOVE;
  }
  GError *error = NULL;
  ctl_store_flush(st, &error);
  if (error) {
    g_warning("store: commit failed: %s", error->message);
    g_error_free(error);
  }
  return G_SOURCE_REMOVE;
}

static gboolean
open_batch(CtlStore *st, GError **error)
{
  if (st->batch)
    return TRUE;
  if (!run(st, prep(st, Q_BEGIN), error))
    return FALSE;
  st->batch = TRUE;
  if (!st->flush_src)
    st->flush_src = g_idle_add(on_flush, st);
  return TRUE;
}

gboolean
ctl_store_flush(CtlStore *st, GError **error)
{
  if (st->flush_src) {
    g_source_remove(st->flush_src);
    st->flush_src = 0;
  }
  if (!st->batch)
    return TRUE;
  g_return_val_if_fail(st->depth == 0, FALSE);
  st->batch = FALSE;
  GError *local = NULL;
  gboolean ok = run(st, prep(st, Q_COMMIT), &local);
  if (!ok) {
    run(st, prep(st, Q_ROLLBACK), NULL);
  }
  /* Callbacks may write again (a new batch): take the list first. */
  GArray *after = st->after;
  st->after = g_array_new(FALSE, FALSE, sizeof(AfterCommit));
  for (guint i = 0; i < after->len; i++) {
    AfterCommit *a = &g_array_index(after, AfterCommit, i);
    a->fn(a->data, ok, ok ? NULL : local->message);
  }
  g_array_unref(after);
  /* After the callbacks: they answered the batch's writers EIO and dropped
   * what depended on it; the model then goes back to what the store has. */
  if (!ok && st->on_lost)
    st->on_lost(st->on_lost_data, FALSE, local->message);
  if (local)
    g_propagate_error(error, local);
  return ok;
}

void
ctl_store_after_commit(CtlStore *st, CtlStoreCommitted fn, gpointer data)
{
  if (!st->batch) {
    fn(data, TRUE, NULL);
    return;
  }
  AfterCommit a = { fn, data };
  g_array_append_val(st->after, a);
}

void
ctl_store_on_lost_commit(CtlStore *st, CtlStoreCommitted fn, gpointer data)
{
  st->on_lost = fn;
  st->on_lost_data = data;
}

gboolean
ctl_store_begin(CtlStore *st, GError **error)
{
  if (st->depth > 0) {
    st->depth++;
    return TRUE;
  }
  if (!open_batch(st, error) || !run(st, prep(st, Q_SAVEPOINT), error))
    return FALSE;
  st->failed = FALSE;
  st->depth = 1;
  return TRUE;
}

static void
undo_savepoint(CtlStore *st)
{
  run(st, prep(st, Q_ROLLBACK_TO), NULL);
  run(st, prep(st, Q_RELEASE), NULL);
}

gboolean
ctl_store_commit(CtlStore *st, GError **error)
{
  g_return_val_if_fail(st->depth > 0, FALSE);
  if (--st->depth > 0)
    return TRUE;
  if (st->failed) {
    undo_savepoint(st);
    g_set_error(error, CTL_STORE_ERROR, CTL_STORE_ERROR_IO, "transaction rolled back");
    return FALSE;
  }
  if (!run(st, prep(st, Q_RELEASE), error)) {
    undo_savepoint(st);
    return FALSE;
  }
  return TRUE;
}

void
ctl_store_rollback(CtlStore *st)
{
  /* A failed commit has already rolled back: nothing left to undo. */
  if (st->depth == 0)
    return;
  if (--st->depth > 0) {
    st->failed = TRUE;
    return;
  }
  undo_savepoint(st);
}

/* ---- objects ---- */

gboolean
ctl_store_objects_foreach(CtlStore *st, CtlObjectRowFn fn, gpointer user_data, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_OBJ_ALL);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    CtlObjectRow row = {
      .id = sqlite3_column_int64(s, 0),
      .parent_id = sqlite3_column_int64(s, 1),
      .kind = sqlite3_column_int(s, 2),
      .name = col_text(s, 3),
      .desired = col_text(s, 4),
      .observed = col_text(s, 5),
      .observed_at = sqlite3_column_int64(s, 6),
      .feedback_at = sqlite3_column_int64(s, 7),
      .pending = col_text(s, 8),
      .last_error = col_text(s, 9),
    };
    fn(&row, user_data);
  }
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? TRUE : fail(st, rc, error);
}

gint64
ctl_store_object_insert(CtlStore *st, gint64 parent_id, int kind, const char *name,
                        gint64 now_ms, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_OBJ_INSERT);
  sqlite3_bind_int64(s, 1, parent_id);
  sqlite3_bind_int(s, 2, kind);
  bind_text(s, 3, name);
  sqlite3_bind_int64(s, 4, now_ms);
  if (!run(st, s, error))
    return 0;
  return sqlite3_last_insert_rowid(st->db);
}

gboolean
ctl_store_object_delete(CtlStore *st, gint64 id, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_SET_DEL_OBJ);
  sqlite3_bind_int64(s, 1, id);
  if (!run(st, s, error))
    return FALSE;
  s = prep(st, Q_OBJ_DELETE);
  sqlite3_bind_int64(s, 1, id);
  return run(st, s, error);
}

gboolean
ctl_store_setting_put(CtlStore *st, gint64 object_id, const char *name, const char *value,
                      gint64 now_ms, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_SET_PUT);
  sqlite3_bind_int64(s, 1, object_id);
  bind_text(s, 2, name);
  bind_text(s, 3, value);
  sqlite3_bind_int64(s, 4, now_ms);
  return run(st, s, error);
}

gboolean
ctl_store_settings_foreach(CtlStore *st, CtlSettingFn fn, gpointer user_data, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_SET_ALL);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    fn(sqlite3_column_int64(s, 0), col_text(s, 1), col_text(s, 2), sqlite3_column_int64(s, 3),
       user_data);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? TRUE : fail(st, rc, error);
}

gboolean
ctl_store_object_save(CtlStore *st, const CtlObjectRow *row, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_OBJ_SAVE);
  sqlite3_bind_int64(s, 1, row->id);
  bind_text(s, 2, row->desired);
  bind_text(s, 3, row->observed);
  sqlite3_bind_int64(s, 4, row->observed_at);
  sqlite3_bind_int64(s, 5, row->feedback_at);
  bind_text(s, 6, row->pending);
  bind_text(s, 7, row->last_error);
  return run(st, s, error);
}

/* ---- commands ---- */

gboolean
ctl_store_command_insert(CtlStore *st, const CtlCommandRow *row, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_CMD_INSERT);
  bind_text(s, 1, row->id);
  sqlite3_bind_int64(s, 2, row->object_id);
  bind_text(s, 3, row->runtime);
  bind_text(s, 4, row->resource);
  bind_text(s, 5, row->verb);
  bind_text(s, 6, row->mode);
  sqlite3_bind_int64(s, 7, row->uid);
  bind_text(s, 8, row->user);
  sqlite3_bind_int64(s, 9, row->pid);
  bind_text(s, 10, row->comm);
  bind_text(s, 11, row->host);
  sqlite3_bind_int64(s, 12, row->issued_at);
  bind_text(s, 13, row->result);
  sqlite3_bind_int64(s, 14, row->offset);
  bind_text(s, 15, row->error);
  sqlite3_bind_int64(s, 16, g_get_real_time() / 1000);
  return run(st, s, error);
}

gboolean
ctl_store_command_update(CtlStore *st, const char *id, const char *result, gint64 offset,
                         const char *error_text, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_CMD_UPDATE);
  bind_text(s, 1, id);
  bind_text(s, 2, result);
  sqlite3_bind_int64(s, 3, offset);
  bind_text(s, 4, error_text);
  sqlite3_bind_int64(s, 5, g_get_real_time() / 1000);
  return run(st, s, error);
}

static gboolean
commands_foreach(CtlStore *st, sqlite3_stmt *s, CtlCommandRowFn fn, gpointer user_data,
                 GError **error)
{
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    CtlCommandRow row = {
      .id = col_text(s, 0),
      .object_id = sqlite3_column_int64(s, 1),
      .runtime = col_text(s, 2),
      .resource = col_text(s, 3),
      .verb = col_text(s, 4),
      .mode = col_text(s, 5),
      .uid = sqlite3_column_int64(s, 6),
      .user = col_text(s, 7),
      .pid = sqlite3_column_int64(s, 8),
      .comm = col_text(s, 9),
      .host = col_text(s, 10),
      .issued_at = sqlite3_column_int64(s, 11),
      .result = col_text(s, 12),
      .offset = sqlite3_column_int64(s, 13),
      .error = col_text(s, 14),
    };
    fn(&row, user_data);
  }
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? TRUE : fail(st, rc, error);
}

gboolean
ctl_store_queued_commands(CtlStore *st, const char *mode, CtlCommandRowFn fn, gpointer user_data,
                          GError **error)
{
  sqlite3_stmt *s = prep(st, Q_CMD_QUEUED);
  bind_text(s, 1, mode);
  return commands_foreach(st, s, fn, user_data, error);
}

gboolean
ctl_store_last_commands(CtlStore *st, CtlCommandRowFn fn, gpointer user_data, GError **error)
{
  return commands_foreach(st, prep(st, Q_CMD_LAST), fn, user_data, error);
}

gint64
ctl_store_commands_count(CtlStore *st, const char *result)
{
  sqlite3_stmt *s = prep(st, Q_CMD_COUNT);
  bind_text(s, 1, result);
  gint64 n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  return n;
}

/* ---- events ---- */

static void
bind_offset(sqlite3_stmt *s, int i, gint64 off)
{
  if (off >= 0)
    sqlite3_bind_int64(s, i, off);
  else
    sqlite3_bind_null(s, i);
}

gboolean
ctl_store_event_append(CtlStore *st, const CtlEventPos *pos, const char *line, gsize len,
                       GError **error)
{
  sqlite3_stmt *s = prep(st, Q_EV_INSERT);
  sqlite3_bind_int64(s, 1, pos->ts);
  sqlite3_bind_int64(s, 2, pos->object_id);
  sqlite3_bind_int64(s, 3, pos->runtime_id);
  sqlite3_bind_int64(s, 4, pos->off_root);
  bind_offset(s, 5, pos->off_runtime);
  bind_offset(s, 6, pos->off_object);
  sqlite3_bind_blob(s, 7, line, (int) len, SQLITE_STATIC);
  return run(st, s, error);
}

static const int size_query[] = { Q_SIZE_ROOT, Q_SIZE_RT, Q_SIZE_OBJ };
static const int read_query[] = { Q_READ_ROOT, Q_READ_RT, Q_READ_OBJ };

gint64
ctl_store_stream_size(CtlStore *st, CtlStream which, gint64 id, GError **error)
{
  sqlite3_stmt *s = prep(st, size_query[which]);
  if (which != CTL_STREAM_ROOT)
    sqlite3_bind_int64(s, 1, id);
  int rc = sqlite3_step(s);
  gint64 size = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    fail(st, rc, error);
    return -1;
  }
  return size;
}

gssize
ctl_store_stream_read(CtlStore *st, CtlStream which, gint64 id, gint64 offset, char *buf,
                      gsize size, GError **error)
{
  sqlite3_stmt *s = prep(st, read_query[which]);
  if (which != CTL_STREAM_ROOT)
    sqlite3_bind_int64(s, 1, id);
  sqlite3_bind_int64(s, 2, offset);
  gsize done = 0;
  int rc = SQLITE_DONE;
  while (done < size && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    gint64 line_off = sqlite3_column_int64(s, 0);
    const char *line = sqlite3_column_blob(s, 1);
    gint64 len = sqlite3_column_bytes(s, 1);
    gint64 skip = offset + (gint64) done - line_off;   /* > 0 only for the first line */
    if (skip < 0 || skip >= len)
      continue;
    gsize n = MIN((gsize) (len - skip), size - done);
    memcpy(buf + done, line + skip, n);
    done += n;
  }
  if (done < size && rc != SQLITE_DONE) {
    sqlite3_reset(s);
    fail(st, rc, error);
    return -1;
  }
  sqlite3_reset(s);
  return (gssize) done;
}

/* ---- offsets ---- */

gint64
ctl_store_offset_get(CtlStore *st, const char *topic, int partition)
{
  sqlite3_stmt *s = prep(st, Q_OFF_GET);
  bind_text(s, 1, topic);
  sqlite3_bind_int(s, 2, partition);
  gint64 off = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_reset(s);
  return off;
}

void
ctl_store_offset_foreach(CtlStore *st, const char *topic, CtlOffsetFn fn, gpointer user_data)
{
  sqlite3_stmt *s = prep(st, Q_OFF_ALL);
  bind_text(s, 1, topic);
  while (sqlite3_step(s) == SQLITE_ROW)
    fn(sqlite3_column_int(s, 0), sqlite3_column_int64(s, 1), user_data);
  sqlite3_reset(s);
}

gboolean
ctl_store_offset_set(CtlStore *st, const char *topic, int partition, gint64 next, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_OFF_SET);
  bind_text(s, 1, topic);
  sqlite3_bind_int(s, 2, partition);
  sqlite3_bind_int64(s, 3, next);
  return run(st, s, error);
}

gboolean
ctl_store_offset_delete(CtlStore *st, const char *topic, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_OFF_DEL);
  bind_text(s, 1, topic);
  return run(st, s, error);
}

gboolean
ctl_store_refusal_insert(CtlStore *st, const CtlRefusalRow *row, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_REFUSAL_INSERT);
  sqlite3_bind_int64(s, 1, row->ts);
  bind_text(s, 2, row->action);
  bind_text(s, 3, row->path);
  bind_text(s, 4, row->input);
  bind_text(s, 5, row->err);
  bind_text(s, 6, row->reason);
  sqlite3_bind_int64(s, 7, row->uid);
  bind_text(s, 8, row->user);
  sqlite3_bind_int64(s, 9, row->pid);
  bind_text(s, 10, row->comm);
  bind_text(s, 11, row->host);
  return run(st, s, error);
}

gint64
ctl_store_announcement_insert(CtlStore *st, const char *key, const char *value, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_ANN_INSERT);
  bind_text(s, 1, key);
  bind_text(s, 2, value);
  if (!run(st, s, error))
    return -1;
  return sqlite3_last_insert_rowid(st->db);
}

gboolean
ctl_store_announcement_delete(CtlStore *st, gint64 seq, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_ANN_DELETE);
  sqlite3_bind_int64(s, 1, seq);
  return run(st, s, error);
}

gboolean
ctl_store_announcements_foreach(CtlStore *st, CtlAnnouncementFn fn, gpointer user_data,
                                GError **error)
{
  sqlite3_stmt *s = prep(st, Q_ANN_ALL);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    fn(sqlite3_column_int64(s, 0), (const char *) sqlite3_column_text(s, 1),
       (const char *) sqlite3_column_text(s, 2), user_data);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? TRUE : fail(st, rc, error);
}

gboolean
ctl_store_command_lookup(CtlStore *st, const char *id, gboolean *peer)
{
  sqlite3_stmt *s = prep(st, Q_CMD_LOOKUP);
  bind_text(s, 1, id);
  gboolean found = sqlite3_step(s) == SQLITE_ROW;
  if (found)
    *peer = sqlite3_column_int(s, 0) != 0;
  sqlite3_reset(s);
  return found;
}

gboolean
ctl_store_command_get(CtlStore *st, const char *id, gint64 *object_id, char **verb,
                      char **result)
{
  sqlite3_stmt *s = prep(st, Q_CMD_GET);
  bind_text(s, 1, id);
  gboolean found = sqlite3_step(s) == SQLITE_ROW;
  if (found) {
    *object_id = sqlite3_column_int64(s, 0);
    *verb = g_strdup(col_text(s, 1));
    *result = g_strdup(col_text(s, 2));
  }
  sqlite3_reset(s);
  return found;
}

gboolean
ctl_store_command_issuer(CtlStore *st, const char *id, gint64 *uid, char **user, gint64 *pid,
                         char **comm, char **host)
{
  sqlite3_stmt *s = prep(st, Q_CMD_ISSUER);
  bind_text(s, 1, id);
  gboolean found = sqlite3_step(s) == SQLITE_ROW;
  if (found) {
    *uid = sqlite3_column_int64(s, 0);
    *user = g_strdup(col_text(s, 1));
    *pid = sqlite3_column_int64(s, 2);
    *comm = g_strdup(col_text(s, 3));
    *host = g_strdup(col_text(s, 4));
  }
  sqlite3_reset(s);
  return found;
}

gboolean
ctl_store_tree_key_set(CtlStore *st, const char *key, gint64 offset, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_TREE_SET);
  bind_text(s, 1, key);
  sqlite3_bind_int64(s, 2, offset);
  return run(st, s, error);
}

gboolean
ctl_store_tree_keys_foreach(CtlStore *st, CtlTreeKeyFn fn, gpointer user_data, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_TREE_ALL);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    fn((const char *) sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1), user_data);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? TRUE : fail(st, rc, error);
}

gboolean
ctl_store_placed_commands(CtlStore *st, CtlPlacedFn fn, gpointer user_data, GError **error)
{
  sqlite3_stmt *s = prep(st, Q_CMD_PLACED);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    fn(sqlite3_column_int64(s, 0), (const char *) sqlite3_column_text(s, 1),
       sqlite3_column_int64(s, 2), (const char *) sqlite3_column_text(s, 3),
       sqlite3_column_int(s, 4) != 0, user_data);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? TRUE : fail(st, rc, error);
}
