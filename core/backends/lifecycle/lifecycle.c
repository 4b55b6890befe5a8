/* Flows of the lifecycle backend: their mode and when it may change.
 *
 * elastic.io greys out "Enable real-time" until the flow is stopped ("Before
 * you can change this you must stop the flow first"): the runtime learns a
 * flow's mode only when the flow starts (the mode rides with every command),
 * so a change while it runs would silently wait for the next start. */
#include "lifecycle.h"

#include <errno.h>
#include <string.h>

#include "verb.h"

const char *
ctl_lifecycle_mode(CtlObject *flow)
{
  const char *mode = ctl_model_setting(flow, "mode");
  return mode ? mode : CTL_MODE_ORDINARY;
}

/* Has a command to FLOW ever set its desired state? Every resource is stored
 * as desired running when it is made; a flow keeps that only once a command
 * took effect: placed in the command topic (durable mode: acknowledged), or
 * accepted in queued mode, which sets desired when the command is stored. */
static gboolean
commanded(CtlEngine *e, CtlObject *flow)
{
  if (flow->desired_verb)
    return TRUE;
  return ctl_engine_config(e)->write_mode == CTL_WRITE_QUEUED && flow->last_cmd_id
      && g_strcmp0(flow->last_cmd_result, "failed") != 0;
}

static const char *
flow_desired(CtlEngine *e, CtlObject *flow)
{
  if (!commanded(e, flow) || !flow->desired)
    return "stopped";
  return flow->desired;
}

const char *
ctl_lifecycle_mode_parse(const char *buf, gsize len, char **reason)
{
  static const char *const modes[] = { CTL_MODE_ORDINARY, CTL_MODE_REALTIME };
  if (len > 0 && buf[len - 1] == '\n')
    len--;
  for (gsize i = 0; i < G_N_ELEMENTS(modes); i++)
    if (strlen(modes[i]) == len && memcmp(buf, modes[i], len) == 0)
      return modes[i];
  *reason = g_strdup(len == 0 ? "empty mode" : "unknown mode (expected ordinary or realtime)");
  return NULL;
}

/* Stopped means: the operator's last word was stop (or there was none), no
 * command to the flow is still on its way to the broker, and the runtime
 * reports no running step. Sleeping counts (its steps are down until the
 * next start); unknown and stale count too, as the runtime takes the new
 * mode with the next start whatever it does now. */
char *
ctl_lifecycle_not_stopped(CtlEngine *e, CtlObject *flow)
{
  static const char *const at_rest[] = { "stopped", "sleeping", "unknown", "stale", NULL };
  const char *desired = flow_desired(e, flow);
  const char *observed = ctl_engine_observed(e, flow);
  if (flow->inflight > 0)
    return g_strdup("the flow must be stopped first: a command to it is still on its way");
  if (strcmp(desired, "stopped") != 0)
    return g_strdup_printf("the flow must be stopped first (echo stop > state):"
                           " desired %s, observed %s", desired, observed);
  if (!g_strv_contains(at_rest, observed))
    return g_strdup_printf("the flow must be stopped first: stop asked for, but observed"
                           " is %s; wait until it reads stopped", observed);
  return NULL;
}

static gboolean
store_mode(CtlEngine *e, CtlObject *flow, const char *from, const char *to, const CtlCaller *who,
           GError **error)
{
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "from", from);
  ctl_kv_append(d, "to", to);
  char *by = ctl_caller_describe(who);
  g_string_append_printf(d, " %s", by);
  ctl_set_str(&flow->last_error, NULL);
  CtlModel *m = ctl_engine_model(e);
  gboolean ok = ctl_model_begin(m, error);
  ok = ok && ctl_model_set_setting(m, flow, "mode", to, error);
  ok = ok && ctl_model_save(m, flow, error);
  ok = ok && ctl_model_log(m, flow, "mode", d->str, error);
  ok = ctl_model_end(m, ok, error);
  g_free(by);
  g_string_free(d, TRUE);
  return ok;
}

/* Another admin host's command to FLOW carries its mode: the mode was
 * changed there (while the flow was stopped, and every command carries it),
 * so it is adopted here before the command is recorded, logged as that
 * host's change. Nothing when it is the same. */
static void
peer_command(CtlEngine *e, CtlObject *flow, const CtlCommandMsg *msg)
{
  if (!msg->mode || strcmp(msg->mode, ctl_lifecycle_mode(flow)) == 0)
    return;
  CtlCaller who = { .uid = msg->uid, .pid = msg->pid, .user = msg->user, .comm = msg->comm,
                    .host = msg->host };
  char *from = g_strdup(ctl_lifecycle_mode(flow));
  GError *error = NULL;
  if (!store_mode(e, flow, from, msg->mode, &who, &error)) {
    g_warning("%s: cannot store the mode: %s", flow->name, error->message);
    g_error_free(error);
  }
  g_free(from);
  ctl_model_changed(ctl_engine_model(e), flow, CTL_CHANGE_STATE | CTL_CHANGE_SETTINGS);
}

/* Refusals name the file: input=mode=fast in the log and refusals table. */
static void
refuse(CtlEngine *e, CtlObject *flow, int err, const char *input, gsize len, const char *reason,
       const CtlCaller *who)
{
  GString *request = g_string_new("mode=");
  g_string_append_len(request, input, MIN(len, CTL_WRITE_MAX));
  ctl_engine_refuse(e, flow, CTL_ACCESS_COMMAND, err, request->str, request->len, reason, who);
  g_string_free(request, TRUE);
}

static void
store_mode_file(CtlEngine *e, CtlObject *flow, const char *input, gsize len, gint64 offset,
                const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  const char *mode = NULL;
  char *reason = ctl_write_shape_problem(len, offset, CTL_WRITE_MAX);
  if (!reason)
    mode = ctl_lifecycle_mode_parse(input, len, &reason);
  if (!mode) {
    refuse(e, flow, EINVAL, input, len, reason, who);
    g_free(reason);
    done(EINVAL, user_data);
    return;
  }
  if (!ctl_engine_allows(e, CTL_ACCESS_COMMAND, flow, who)) {
    refuse(e, flow, EACCES, input, len,
           "the access policy does not allow this caller to issue commands", who);
    done(EACCES, user_data);
    return;
  }
  const char *was = ctl_lifecycle_mode(flow);
  if (strcmp(was, mode) == 0) {
    done(0, user_data);   /* nothing changes, so nothing needs the flow stopped */
    return;
  }
  char *busy = ctl_lifecycle_not_stopped(e, flow);
  if (busy) {
    refuse(e, flow, EBUSY, input, len, busy, who);
    g_free(busy);
    done(EBUSY, user_data);
    return;
  }
  char *from = g_strdup(was);   /* the setting's old value goes with the change */
  GError *error = NULL;
  if (!store_mode(e, flow, from, mode, who, &error)) {
    ctl_set_str(&flow->last_error, error->message);
    g_warning("%s: cannot store the mode: %s", flow->name, error->message);
    g_error_free(error);
    ctl_model_changed(ctl_engine_model(e), flow, CTL_CHANGE_STATE);
    g_free(from);
    done(EIO, user_data);
    return;
  }
  g_free(from);
  ctl_model_changed(ctl_engine_model(e), flow, CTL_CHANGE_STATE | CTL_CHANGE_SETTINGS);
  ctl_engine_reply(e, 0, done, user_data);
}

/* ---- the backend ---- */

/* kill is CDAP's forceful stop: the runtime stops the flow at once, without
 * the graceful shutting down a stop waits for; it has no state on the way. */
static const char *const verbs[] = { "pause", "resume", "start", "stop", "kill", NULL };

/* A flow's steps go sleeping -> starting -> running, and running ->
 * stopping -> stopped (or shutting-down -> sleeping when idle); a resumed
 * step that slept starts again. */
static const CtlUnderway underway[] = {
  { "pause",  "pausing" },
  { "resume", "resuming" },
  { "resume", "starting" },
  { "start",  "starting" },
  { "stop",   "stopping" },
  { "stop",   "shutting-down" },
  { NULL, NULL },
};

static void
show_mode(CtlEngine *e, CtlObject *obj, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_lifecycle_mode(obj));
}

/* `mode` is ordinary or realtime, writable like `state` (the command policy
 * decides). */
static const CtlAttr flow_attrs[] = {
  { .name = "state", .mode = S_IFREG | 0664, .show = ctl_attr_show_desired,
    .store = ctl_attr_store_command },
  CTL_ATTR_OBSERVED,
  CTL_ATTR_LEAF_STATUS,
  CTL_ATTR_LOG,
  { .name = "mode", .mode = S_IFREG | 0664, .show = show_mode, .store = store_mode_file,
    .wakes = CTL_CHANGE_SETTINGS },
  CTL_ATTR_METRICS,
};

static const CtlType flow_type = { .attrs = flow_attrs, .n_attrs = G_N_ELEMENTS(flow_attrs) };

static const CtlType *
type(CtlObject *obj)
{
  return &flow_type;
}

static void
status(CtlEngine *e, CtlObject *flow, GString *out)
{
  ctl_status_kv(out, "mode", ctl_lifecycle_mode(flow));
}

/* ctlfs's dialect; the runtime learns a flow's mode with every command. */
static char *
command_encode(CtlEngine *e, CtlObject *flow, CtlCommandMsg *msg)
{
  msg->mode = (char *) ctl_lifecycle_mode(flow);
  char *value = ctl_command_msg_encode(msg);
  msg->mode = NULL;
  return value;
}

const CtlBackend ctl_backend_lifecycle = {
  .name = "lifecycle",
  .backend = "lifecycle",
  .dialect = "ctlfs",
  .verbs = verbs,
  .underway = underway,
  .type = type,
  .desired = flow_desired,
  .status = status,
  .command_key = ctl_dialect_ctlfs_key,
  .command_encode = command_encode,
  .command_decode = ctl_dialect_ctlfs_decode,
  .peer_command = peer_command,
  .feedback = ctl_engine_feedback_ctlfs,
};
