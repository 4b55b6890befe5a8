/* Drift: a runtime reports, with nothing pending, a settled state other than
 * the one its resource is desired in (a runtime restarted without memory of
 * its commands, an operator acting behind ctlfs's back). It is shown
 * (status: drift, drift_since; metrics: ctlfs_drift_objects), logged when it
 * begins (`drift`) and when it ends (`drift-ended`), and with reconcile=resend
 * repaired: the desired command is issued again through the command path, as
 * ctlfs on behalf of whoever issued the desired state, with backoff and at
 * most reconcile-attempts times per drift (then `reconcile-gave-up`).
 *
 * Judged on reports only, after the report settled what it names: a report
 * while a command is pending (ours, a peer's, a re-send) is never drift; a
 * state on the way (pausing, starting...), stale or unknown neither begins
 * nor ends it. Only resources whose desired state a command set are judged
 * (their own, or their runtime's for one that follows it): the initial state
 * of one never commanded is a default, not a wish. A follower is repaired by
 * a runtime-wide re-send, which keeps it a follower.
 * Kept in memory: a restarted daemon judges again from the next report. */
#include "backend.h"
#include "engine-private.h"

#include <string.h>
#include <unistd.h>

#include "timefmt.h"
#include "verb.h"

/* Backoff of the re-sends: the first after 0.5-1 s (random, so that two
 * admin hosts rarely re-send at once; the first one's command, read back by
 * the other, sets its pending and so holds its own), then doubling, at most
 * 30 s. */
#define RESEND_FIRST_MS 500
#define RESEND_MAX_MS   30000

typedef struct {
  CtlEngine *engine;
  CtlObject *res;
  gint64     since_ms;      /* wall clock when it began */
  char      *desired, *observed;
  char      *on_behalf_of;  /* the by= text of who issued the desired state */
  guint      attempts;      /* re-sends in this drift */
  guint      timer;         /* the next re-send */
  gboolean   gave_up;
} Drift;

static GHashTable *
drifts(CtlEngine *e)
{
  return e->drifts;
}

static void
drift_free(gpointer p)
{
  Drift *d = p;
  if (d->timer)
    g_source_remove(d->timer);
  g_free(d->desired);
  g_free(d->observed);
  g_free(d->on_behalf_of);
  g_free(d);
}

static void
on_removed(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlEngine *e = data;
  if ((what & CTL_CHANGE_REMOVED) && e->drifts)
    g_hash_table_remove(e->drifts, obj);
}

void
ctl_engine_drift_init(CtlEngine *e)
{
  e->drifts = g_hash_table_new_full(NULL, NULL, NULL, drift_free);
  ctl_model_add_listener(e->model, on_removed, e);
}

void
ctl_engine_drift_fini(CtlEngine *e)
{
  g_clear_pointer(&e->drifts, g_hash_table_unref);
}

static gboolean
settled(const char *state)
{
  return g_strcmp0(state, "running") == 0 || g_strcmp0(state, "paused") == 0
         || g_strcmp0(state, "stopped") == 0;
}

static CtlReconcile
mode_of(CtlEngine *e, CtlObject *res)
{
  return ctl_config_reconcile(&e->cfg, res->parent->name);
}

/* Only runtime backends' resources: a tree backend (Rama) has no reports. */
static gboolean
judged(CtlEngine *e, CtlObject *res)
{
  const CtlBackend *b = ctl_engine_backend(e, res);
  return res->kind == CTL_KIND_RESOURCE && b && b->command_encode
         && mode_of(e, res) != CTL_RECONCILE_OFF;
}

/* Whose command set RES's desired state: RES's own (an override), its
 * runtime's (a resource that follows a runtime-wide state), or none (NULL: a
 * default nobody asked for). */
static CtlObject *
commanded_by(CtlEngine *e, CtlObject *res)
{
  if (ctl_engine_override(e, res))
    return res->desired_verb ? res : NULL;
  CtlObject *rt = res->parent;
  return ctl_engine_runtime_wide(e, rt) && rt->desired_verb ? rt : NULL;
}

/* The by= text of whoever issued OWNER's desired state ("-" when unknown). */
static char *
issuer(CtlEngine *e, CtlObject *owner)
{
  CtlCaller who = { 0 };
  gint64 uid = 0, pid = 0;
  char *user = NULL, *comm = NULL, *host = NULL;
  if (!owner->desired_id
      || !ctl_store_command_issuer(e->store, owner->desired_id, &uid, &user, &pid, &comm, &host))
    return g_strdup("-");
  who.uid = (uid_t) uid;
  who.pid = (pid_t) pid;
  who.user = user;
  who.comm = comm;
  who.host = host;
  char *by = ctl_caller_describe(&who);
  g_free(user);
  g_free(comm);
  g_free(host);
  return by;
}

static void
wake(CtlEngine *e, CtlObject *res)
{
  ctl_model_changed(e->model, res, CTL_CHANGE_STATE);
}

static void
log_line(CtlEngine *e, CtlObject *res, const char *event, GString *d)
{
  GError *error = NULL;
  gboolean ok = ctl_model_begin(e->model, &error);
  ok = ok && ctl_model_log(e->model, res, event, d->str, &error);
  if (!ctl_model_end(e->model, ok, &error)) {
    g_warning("%s: cannot log %s: %s", res->name, event, error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
}

static void
begin(CtlEngine *e, CtlObject *res, CtlObject *owner, const char *desired, gint64 offset)
{
  Drift *d = g_new0(Drift, 1);
  d->engine = e;
  d->res = res;
  d->since_ms = ctl_now_ms();
  d->desired = g_strdup(desired);
  d->observed = g_strdup(res->observed);
  d->on_behalf_of = issuer(e, owner);
  g_hash_table_insert(e->drifts, res, d);
  GString *line = g_string_new(NULL);
  ctl_kv_append(line, "desired", desired);
  ctl_kv_append(line, "observed", res->observed);
  ctl_engine_append_position(e, line, offset);
  ctl_kv_append(line, "reconcile", ctl_reconcile_name(mode_of(e, res)));
  log_line(e, res, "drift", line);
  wake(e, res);
}

/* Drift of RES ends: REASON ("agrees", "command") and the report's OFFSET
 * (-1: none) on the line. */
static void
end(CtlEngine *e, CtlObject *res, Drift *d, const char *reason, const char *command,
    gint64 offset)
{
  GString *line = g_string_new(NULL);
  ctl_kv_append(line, "desired", d->desired);
  ctl_kv_append(line, "observed", res->observed);
  ctl_kv_append(line, "reason", reason);
  if (command)
    ctl_kv_append(line, "command", command);
  g_string_append_printf(line, " attempts=%u after_ms=%" G_GINT64_FORMAT, d->attempts,
                         MAX(0, ctl_now_ms() - d->since_ms));
  if (offset >= 0)
    ctl_engine_append_position(e, line, offset);
  g_hash_table_remove(e->drifts, res);   /* frees d */
  log_line(e, res, "drift-ended", line);
  wake(e, res);
}

/* The verb that leads from OBSERVED to DESIRED on RES's backend. */
static const char *
repair_verb(CtlEngine *e, CtlObject *res, const char *desired, const char *observed)
{
  const CtlBackend *b = ctl_engine_backend(e, res);
  const char *verb = NULL;
  if (strcmp(desired, "paused") == 0)
    verb = "pause";
  else if (strcmp(desired, "stopped") == 0)
    verb = "stop";
  else if (strcmp(observed, "stopped") == 0 || !ctl_backend_takes(b, "resume"))
    verb = "start";
  else
    verb = "resume";
  return ctl_backend_takes(b, verb) ? verb : NULL;
}

static void
resent(int err, gpointer data)
{
  /* The command's own lines say how it went; the next report decides. */
}

static void schedule(CtlEngine *e, CtlObject *res, Drift *d);

static void
give_up(CtlEngine *e, CtlObject *res, Drift *d)
{
  d->gave_up = TRUE;
  GString *line = g_string_new(NULL);
  ctl_kv_append(line, "desired", d->desired);
  ctl_kv_append(line, "observed", res->observed);
  g_string_append_printf(line, " attempts=%u", d->attempts);
  ctl_kv_append(line, "on_behalf_of", d->on_behalf_of);
  log_line(e, res, "reconcile-gave-up", line);
  wake(e, res);
}

static gboolean
on_resend(gpointer data)
{
  Drift *d = data;
  CtlEngine *e = d->engine;
  CtlObject *res = d->res;
  d->timer = 0;
  /* A resource that follows its runtime is repaired by the runtime-wide
   * command: one to the resource would make it an override. */
  CtlObject *owner = commanded_by(e, res);
  if (!owner || res->pending || res->inflight > 0 || owner->inflight > 0 || e->stopping)
    return G_SOURCE_REMOVE;   /* held: the report on that command decides */
  const char *verb = repair_verb(e, res, d->desired, res->observed);
  if (!verb)
    return G_SOURCE_REMOVE;
  d->attempts++;
  GString *by = g_string_new("by=ctlfs");
  g_string_append_printf(by, " reconcile=%u", d->attempts);
  ctl_kv_append(by, "on_behalf_of", d->on_behalf_of);
  CtlCaller who = {
    .uid = geteuid(), .pid = getpid(), .user = (char *) "ctlfs",
    .comm = (char *) "ctlfs-reconcile", .host = g_get_host_name(), .describe_as = by->str,
  };
  ctl_engine_command_as(e, owner, verb, &who, resent, NULL);
  g_string_free(by, TRUE);
  return G_SOURCE_REMOVE;
}

static void
schedule(CtlEngine *e, CtlObject *res, Drift *d)
{
  if (d->timer || d->gave_up || mode_of(e, res) != CTL_RECONCILE_RESEND)
    return;
  if ((int) d->attempts >= ctl_config_reconcile_attempts(&e->cfg, res->parent->name)) {
    give_up(e, res, d);
    return;
  }
  gint64 ms = RESEND_FIRST_MS + g_random_int_range(0, RESEND_FIRST_MS);
  for (guint i = 0; i < d->attempts && ms < RESEND_MAX_MS; i++)
    ms *= 2;
  d->timer = g_timeout_add((guint) MIN(ms, RESEND_MAX_MS), on_resend, d);
}

void
ctl_engine_drift_report(CtlEngine *e, CtlObject *res, gint64 offset)
{
  if (!judged(e, res))
    return;
  Drift *d = g_hash_table_lookup(drifts(e), res);
  const char *desired = ctl_engine_desired(e, res);
  const char *observed = res->observed;
  if (!settled(desired) || !settled(observed))
    return;   /* on the way, or nothing to compare */
  if (strcmp(desired, observed) == 0) {
    if (d)
      end(e, res, d, "agrees", NULL, offset);
    return;
  }
  CtlObject *owner = commanded_by(e, res);
  if (res->pending || res->inflight > 0 || !owner)
    return;   /* a command on its way is not drift; nor is a default never asked for */
  if (d && strcmp(d->desired, desired) != 0) {
    end(e, res, d, "desired-changed", NULL, offset);
    d = NULL;
  }
  if (!d) {
    begin(e, res, owner, desired, offset);
    d = g_hash_table_lookup(drifts(e), res);
  } else if (ctl_set_str(&d->observed, observed)) {
    wake(e, res);
  }
  schedule(e, res, d);
}

void
ctl_engine_drift_commanded(CtlEngine *e, CtlObject *res, const char *id, const CtlCaller *who)
{
  if (!e->drifts || who->describe_as)
    return;   /* a re-send of ours holds the drift (pending), it does not end it */
  Drift *d = g_hash_table_lookup(e->drifts, res);
  if (d)
    end(e, res, d, "command", id, -1);
}

void
ctl_engine_drift_status(CtlEngine *e, CtlObject *res, GString *out)
{
  const CtlBackend *b = ctl_engine_backend(e, res);
  if (res->kind != CTL_KIND_RESOURCE || !b || !b->command_encode)
    return;
  Drift *d = e->drifts ? g_hash_table_lookup(e->drifts, res) : NULL;
  ctl_status_kv(out, "drift", d ? "yes" : "no");
  char ts[CTL_TIME_LEN];
  ctl_status_kv(out, "drift_since", d ? ctl_time_format(d->since_ms, ts) : NULL);
  ctl_status_kv(out, "reconcile", ctl_reconcile_name(mode_of(e, res)));
  const char *state = !d ? NULL : d->gave_up ? "gave-up" : d->timer ? "waiting"
                    : mode_of(e, res) == CTL_RECONCILE_RESEND && (res->pending || res->inflight)
                    ? "resending" : NULL;
  ctl_status_kv(out, "reconcile_state", state);
  g_string_append_printf(out, "reconcile_attempts: %u\n", d ? d->attempts : 0);
}

guint
ctl_engine_drift_count(CtlEngine *e)
{
  return e->drifts ? g_hash_table_size(e->drifts) : 0;
}
