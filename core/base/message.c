#include "message.h"
#include "verb.h"
#include "name.h"
#include "timefmt.h"

#include <jansson.h>
#include <string.h>

G_DEFINE_QUARK(ctl-message-error-quark, ctl_message_error)

static const char *const observed_states[] = {
  "running", "paused", "pausing", "resuming", "starting", "stopping", "stopped",
  "sleeping", "shutting-down", "unknown", NULL,
};

gboolean
ctl_verb_valid(const char *verb)
{
  return ctl_verb_target(verb) != NULL;   /* one table of verbs: command.c */
}

gboolean
ctl_observed_state_valid(const char *state)
{
  return state != NULL && g_strv_contains(observed_states, state);
}

char *
ctl_topic_commands(const char *prefix, const char *runtime)
{
  return g_strdup_printf("%s.%s.commands", prefix, runtime);
}

char *
ctl_topic_feedback(const char *prefix, const char *runtime)
{
  return g_strdup_printf("%s.%s.feedback", prefix, runtime);
}

/* ---- encoding ---------------------------------------------------------- */

/* json_string() refuses invalid UTF-8 and the key would silently vanish.
 * Free-form text (a process comm, a runtime's message) may be any bytes, so
 * it is repaired rather than dropped. */
static void
set_text(json_t *obj, const char *key, const char *text)
{
  if (text == NULL)
    return;
  char *valid = g_utf8_make_valid(text, -1);
  json_object_set_new(obj, key, json_string(valid));
  g_free(valid);
}

static void
set_time(json_t *obj, const char *key, gint64 ms)
{
  char buf[CTL_TIME_LEN];
  json_object_set_new(obj, key, json_string(ctl_time_format(ms, buf)));
}

/* json_dumps() allocates with malloc(); since GLib 2.46 g_free() is free(),
 * so callers may release the result with g_free() as the header promises. */
static char *
dump(json_t *obj)
{
  char *out = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  return out;
}

char *
ctl_command_msg_encode(const CtlCommandMsg *msg)
{
  json_t *obj = json_object();
  set_text(obj, "id", msg->id);
  set_text(obj, "runtime", msg->runtime);
  if (msg->resource)
    set_text(obj, "resource", msg->resource);
  else
    set_text(obj, "scope", "runtime");   /* a runtime-wide command names no resource */
  set_text(obj, "verb", msg->verb);
  set_time(obj, "issued_at", msg->issued_at_ms);
  if (msg->expires_at_ms != 0)
    set_time(obj, "expires_at", msg->expires_at_ms);

  json_t *by = json_object();
  if (msg->uid >= 0)
    json_object_set_new(by, "uid", json_integer(msg->uid));
  set_text(by, "user", msg->user);
  if (msg->pid >= 0)
    json_object_set_new(by, "pid", json_integer(msg->pid));
  set_text(by, "comm", msg->comm);
  set_text(by, "host", msg->host);
  json_object_set_new(obj, "issued_by", by);
  set_text(obj, "mode", msg->mode);
  return dump(obj);
}

char *
ctl_feedback_msg_encode(const CtlFeedbackMsg *msg)
{
  json_t *obj = json_object();
  set_text(obj, "resource", msg->resource);
  set_text(obj, "state", msg->state);
  set_text(obj, "command_id", msg->command_id);
  if (msg->ts_ms != 0)
    set_time(obj, "ts", msg->ts_ms);
  set_text(obj, "message", msg->message);
  if (msg->metrics_json != NULL) {
    /* Only a well-formed object is passed on; anything else is left out
     * rather than sent as something a decoder would reject. */
    json_t *metrics = json_loads(msg->metrics_json, 0, NULL);
    if (json_is_object(metrics))
      json_object_set_new(obj, "metrics", metrics);
    else
      json_decref(metrics);
  }
  return dump(obj);
}

/* ---- decoding ---------------------------------------------------------- */

/* Parses BUF into a JSON object. The size limit comes first so that a huge
 * message costs nothing; duplicate keys are refused because two readers could
 * otherwise disagree on which one counts. */
static json_t *
load_object(const void *buf, gsize len, GError **error)
{
  if (len > CTL_MSG_MAX_BYTES) {
    g_set_error(error, CTL_MESSAGE_ERROR, CTL_MESSAGE_ERROR_JSON,
                "message: %" G_GSIZE_FORMAT " bytes, over the limit of %d",
                len, CTL_MSG_MAX_BYTES);
    return NULL;
  }
  json_error_t jerr;
  json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    /* jansson quotes the offending token, which is attacker-chosen bytes:
     * escape it so the reason stays one printable line. */
    char *text = g_strescape(jerr.text, "\"");
    g_set_error(error, CTL_MESSAGE_ERROR, CTL_MESSAGE_ERROR_JSON,
                "message: invalid JSON at line %d column %d: %s",
                jerr.line, jerr.column, text);
    g_free(text);
    return NULL;
  }
  if (!json_is_object(root)) {
    g_set_error(error, CTL_MESSAGE_ERROR, CTL_MESSAGE_ERROR_JSON,
                "message: not a JSON object");
    json_decref(root);
    return NULL;
  }
  return root;
}

static gboolean
field_error(GError **error, CtlMessageError code, const char *key, const char *why)
{
  g_set_error(error, CTL_MESSAGE_ERROR, code, "field \"%s\": %s", key, why);
  return FALSE;
}

/* Fetches string KEY into *OUT (g_strdup). Absent or null is an error only
 * when REQUIRED; present with another type always is. */
static gboolean
get_string(json_t *obj, const char *key, gboolean required, char **out, GError **error)
{
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v)) {
    if (required)
      return field_error(error, CTL_MESSAGE_ERROR_FIELD, key, "missing");
    return TRUE;
  }
  if (!json_is_string(v))
    return field_error(error, CTL_MESSAGE_ERROR_FIELD, key, "expected a string");
  *out = g_strdup(json_string_value(v));
  return TRUE;
}

static gboolean
get_name(json_t *obj, const char *key, char **out, GError **error)
{
  if (!get_string(obj, key, TRUE, out, error))
    return FALSE;
  if (!ctl_name_valid(*out))
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, key,
                       "not a valid name (1-128 bytes of [A-Za-z0-9._-], not . or ..)");
  return TRUE;
}

static gboolean
get_uuid(json_t *obj, const char *key, gboolean required, char **out, GError **error)
{
  if (!get_string(obj, key, required, out, error))
    return FALSE;
  if (*out != NULL && !g_uuid_string_is_valid(*out))
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, key, "not a UUID");
  return TRUE;
}

/* An RFC 3339 time; *OUT stays 0 when optional and absent. */
static gboolean
get_time(json_t *obj, const char *key, gboolean required, gint64 *out, GError **error)
{
  g_autofree char *text = NULL;
  if (!get_string(obj, key, required, &text, error))
    return FALSE;
  if (text != NULL && !ctl_time_parse(text, out))
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, key, "not an RFC 3339 time");
  return TRUE;
}

/* A non-negative integer (uid, pid); *OUT stays -1 when absent. */
static gboolean
get_id_number(json_t *obj, const char *key, gint64 *out, GError **error)
{
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v))
    return TRUE;
  if (!json_is_integer(v))
    return field_error(error, CTL_MESSAGE_ERROR_FIELD, key, "expected an integer");
  if (json_integer_value(v) < 0)
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, key, "negative");
  *out = json_integer_value(v);
  return TRUE;
}

static gboolean
get_issued_by(json_t *obj, CtlCommandMsg *out, GError **error)
{
  json_t *by = json_object_get(obj, "issued_by");
  if (by == NULL || json_is_null(by))
    return TRUE;
  if (!json_is_object(by))
    return field_error(error, CTL_MESSAGE_ERROR_FIELD, "issued_by", "expected an object");
  return get_id_number(by, "uid", &out->uid, error)
      && get_string(by, "user", FALSE, &out->user, error)
      && get_id_number(by, "pid", &out->pid, error)
      && get_string(by, "comm", FALSE, &out->comm, error)
      && get_string(by, "host", FALSE, &out->host, error);
}

/* A lifecycle flow's mode: absent, or one of the two elastic.io knows. */
static gboolean
get_mode(json_t *obj, CtlCommandMsg *out, GError **error)
{
  if (!get_string(obj, "mode", FALSE, &out->mode, error))
    return FALSE;
  if (out->mode != NULL && strcmp(out->mode, "ordinary") != 0
      && strcmp(out->mode, "realtime") != 0)
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, "mode", "not one of ordinary, realtime");
  return TRUE;
}

/* "scope": absent or "resource" (a command to one resource, named), or
 * "runtime" (the runtime's own state: no resource; pause or resume). */
static gboolean
get_target(json_t *obj, CtlCommandMsg *out, GError **error)
{
  char *scope = NULL;
  if (!get_string(obj, "scope", FALSE, &scope, error))
    return FALSE;
  gboolean runtime_wide = g_strcmp0(scope, "runtime") == 0;
  gboolean known = scope == NULL || runtime_wide || strcmp(scope, "resource") == 0;
  g_free(scope);
  if (!known)
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, "scope", "not one of resource, runtime");
  if (!runtime_wide)
    return get_name(obj, "resource", &out->resource, error);
  if (json_object_get(obj, "resource") != NULL)
    return field_error(error, CTL_MESSAGE_ERROR_FIELD, "resource",
                       "not allowed in a runtime-wide command");
  return TRUE;
}

static gboolean
decode_command(json_t *obj, CtlCommandMsg *out, GError **error)
{
  if (!get_uuid(obj, "id", TRUE, &out->id, error)
      || !get_name(obj, "runtime", &out->runtime, error)
      || !get_target(obj, out, error)
      || !get_string(obj, "verb", TRUE, &out->verb, error))
    return FALSE;
  if (!ctl_verb_valid(out->verb) && g_strcmp0(out->verb, "inherit") != 0)
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, "verb",
                       "not one of pause, resume, start, stop, inherit");
  if (out->resource == NULL && g_strcmp0(out->verb, "pause") != 0
      && g_strcmp0(out->verb, "resume") != 0)
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, "verb",
                       "a runtime-wide command is pause or resume");
  return get_time(obj, "issued_at", TRUE, &out->issued_at_ms, error)
      && get_time(obj, "expires_at", FALSE, &out->expires_at_ms, error)
      && get_issued_by(obj, out, error)
      && get_mode(obj, out, error);
}

gboolean
ctl_command_msg_decode(const void *buf, gsize len, CtlCommandMsg *out, GError **error)
{
  memset(out, 0, sizeof *out);
  out->uid = -1;
  out->pid = -1;
  json_t *obj = load_object(buf, len, error);
  if (obj == NULL)
    return FALSE;
  gboolean ok = decode_command(obj, out, error);
  json_decref(obj);
  if (!ok)
    ctl_command_msg_clear(out);
  return ok;
}

static gboolean
get_metrics(json_t *obj, CtlFeedbackMsg *out, GError **error)
{
  json_t *v = json_object_get(obj, "metrics");
  if (v == NULL || json_is_null(v))
    return TRUE;
  if (!json_is_object(v))
    return field_error(error, CTL_MESSAGE_ERROR_FIELD, "metrics", "expected an object");
  out->metrics_json = json_dumps(v, JSON_COMPACT);
  return TRUE;
}

static gboolean
decode_feedback(json_t *obj, CtlFeedbackMsg *out, GError **error)
{
  if (!get_name(obj, "resource", &out->resource, error)
      || !get_string(obj, "state", TRUE, &out->state, error))
    return FALSE;
  if (!ctl_observed_state_valid(out->state))
    return field_error(error, CTL_MESSAGE_ERROR_VALUE, "state", "not a state a runtime may report");
  return get_uuid(obj, "command_id", FALSE, &out->command_id, error)
      && get_time(obj, "ts", FALSE, &out->ts_ms, error)
      && get_string(obj, "message", FALSE, &out->message, error)
      && get_metrics(obj, out, error);
}

gboolean
ctl_feedback_msg_decode(const void *buf, gsize len, CtlFeedbackMsg *out, GError **error)
{
  memset(out, 0, sizeof *out);
  json_t *obj = load_object(buf, len, error);
  if (obj == NULL)
    return FALSE;
  gboolean ok = decode_feedback(obj, out, error);
  json_decref(obj);
  if (!ok)
    ctl_feedback_msg_clear(out);
  return ok;
}

void
ctl_command_msg_clear(CtlCommandMsg *msg)
{
  g_free(msg->id);
  g_free(msg->runtime);
  g_free(msg->resource);
  g_free(msg->verb);
  g_free(msg->user);
  g_free(msg->comm);
  g_free(msg->host);
  g_free(msg->mode);
  memset(msg, 0, sizeof *msg);
  msg->uid = -1;
  msg->pid = -1;
}

void
ctl_feedback_msg_clear(CtlFeedbackMsg *msg)
{
  g_free(msg->resource);
  g_free(msg->state);
  g_free(msg->command_id);
  g_free(msg->message);
  g_free(msg->metrics_json);
  memset(msg, 0, sizeof *msg);
}

/* ---- UUID v7 ----------------------------------------------------------- */

/* RFC 9562 UUIDv7 with the optional 12-bit counter in rand_a ("method 1"):
 * ids made in the same millisecond by this process still sort in creation
 * order, which keeps command ids in issue order. */
G_LOCK_DEFINE_STATIC(uuid7);
static gint64 uuid7_last_ms;
static guint uuid7_counter;

static void
uuid7_next(gint64 *ms, guint *counter)
{
  G_LOCK(uuid7);
  gint64 now = ctl_now_ms();
  if (now > uuid7_last_ms) {
    uuid7_last_ms = now;
    /* Random start, top bit clear, leaving room to count up within the ms. */
    uuid7_counter = (guint) g_random_int_range(0, 0x800);
  } else if (++uuid7_counter > 0xfff) {
    /* Counter exhausted (or the clock went back): borrow the next ms. */
    uuid7_last_ms++;
    uuid7_counter = 0;
  }
  *ms = uuid7_last_ms;
  *counter = uuid7_counter;
  G_UNLOCK(uuid7);
}

void
ctl_uuid7(char buf[37])
{
  gint64 ms;
  guint counter;
  uuid7_next(&ms, &counter);

  guint8 b[16];
  for (int i = 0; i < 6; i++)
    b[i] = (guint8) ((guint64) ms >> (40 - 8 * i));
  b[6] = (guint8) (0x70 | (counter >> 8));          /* version 7 */
  b[7] = (guint8) (counter & 0xff);
  for (int i = 8; i < 16; i++)
    b[i] = (guint8) g_random_int_range(0, 256);
  b[8] = (guint8) (0x80 | (b[8] & 0x3f));           /* variant 10 */

  g_snprintf(buf, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
