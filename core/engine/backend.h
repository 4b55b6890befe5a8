/* The backend interface: what a control plane plugs into the engine.
 *
 * A backend is one ops table (CtlBackend), in the spirit of lxcfs's
 * cgroup_ops and sysfs's kobj_type -> sysfs_ops: the engine and fs/ call
 * through it and never ask which control plane they have. Each lives in a
 * folder of its own under core/backends/ and is registered by one line in
 * core/backends/registry.c. See docs/architecture.md.
 *
 * Two ways a backend meets its objects:
 *  - a runtime backend drives the resources under runtimes/RT/, chosen per
 *    runtime by configuration (backend=, dialect=); its commands travel over
 *    Kafka through the engine's command path (command.c), in the shape its
 *    codec hooks give, and its runtimes' feedback comes back through its
 *    feedback hook;
 *  - a tree backend owns kinds of objects of its own (a subtree such as
 *    modules/) and carries its commands out itself (a CLI run, ...).
 * Either way, the files of an object are the attributes of its type. The
 * engine services a backend may use follow the table. */
#pragma once
#include <glib.h>

#include "engine.h"
#include "message.h"

/* A state a runtime passes through on its way to what VERB asks for: a
 * report of it names the command but does not settle it. */
typedef struct {
  const char *verb, *state;
} CtlUnderway;

typedef struct CtlBackend CtlBackend;
struct CtlBackend {
  const char *name;           /* for logs and docs */
  /* Runtime backends: the configuration values that select this one, also
   * shown in the runtime's status; NULL for a tree backend. */
  const char *backend, *dialect;
  /* Tree backends: the kinds of objects it owns (1 << CtlKind, or'ed). */
  guint       kinds;

  /* Runtime backends: the desired state of a runtime never commanded
   * (NULL: running); a runtime's `initial-state=` setting overrides it. */
  const char *initial_state;
  /* Runtime backends: does `runtimes/RT/state` take pause and resume, one
   * command for every resource that follows the runtime (and `inherit` a
   * resource's)? */
  gboolean    runtime_state;

  /* The verbs its `state` files take (NULL-terminated), and the states on
   * the way ({NULL} ends the table). */
  const char *const *verbs;
  const CtlUnderway *underway;

  /* The type of OBJ: a resource of one of its runtimes, or an object of a
   * kind it owns. */
  const CtlType *(*type)(CtlObject *obj);
  /* What OBJ's `state` shows (NULL: what its commands asked for). */
  const char *(*desired)(CtlEngine *e, CtlObject *obj);
  /* Status lines of its own after a leaf's common ones (NULL: none). */
  void (*status)(CtlEngine *e, CtlObject *obj, GString *out);

  /* Runtime backends: the command's Kafka key and value (g_free) for MSG on
   * resource OBJ, and the decoding of a command read back from the topic. */
  char     *(*command_key)(CtlEngine *e, CtlObject *obj);
  char     *(*command_encode)(CtlEngine *e, CtlObject *obj, CtlCommandMsg *msg);
  gboolean  (*command_decode)(const char *value, gsize len, CtlCommandMsg *msg,
                              GError **error);
  /* Another admin host's command MSG to RES, before it is recorded here
   * (NULL: nothing to do). */
  void      (*peer_command)(CtlEngine *e, CtlObject *res, const CtlCommandMsg *msg);
  /* A message of RT's command topic at OFFSET that command_decode refused:
   * TRUE when it is another producer's command, which the backend applied
   * (ctl_engine_desire_runtime, ctl_engine_peer_command); ID is made up from
   * its place in the topic. NULL, or FALSE: skipped as unusable. */
  gboolean  (*foreign_command)(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value,
                               gsize len, const char *id);
  /* A message from RT's feedback topic at OFFSET, no bigger than the
   * engine's limit: handed on report by report (ctl_engine_report) or
   * rejected (ctl_engine_feedback_reject). */
  void      (*feedback)(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value,
                        gsize len);

  /* Tree backends: declares NAME, a file, in DIR (a directory of a type
   * whose children come by create); WHO is authorised already. Errors as
   * ctl_model_create(). */
  int       (*create)(CtlEngine *e, CtlObject *dir, const char *name, const CtlCaller *who,
                      CtlObject **out);

  /* Life: after the engine's model, bus and outbox are up, and before they
   * go. Either may be NULL. */
  void      (*start)(CtlEngine *e);
  void      (*stop)(CtlEngine *e);
};

/* core/backends/registry.c: every backend, NULL-terminated. */
extern const CtlBackend *const ctl_backends[];

/* ---- finding a backend (engine/backend.c) ---- */

/* The backend of OBJ; NULL for the engine's own objects. */
const CtlBackend *ctl_engine_backend(CtlEngine *e, CtlObject *obj);
/* The backend of runtime RUNTIME, as configured (never NULL once the
 * configuration passed ctl_backends_check()). */
const CtlBackend *ctl_engine_runtime_backend(CtlEngine *e, const char *runtime);
const CtlBackend *ctl_backend_for(const char *backend, const char *dialect);
/* Does every backend= and dialect= of CFG name a registered backend? FALSE
 * with a one-line error naming the key, the value and what is known. */
gboolean ctl_backends_check(const CtlConfig *cfg, GError **error);

gboolean ctl_backend_takes(const CtlBackend *b, const char *verb);
/* "pause, resume" (g_free). */
char    *ctl_backend_verbs_text(const CtlBackend *b);
gboolean ctl_backend_underway(const CtlBackend *b, const char *verb, const char *state);

/* A backend's private state for this engine (start() sets it). */
gpointer ctl_engine_backend_data(CtlEngine *e, const CtlBackend *b);
void     ctl_engine_set_backend_data(CtlEngine *e, const CtlBackend *b, gpointer data);

/* ---- attribute rows every backend may reuse (engine/attrs.c) ---- */

void ctl_attr_show_desired(CtlEngine *e, CtlObject *obj, GString *out);
void ctl_attr_show_observed(CtlEngine *e, CtlObject *obj, GString *out);
/* A leaf's status: desired, observed, pending, last command... then the
 * backend's own lines. */
void ctl_attr_show_leaf_status(CtlEngine *e, CtlObject *obj, GString *out);
/* A `state` write of a runtime backend's resource: ctl_engine_command(). */
void ctl_attr_store_command(CtlEngine *e, CtlObject *obj, const char *buf, gsize len,
                            gint64 offset, const CtlCaller *who, CtlCommandDone done,
                            gpointer user_data);
/* The type of a runtime backend's resource that adds no file of its own:
 * state, observed, status, log. */
const CtlType *ctl_type_resource(CtlObject *obj);
/* The states on the way of pause and resume (pausing; resuming, or starting
 * for a step that slept). */
extern const CtlUnderway ctl_underway_pause_resume[];
/* ctlfs's own dialect (SPEC.md): keyed by resource, so that one resource's
 * commands keep their order; the message of base/message.c. */
char    *ctl_dialect_ctlfs_key(CtlEngine *e, CtlObject *obj);
char    *ctl_dialect_ctlfs_encode(CtlEngine *e, CtlObject *obj, CtlCommandMsg *msg);
gboolean ctl_dialect_ctlfs_decode(const char *value, gsize len, CtlCommandMsg *msg,
                                  GError **error);
/* One status line "KEY: VALUE" ("-" for NULL or empty). */
void ctl_status_kv(GString *out, const char *key, const char *value);

/* reported.c: the metrics a resource's runtime reported, "NAME VALUE" lines. */
void ctl_attr_show_reported(CtlEngine *e, CtlObject *obj, GString *out);

#define CTL_ATTR_METRICS     { .name = "metrics", .mode = S_IFREG | 0444, \
                               .show = ctl_attr_show_reported, .wakes = CTL_CHANGE_METRICS }
#define CTL_ATTR_LOG         { .name = "log", .mode = S_IFREG | 0444, .stream = TRUE }
#define CTL_ATTR_OBSERVED    { .name = "observed", .mode = S_IFREG | 0444, \
                               .show = ctl_attr_show_observed }
#define CTL_ATTR_LEAF_STATUS { .name = "status", .mode = S_IFREG | 0444, \
                               .show = ctl_attr_show_leaf_status }

/* ---- engine services for backends ---- */

CtlStore *ctl_engine_store(CtlEngine *e);
/* audit.c: may WHO do ACCESS on OBJ (no record)? And the record of a
 * refused (EACCES) or rejected (EINVAL, EOPNOTSUPP, EBUSY) request; INPUT is
 * what was written. */
gboolean ctl_engine_allows(CtlEngine *e, CtlAccess access, CtlObject *obj, const CtlCaller *who);
void     ctl_engine_refuse(CtlEngine *e, CtlObject *obj, CtlAccess access, int err,
                           const char *input, gsize len, const char *reason,
                           const CtlCaller *who);
/* Answers DONE with ERR once what was just written is committed (EIO if
 * that commit failed). */
void     ctl_engine_reply(CtlEngine *e, int err, CtlCommandDone done, gpointer user_data);
/* metrics.c: times a write's answer from now (replaces DONE and USER_DATA). */
void     ctl_engine_time_write(CtlEngine *e, CtlCommandDone *done, gpointer *user_data);
void     ctl_engine_count_command(CtlEngine *e, const char *verb, const char *result);
/* peers-objects.c: tells other admin hosts (the tree topic) that OBJ's
 * shared settings (CtlType.shared) changed, in the caller's transaction;
 * BY may be NULL. TRUE for an object that is not shared. */
gboolean ctl_engine_announce_settings(CtlEngine *e, CtlObject *obj, const char *by,
                                      GError **error);
/* Logs EVENT on OBJ in a transaction of its own; a failure is only warned of. */
void     ctl_engine_log(CtlEngine *e, CtlObject *obj, const char *event, const char *details);

/* runtime-state.c: a runtime's state and its resources' overrides.
 * The runtime-wide desired state of RT: "paused" or "running" (its initial
 * state until a command to the runtime set it). */
const char *ctl_engine_runtime_desired(CtlEngine *e, CtlObject *rt);
/* RES's own desired state when it overrides its runtime's; NULL when it
 * follows the runtime. */
const char *ctl_engine_override(CtlEngine *e, CtlObject *res);
/* A runtime-wide command (VERB: pause, resume) read from RT's command topic
 * at OFFSET in the message's partition, by whoever produced it (ID may be a
 * made-up one when the producer gave none): sets the runtime's desired
 * state in the topic's order. */
void ctl_engine_desire_runtime(CtlEngine *e, CtlObject *rt, const char *verb, const char *id,
                               gint64 offset);

/* command.c: another producer's command MSG (no caller: uid, pid -1) to
 * RES, read at OFFSET: recorded and logged as another admin host's, BY
 * naming the producer in the log's by=. */
void ctl_engine_peer_command(CtlEngine *e, CtlObject *res, const CtlCommandMsg *msg,
                             gint64 offset, const char *by);
/* peers.c: RES named by a command read from RT's topic, created as peers'
 * resources are (NULL, skipped, when it cannot be); a message or part of it
 * not used, logged on OBJ. */
CtlObject *ctl_engine_peer_object(CtlEngine *e, CtlObject *rt, const char *name, gint64 offset);
void       ctl_engine_peer_skip(CtlEngine *e, CtlObject *obj, gint64 offset, const char *why);
/* The Kafka key of the message being handled (LEN set), NULL outside one. */
const char *ctl_engine_message_key(CtlEngine *e, gsize *len);

/* command.c: the newest command of ours on each resource of RT not yet
 * placed in its topic: CtlObject* -> its verb (g_hash_table_unref). */
GHashTable *ctl_engine_unplaced_verbs(CtlEngine *e, CtlObject *rt);
/* feedback.c: one report on resource FB->resource of RT; BY_STATE: it names
 * no command, and settles the pending one once the state it asked for is
 * reported. */
void ctl_engine_report(CtlEngine *e, CtlObject *rt, gint64 offset, const CtlFeedbackMsg *fb,
                       gboolean by_state);
void ctl_engine_feedback_reject(CtlEngine *e, CtlObject *rt, gint64 offset, const char *reason);
/* feedback.c: a message in ctlfs's own feedback shape (SPEC.md). */
void ctl_engine_feedback_ctlfs(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value,
                               gsize len);
