/* The engine's own state, shared by the files of engine/ only (engine.c,
 * command.c, feedback.c, peers.c, stale.c, janitor.c, audit.c, metrics.c,
 * attrs.c, backend.c). Backends use engine/backend.h instead. */
#pragma once
#include <jansson.h>

#include "bus.h"
#include "engine.h"
#include "store.h"

typedef struct CtlJanitor CtlJanitor;
typedef struct CtlPeers CtlPeers;
typedef struct CtlStaleness CtlStaleness;

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
  gboolean       placed;     /* its offset in the command topic is known (or never will be) */
} CtlInflight;

/* One of our commands acknowledged by the broker and not yet read back from
 * its topic: enough to recognise it there without parsing it (command.c). */
typedef struct {
  char  *runtime, *resource, *verb;
  char  *value;              /* the message as produced; NULL past the byte budget */
  gsize  len;
} CtlAcked;
void ctl_acked_free(gpointer acked);
/* The messages kept in e->acked, at most (bytes): past it, read-backs are parsed. */
#define CTL_ACKED_BYTES_MAX (32 * 1024 * 1024)

/* Commands handed to librdkafka at once, at most. Past librdkafka's in-flight
 * limit for an idempotent producer (5 requests), its broker thread spins on
 * the queued rest (seen with 16 writers when every message was handed over:
 * one core busy, throughput down 4x); the rest wait in order in the engine's
 * own queue instead. The commands handed over in one main-loop iteration
 * travel together, so 16 of them make far fewer than 5 requests. A window of
 * 4 was the other bottleneck: the broker then has at most 4 commands between
 * two delivery reports, which reach the main thread once per iteration:
 * 16 writers made 3,100-3,800 durable commands/s with 4, 5,400-5,700 with 64
 * (the producer thread then 58 us of CPU per message, against 36 with 4) and
 * 6,300-6,600 with 16 (25 us) (docs/performance.md). */
#define CTL_PRODUCE_WINDOW 16

/* metrics.c: how long `state` writes took, from their arrival in
 * ctl_engine_command() to their answer; upper bounds in microseconds. */
#define CTL_WRITE_BUCKETS 16
typedef struct {
  guint64 count[CTL_WRITE_BUCKETS + 1];  /* per bucket, not cumulative; +Inf last */
  guint64 sum_us;
} CtlWriteHistogram;

/* The kinds of topic a consumed message may come from, for the count of
 * messages not used (each also has a log line saying why). */
typedef enum {
  CTL_UNUSED_COMMAND, CTL_UNUSED_FEEDBACK, CTL_UNUSED_OTHER, CTL_UNUSED_TREE,   /* name order */
  CTL_UNUSED_COUNT
} CtlUnused;

typedef struct CtlTopicChecks CtlTopicChecks;

struct CtlEngine {
  CtlConfig   cfg;
  CtlStore   *store;
  CtlModel   *model;
  CtlBus     *bus;
  GHashTable *by_topic;      /* feedback topic -> runtime CtlObject* */
  CtlPeers   *peers;         /* the other admin hosts (peers.c) */
  GHashTable *batch_offsets; /* "topic\037partition" -> gint64*: read in this batch,
                                stored at its end */
  /* The partition of the consumed message being handled (-1 outside one):
   * log lines name it beside the offset, and `desired` compares offsets only
   * within one partition. */
  int         msg_partition;
  const char *msg_key;       /* the message's key while it is handled */
  gsize       msg_key_len;
  GHashTable *acked;         /* id -> CtlAcked*: our commands acknowledged, not yet read back */
  gsize       acked_bytes;   /* their messages' bytes kept (CTL_ACKED_BYTES_MAX at most) */
  GHashTable *inflight;      /* command id -> CtlInflight* */
  gint64      started_us;
  GQueue      waiting;       /* CtlInflight not yet handed to the producer */
  guint       producing;     /* CtlInflight handed to it, not yet reported */
  gboolean    stopping;
  CtlStaleness *staleness;   /* when `observed` turns stale (stale.c) */
  GHashTable *drifts;        /* CtlObject* -> its drift (drift.c) */
  GHashTable *reported;      /* resources with reported metrics (reported.c), a set */
  GHashTable *reported_refusals;  /* CtlObject* -> the metrics refused last, logged once */
  CtlJanitor *janitor;       /* NULL unless --expire-after-ms (janitor.c) */
  CtlTopicChecks *topics;    /* each topic's check against [topics] (topics.c) */
  /* counters for `metrics` */
  GHashTable *commands;      /* "verb\037result" -> guint64* */
  guint64     rejected_writes, refused[CTL_ACCESS_COUNT];
  guint64     feedback_total, feedback_rejected, feedback_discovered;
  guint64     reported_rejected;         /* reported metrics not kept (reported.c) */
  guint64     unused[CTL_UNUSED_COUNT];  /* consumed messages not used, by topic kind */
  gint64      started_real_us;           /* wall clock at start: ctlfs_start_time_seconds */
  CtlWriteHistogram writes[2];           /* [0] answered 0, [1] answered an errno */
  GHashTable *backend_data;  /* CtlBackend* -> its private state (backend.c) */
};

/* audit.c: records and logs a refused (EACCES) or rejected (EINVAL,
 * EOPNOTSUPP) request on OBJ; INPUT is what was written or asked for. */
void ctl_engine_refuse(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *input,
                       gsize len, const char *reason, const CtlCaller *who);

/* topics.c: TOPIC checked against [topics] for ROLE, once per start (its
 * outcome is logged on the root and on its runtime); the outcome as
 * "OUTCOME: DETAIL" or "checking" (NULL: never asked); the topics found
 * otherwise than configured (differing, missing, failed), space-separated,
 * or NULL. */
void        ctl_engine_topics_start(CtlEngine *e);
void        ctl_engine_topics_stop(CtlEngine *e);
void        ctl_engine_topics_ensure(CtlEngine *e, const char *topic, CtlTopicRole role);
const char *ctl_engine_topic_check(CtlEngine *e, const char *topic);
char       *ctl_engine_topics_astray(CtlEngine *e);
void        ctl_engine_topic_checked(const char *topic, CtlTopicRole role,
                                     CtlTopicOutcome outcome, const char *detail,
                                     gpointer user_data);

/* command.c */
void ctl_engine_command_delivered(gpointer opaque, gboolean ok, int partition, gint64 offset, const char *reason,
                                  gboolean timed_out, gboolean possibly_persisted,
                                  gpointer user_data);
void ctl_engine_outbox_restart(CtlEngine *e);
void ctl_inflight_free(gpointer inflight);
void ctl_engine_inflight_fail_all(CtlEngine *e, const char *reason);
/* A runtime reported on command ID: applied (OK) or failed (WHY). */
void ctl_engine_command_applied(CtlEngine *e, CtlObject *res, const char *id, gboolean ok,
                                const char *why);

/* A report on an older command of RES than its newest: that command's row
 * and log line only (see command.c). */
void ctl_engine_command_settle_older(CtlEngine *e, CtlObject *res, const char *id,
                                     const char *verb, gboolean ok, const char *why);

/* command.c: the command topic's order decides `desired` (see there). */
void ctl_engine_desire(CtlEngine *e, CtlObject *res, const char *verb, const char *id,
                       gboolean ours, int partition, gint64 offset, gboolean elsewhere);
/* A message read from RT's command topic at OFFSET (any host's command);
 * COMMAND_ID: its ctlfs-id header, a hint (NULL if none). */
void ctl_engine_command_seen(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value,
                             gsize len, const char *command_id);

/* peers.c: the other admin hosts (the shared tree topic, command topics). */
void       ctl_engine_peers_start(CtlEngine *e);
void       ctl_engine_peers_stop(CtlEngine *e);
void       ctl_engine_watch_runtime(CtlEngine *e, CtlObject *rt);
void       ctl_engine_unwatch_runtime(CtlEngine *e, CtlObject *rt);
/* Stores, in the caller's transaction, that OBJ was declared (or removed) here,
 * and sends it to the tree topic once committed. */
gboolean   ctl_engine_announce(CtlEngine *e, CtlObject *obj, gboolean declared, const char *by,
                               GError **error);
/* The tree topic's name; the runtime whose command topic TOPIC is (NULL). */
const char *ctl_engine_tree_topic(CtlEngine *e);
CtlObject  *ctl_engine_command_topic_runtime(CtlEngine *e, const char *topic);
/* Is TOPIC one peers.c reads (the tree topic, a command topic)? */
gboolean   ctl_engine_peers_reads(CtlEngine *e, const char *topic);
/* TRUE when TOPIC is the tree topic or a command topic (and the message was taken). */
gboolean   ctl_engine_peer_message(CtlEngine *e, const char *topic, int partition, gint64 offset,
                                   const char *key, gsize key_len, const char *value,
                                   gsize value_len, const char *command_id);
/* TRUE when OPAQUE was an announcement (and its delivery was taken). */
gboolean   ctl_engine_peer_delivered(CtlEngine *e, gpointer opaque, gboolean ok, gint64 offset);
/* A resource of RT named by another host's command or declaration. */
CtlObject *ctl_engine_peer_object(CtlEngine *e, CtlObject *rt, const char *name, gint64 offset);
/* A message on a shared topic that could not be used: logged on OBJ, counted. */
void       ctl_engine_peer_skip(CtlEngine *e, CtlObject *obj, gint64 offset, const char *why);

/* peers-objects.c: tree backends' objects on the tree topic. Is OBJ told to
 * other hosts (a runtime, a resource, or an object a tree backend's mkdir or
 * create makes)? */
gboolean   ctl_engine_shared(CtlEngine *e, CtlObject *obj);
/* ctl_engine_announce of a removal, with what the removal takes along. */
gboolean   ctl_engine_announce_removal(CtlEngine *e, CtlObject *obj, const char *by,
                                       GError **error);
/* Is KEY a tree backend object's ("modules:m1/...")? Its key and value. */
gboolean   ctl_peer_object_key(const char *key, gsize len);
char      *ctl_peer_object_key_of(CtlObject *obj);
char      *ctl_peer_object_value(CtlEngine *e, CtlObject *obj, const char *id,
                                 gboolean declared, const char *by);
typedef struct {
  char    *id, *path, *by;
  gboolean declared;
  json_t  *settings;   /* an object, never NULL */
} CtlPeerRecord;
/* NULL with *WHY when the record is unusable. */
CtlPeerRecord *ctl_peer_record_parse(const char *key, gsize key_len, const char *value,
                                     gsize len, const char **why);
void           ctl_peer_record_free(CtlPeerRecord *r);
/* Makes the tree show R (read at OFFSET; BY for the log lines). */
void           ctl_peer_record_apply(CtlEngine *e, const CtlPeerRecord *r, const char *by,
                                     gint64 offset);

/* stale.c: `observed` turns to stale --stale-after-ms after the last feedback;
 * that change is logged and wakes watchers like any other. */
void ctl_engine_stale_init(CtlEngine *e);
void ctl_engine_stale_touch(CtlEngine *e, CtlObject *res);
void ctl_engine_stale_forget(CtlEngine *e, CtlObject *res);
void ctl_engine_stale_fini(CtlEngine *e);
/* Resources whose `observed` reads stale now. */
guint ctl_engine_stale_count(CtlEngine *e);

/* drift.c: a report that disagrees with the desired state (see there). */
/* reported.c: the metrics feedback carries, kept per resource. */
void  ctl_engine_reported_init(CtlEngine *e);
void  ctl_engine_reported_fini(CtlEngine *e);
/* METRICS_JSON: a feedback message's "metrics" object on RES, read at OFFSET
 * (inside the feedback batch's transaction). */
void  ctl_engine_reported(CtlEngine *e, CtlObject *res, const char *metrics_json, gint64 offset);
typedef void (*CtlReportedFn)(const char *runtime, const char *resource, const char *name,
                              const char *value, gpointer user_data);
/* Calls FN for each kept metric, by runtime, resource and name, at most
 * metrics-series-max times; returns how many more there were. */
guint ctl_engine_reported_foreach(CtlEngine *e, CtlReportedFn fn, gpointer user_data);

void  ctl_engine_drift_init(CtlEngine *e);
void  ctl_engine_drift_fini(CtlEngine *e);
/* RES was reported on (at OFFSET), after the report settled its command. */
void  ctl_engine_drift_report(CtlEngine *e, CtlObject *res, gint64 offset);
/* WHO issued command ID to RES: a user's command ends a drift. */
void  ctl_engine_drift_commanded(CtlEngine *e, CtlObject *res, const char *id,
                                 const CtlCaller *who);
void  ctl_engine_drift_status(CtlEngine *e, CtlObject *res, GString *out);
guint ctl_engine_drift_count(CtlEngine *e);
/* command.c: VERB issued to OBJ by WHO as a user's write is, without the
 * parsing, the access policy or the unchanged check (ctlfs's own act). */
void  ctl_engine_command_as(CtlEngine *e, CtlObject *obj, const char *verb,
                            const CtlCaller *who, CtlCommandDone done, gpointer user_data);

/* feedback.c */
void ctl_engine_feedback_begin(gpointer user_data);
void ctl_engine_feedback_message(const char *topic, int partition, gint64 offset, const char *key, gsize key_len,
                                 const char *value, gsize value_len, gpointer user_data);
void ctl_engine_feedback_end(gpointer user_data);
/* A message of TOPIC was handled; NEXT is where reading goes on. */
void ctl_engine_consumed(CtlEngine *e, const char *topic, int partition, gint64 next);
/* "offset=O partition=P" of the message being handled, appended to D. */
void ctl_engine_append_position(CtlEngine *e, GString *d, gint64 offset);

/* janitor.c: runtimes silent for --expire-after-ms are inactive; with
 * expire=remove they are cleaned up. NULL when --expire-after-ms is 0
 * (never); every call takes NULL. */
CtlJanitor *ctl_janitor_new(CtlEngine *e);
void        ctl_janitor_free(CtlJanitor *j);
/* The engine began watching RT: its silence counts from now if it never reports. */
void        ctl_janitor_watch(CtlJanitor *j, CtlObject *rt);
/* Feedback from RT arrived: an inactive runtime is active again. */
void        ctl_janitor_heard(CtlJanitor *j, CtlObject *rt);
/* "active" | "inactive", NULL without a janitor; and how long RT has been silent. */
const char *ctl_janitor_activity(CtlJanitor *j, CtlObject *rt);
gint64      ctl_janitor_silent_ms(CtlJanitor *j, CtlObject *rt);

/* backend.c: every backend's start() (after the outbox) and stop(). */
void ctl_engine_backends_start(CtlEngine *e);
void ctl_engine_backends_stop(CtlEngine *e);
/* The status lines of the root, for attrs.c. Commands waiting for the broker. */
guint ctl_engine_commands_pending(CtlEngine *e);
/* engine.c: ctl_engine_authorize(), then WHO's audit fields resolved for
 * the log line that follows; and whether NAME is one of DIR's files. */
int      ctl_engine_authorize_and_resolve(CtlEngine *e, CtlAccess access, CtlObject *obj,
                                          const char *verb, const char *name, CtlCaller *who);
gboolean ctl_engine_names_a_file(CtlEngine *e, CtlObject *dir, const char *name);

/* runtime-state.c (see there): the runtime a command to OBJ goes to (OBJ
 * itself when it is a runtime), and its resource (NULL: runtime-wide); the
 * backend that encodes it. */
CtlObject        *ctl_command_runtime(CtlObject *obj);
const char       *ctl_command_resource(CtlObject *obj);
const struct CtlBackend *ctl_engine_command_backend(CtlEngine *e, CtlObject *obj);
/* Does RT's backend have a runtime-wide state? */
gboolean    ctl_engine_runtime_wide(CtlEngine *e, CtlObject *rt);
/* What OBJ's desired state becomes with VERB (inherit: its runtime's). */
const char *ctl_engine_desired_after(CtlEngine *e, CtlObject *obj, const char *verb);
/* RT is watched: its state is its initial one until commanded, and its
 * resources that follow it show it. */
void        ctl_engine_runtime_watched(CtlEngine *e, CtlObject *rt);
/* RT's desired state changed: the resources that follow it show it. */
void        ctl_engine_runtime_follow(CtlEngine *e, CtlObject *rt, gboolean elsewhere);
/* Runtime-wide command ID was issued: every resource that follows RT awaits
 * it (pending); RT's pending is cleared when none does. No transaction. */
void        ctl_engine_runtime_fanout(CtlEngine *e, CtlObject *rt, const char *id);
/* Does a resource of RT still await runtime-wide command ID? */
gboolean    ctl_engine_runtime_awaits(CtlEngine *e, CtlObject *rt, const char *id);
/* The verb of RES's runtime's newest command when that is ID, else NULL. */
const char *ctl_engine_runtime_command_verb(CtlObject *res, const char *id);
/* `runtimes/RT/observed`: the state every resource shows, "mixed" when they
 * differ, "unknown" without resources. */
const char *ctl_engine_runtime_observed(CtlEngine *e, CtlObject *rt);
