/* Shared between engine.c, command.c and feedback.c only. */
#pragma once
#include "bus.h"
#include "engine.h"
#include "store.h"

/* A command handed to the producer and not yet reported on. */
typedef struct {
  CtlEngine     *engine;
  char          *id;
  char          *verb;
  char          *by;         /* the issuer, as log lines show it */
  CtlObject     *obj;        /* rmdir is refused while obj->inflight > 0 */
  CtlCommandDone done;       /* NULL once answered (or in queued mode) */
  gpointer       user_data;
  guint          timer;      /* durable: the --ack-timeout-ms backstop */
  gboolean       applied;    /* feedback confirmed it before the broker's report */
  gboolean       timed_out;  /* the writer was told ETIMEDOUT */
  char          *topic, *key, *value;  /* the message, until it is produced */
  GList         *waiting;    /* its link in the engine's queue before the producer */
  gboolean       handed;     /* given to the producer (not waiting for its commit) */
} CtlInflight;

/* Commands handed to librdkafka at once, at most. Past librdkafka's in-flight
 * limit for an idempotent producer (5 requests), its broker thread spins on
 * the queued rest (seen with 16 writers: one core busy, throughput down 4x);
 * the rest wait in order in the engine's own queue instead. */
#define CTL_PRODUCE_WINDOW 4

struct CtlEngine {
  CtlConfig   cfg;
  CtlStore   *store;
  CtlModel   *model;
  CtlBus     *bus;
  GHashTable *by_topic;      /* feedback topic -> runtime CtlObject* */
  GHashTable *inflight;      /* command id -> CtlInflight* */
  gint64      started_us;
  GQueue      waiting;       /* CtlInflight not yet handed to the producer */
  guint       producing;     /* CtlInflight handed to it, not yet reported */
  gboolean    stopping;
  GQueue      fresh;         /* resources by last feedback, oldest first (stale.c) */
  guint       stale_timer;
  /* counters for `metrics` */
  GHashTable *commands;      /* "verb\037result" -> guint64* */
  guint64     rejected_writes, refused[CTL_ACCESS_COUNT];
  guint64     feedback_total, feedback_rejected, feedback_discovered;
};

/* engine.c: answers DONE with ERR once the batch holding what was just written
 * is committed (EIO instead, if the commit failed). */
void ctl_engine_reply(CtlEngine *e, int err, CtlCommandDone done, gpointer user_data);

/* audit.c: records and logs a refused (EACCES) or rejected (EINVAL,
 * EOPNOTSUPP) request on OBJ; INPUT is what was written or asked for. */
void ctl_engine_refuse(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *input,
                       gsize len, const char *reason, const CtlCaller *who);

/* command.c */
void ctl_engine_command_delivered(gpointer opaque, gboolean ok, gint64 offset, const char *reason,
                                  gboolean timed_out, gboolean possibly_persisted,
                                  gpointer user_data);
void ctl_engine_outbox_restart(CtlEngine *e);
void ctl_inflight_free(gpointer inflight);
void ctl_engine_inflight_fail_all(CtlEngine *e, const char *reason);
void ctl_engine_count_command(CtlEngine *e, const char *verb, const char *result);
/* A runtime reported on command ID: applied (OK) or failed (WHY). */
void ctl_engine_command_applied(CtlEngine *e, CtlObject *res, const char *id, gboolean ok,
                                const char *why);

/* stale.c: `observed` turns to stale --stale-after-ms after the last feedback;
 * that change is logged and wakes watchers like any other. */
void ctl_engine_stale_init(CtlEngine *e);
void ctl_engine_stale_touch(CtlEngine *e, CtlObject *res);
void ctl_engine_stale_forget(CtlEngine *e, CtlObject *res);
void ctl_engine_stale_fini(CtlEngine *e);

/* feedback.c */
void ctl_engine_feedback_begin(gpointer user_data);
void ctl_engine_feedback_message(const char *topic, gint64 offset, const char *key, gsize key_len,
                                 const char *value, gsize value_len, gpointer user_data);
void ctl_engine_feedback_end(gpointer user_data);
