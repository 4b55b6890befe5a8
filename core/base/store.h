/* The store: one SQLite database, WAL mode, the daemon its only writer.
 * It holds objects with their desired and observed state, commands with their
 * audit fields, the event streams behind every `log`, and consumer offsets.
 *
 * Every function runs on the caller's thread (the main loop); statements are
 * prepared once at open. Errors come back as GError in CTL_STORE_ERROR with the
 * SQLite message, so callers can put the reason in `log` and `status`. */
#pragma once
#include <glib.h>

#define CTL_STORE_ERROR (ctl_store_error_quark())
GQuark ctl_store_error_quark(void);
typedef enum {
  CTL_STORE_ERROR_OPEN,      /* cannot open/create the file */
  CTL_STORE_ERROR_CORRUPT,   /* not a database, or integrity check failed */
  CTL_STORE_ERROR_VERSION,   /* schema newer than this program */
  CTL_STORE_ERROR_LOCKED,    /* another process holds the write lock */
  CTL_STORE_ERROR_FULL,      /* disk full */
  CTL_STORE_ERROR_IO,        /* anything else */
} CtlStoreError;

typedef struct CtlStore CtlStore;

/* Opens (creating if needed) the database at PATH, checks it, migrates the
 * schema forward. A file that is not a database, or cannot be written, is an
 * error here, at start, never a silent empty tree. */
CtlStore   *ctl_store_open(const char *path, GError **error);
void        ctl_store_close(CtlStore *st);

/* Transactions. Nesting is counted so a caller that already holds one can call
 * helpers that open their own; an inner rollback dooms the outer one. A failed
 * commit rolls back by itself; rollback after it is a no-op.
 *
 * Group commit: a transaction that commits is released into a batch that is
 * written to disk (COMMIT) by the next flush, which the main loop runs once
 * the current iteration's work is done (or ctl_store_flush(), or close). What
 * must not be promised before it is on disk waits in ctl_store_after_commit(). */
gboolean ctl_store_begin(CtlStore *st, GError **error);
gboolean ctl_store_commit(CtlStore *st, GError **error);
void     ctl_store_rollback(CtlStore *st);

/* OK is FALSE when the batch could not be committed (REASON says why). */
typedef void (*CtlStoreCommitted)(gpointer data, gboolean ok, const char *reason);
/* Commits the open batch now and runs what waited for it. */
gboolean ctl_store_flush(CtlStore *st, GError **error);
/* Calls FN once what was written so far is committed (at once if it is). */
void     ctl_store_after_commit(CtlStore *st, CtlStoreCommitted fn, gpointer data);
/* FN is told of every batch that failed to commit (its changes are lost),
 * after the batch's after-commit callbacks have run. */
void     ctl_store_on_lost_commit(CtlStore *st, CtlStoreCommitted fn, gpointer data);

/* ---- objects ---- */
typedef struct {
  gint64      id;            /* rowid, never reused (AUTOINCREMENT) */
  gint64      parent_id;     /* 0 for runtimes */
  int         kind;          /* CtlKind of model.h */
  const char *name;
  const char *desired;       /* NULL when none */
  const char *observed;      /* NULL when never reported */
  gint64      observed_at;   /* ms, 0 when never */
  gint64      feedback_at;   /* ms when ctlfs last received feedback, 0 never */
  const char *pending;       /* command id awaiting feedback, or NULL */
  const char *last_error;    /* or NULL */
} CtlObjectRow;

typedef void (*CtlObjectRowFn)(const CtlObjectRow *row, gpointer user_data);

/* Calls FN for every object, parents before children (ordered by id). */
gboolean ctl_store_objects_foreach(CtlStore *st, CtlObjectRowFn fn, gpointer user_data, GError **error);
/* Returns the new id, or 0 with ERROR set. */
gint64   ctl_store_object_insert(CtlStore *st, gint64 parent_id, int kind, const char *name,
                                 gint64 now_ms, GError **error);
/* Deletes the object's row and its settings. */
gboolean ctl_store_object_delete(CtlStore *st, gint64 id, GError **error);

/* Named settings of an object (schema v4): a flow's mode, a module's options. */
gboolean ctl_store_setting_put(CtlStore *st, gint64 object_id, const char *name,
                               const char *value, gint64 now_ms, GError **error);
typedef void (*CtlSettingFn)(gint64 object_id, const char *name, const char *value,
                             gint64 updated_at, gpointer user_data);
gboolean ctl_store_settings_foreach(CtlStore *st, CtlSettingFn fn, gpointer user_data,
                                    GError **error);
/* Writes the mutable columns (desired .. last_error) of ROW->id. */
gboolean ctl_store_object_save(CtlStore *st, const CtlObjectRow *row, GError **error);

/* ---- commands ---- */
typedef struct {
  const char *id;            /* uuid */
  gint64      object_id;
  const char *runtime;
  const char *resource;
  const char *verb;
  const char *mode;          /* "durable" | "queued" */
  gint64      uid;
  const char *user;
  gint64      pid;
  const char *comm;
  const char *host;
  gint64      issued_at;     /* ms */
  const char *result;        /* queued | sent | applied | failed */
  gint64      offset;        /* broker offset, -1 unknown */
  const char *error;         /* or NULL */
} CtlCommandRow;

typedef void (*CtlCommandRowFn)(const CtlCommandRow *row, gpointer user_data);

gboolean ctl_store_command_insert(CtlStore *st, const CtlCommandRow *row, GError **error);
/* Sets result, and offset/error when OFFSET >= 0 / ERROR_TEXT != NULL. */
gboolean ctl_store_command_update(CtlStore *st, const char *id, const char *result,
                                  gint64 offset, const char *error_text, GError **error);
/* Commands of MODE whose result is still "queued", oldest first (the outbox,
 * the unacknowledged). Indexed: only such commands are in the index. */
gboolean ctl_store_queued_commands(CtlStore *st, const char *mode,
                                   CtlCommandRowFn fn, gpointer user_data, GError **error);
/* The newest command of every object. */
gboolean ctl_store_last_commands(CtlStore *st, CtlCommandRowFn fn, gpointer user_data, GError **error);
/* Per object, the command with the highest topic offset known: its verb, id,
 * and whether another host issued it. */
typedef void (*CtlPlacedFn)(gint64 object_id, const char *verb, gint64 offset, const char *id,
                            gboolean peer, gpointer user_data);
gboolean ctl_store_placed_commands(CtlStore *st, CtlPlacedFn fn, gpointer user_data,
                                   GError **error);
/* Is command ID in the table (issued here, or seen from another host: PEER)? */
gboolean ctl_store_command_lookup(CtlStore *st, const char *id, gboolean *peer);
/* Command ID's object, verb and result (g_free both); FALSE when unknown. */
gboolean ctl_store_command_get(CtlStore *st, const char *id, gint64 *object_id, char **verb,
                               char **result);
/* Who issued command ID (g_free the strings); FALSE when unknown. */
gboolean ctl_store_command_issuer(CtlStore *st, const char *id, gint64 *uid, char **user,
                                  gint64 *pid, char **comm, char **host);
/* Number of commands in RESULT (any mode). */
gint64   ctl_store_commands_count(CtlStore *st, const char *result);

/* ---- refusals: requests refused (EACCES) or rejected (EINVAL, ...) ---- */
typedef struct {
  gint64      ts;            /* ms */
  const char *action;        /* read | command | declare */
  const char *path;          /* the object, as log lines name it */
  const char *input;         /* what was written or asked for, or NULL */
  const char *err;           /* "EACCES", "EINVAL", ... */
  const char *reason;
  gint64      uid;
  const char *user;
  gint64      pid;
  const char *comm;
  const char *host;
} CtlRefusalRow;

gboolean ctl_store_refusal_insert(CtlStore *st, const CtlRefusalRow *row, GError **error);

/* ---- announcements: declarations and removals not yet on the tree topic ---- */
typedef void (*CtlAnnouncementFn)(gint64 seq, const char *key, const char *value,
                                  gpointer user_data);
/* VALUE NULL: a removal (a tombstone on the topic). Returns the seq, -1 on error. */
gint64   ctl_store_announcement_insert(CtlStore *st, const char *key, const char *value,
                                       GError **error);
gboolean ctl_store_announcement_delete(CtlStore *st, gint64 seq, GError **error);
gboolean ctl_store_announcements_foreach(CtlStore *st, CtlAnnouncementFn fn, gpointer user_data,
                                         GError **error);

/* Per key of the tree topic, the offset of the record the tree shows. */
typedef void (*CtlTreeKeyFn)(const char *key, gint64 offset, gpointer user_data);
gboolean ctl_store_tree_key_set(CtlStore *st, const char *key, gint64 offset, GError **error);
gboolean ctl_store_tree_keys_foreach(CtlStore *st, CtlTreeKeyFn fn, gpointer user_data,
                                     GError **error);

/* ---- event streams ----
 * Every event is one line that belongs to three append-only byte streams: the
 * root log, its runtime's log, and its object's log. Each stream offset is
 * stored with the line, so reading at any offset is one index seek: `tail -n`
 * on a long history stays fast, and bytes at an offset never change. */
typedef enum { CTL_STREAM_ROOT, CTL_STREAM_RUNTIME, CTL_STREAM_OBJECT } CtlStream;

typedef struct {
  gint64 ts;
  gint64 object_id;    /* 0 for daemon-wide events */
  gint64 runtime_id;   /* 0 when none */
  gint64 off_root, off_runtime, off_object;   /* -1 when not in that stream */
} CtlEventPos;

gboolean ctl_store_event_append(CtlStore *st, const CtlEventPos *pos, const char *line,
                                gsize len, GError **error);
/* The size in bytes of a stream (ID ignored for ROOT). */
gint64   ctl_store_stream_size(CtlStore *st, CtlStream which, gint64 id, GError **error);
/* Copies up to SIZE bytes of the stream from OFFSET into BUF; returns the count
 * (0 at the end) or -1 with ERROR. */
gssize   ctl_store_stream_read(CtlStore *st, CtlStream which, gint64 id, gint64 offset,
                               char *buf, gsize size, GError **error);

/* ---- consumer offsets (next offset to consume), per topic and partition ---- */
gint64   ctl_store_offset_get(CtlStore *st, const char *topic, int partition);   /* -1 none */
gboolean ctl_store_offset_set(CtlStore *st, const char *topic, int partition, gint64 next,
                              GError **error);
gboolean ctl_store_offset_delete(CtlStore *st, const char *topic, GError **error);
/* Each partition of TOPIC with a stored position, in partition order. */
typedef void (*CtlOffsetFn)(int partition, gint64 next, gpointer user_data);
void     ctl_store_offset_foreach(CtlStore *st, const char *topic, CtlOffsetFn fn,
                                  gpointer user_data);
