/* Refusals: every request ctlfs turns down — a caller the policy does not
 * allow (EACCES) or input it cannot take (EINVAL, EOPNOTSUPP) — is recorded
 * with who tried, in SQLite (table refusals) and in the object's log, and
 * counted in metrics. Nothing of a refused request is published. */
#include "engine-private.h"

#include <errno.h>
#include <string.h>

#include "timefmt.h"

static const char *
errno_name(int err)
{
  switch (err) {
  case EACCES:     return "EACCES";
  case EINVAL:     return "EINVAL";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EBUSY:      return "EBUSY";
  case EPERM:      return "EPERM";
  case EEXIST:     return "EEXIST";
  case ENOTEMPTY:  return "ENOTEMPTY";
  case EISDIR:     return "EISDIR";
  case ENOTDIR:    return "ENOTDIR";
  case EXDEV:      return "EXDEV";
  case EDQUOT:     return "EDQUOT";
  case EFBIG:      return "EFBIG";
  case ETIMEDOUT:  return "ETIMEDOUT";
  default:         return "EIO";
  }
}

static void
record(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *request,
       const char *reason, const CtlCaller *who, const char *details)
{
  char *path = ctl_model_path(obj);
  CtlRefusalRow row = {
    .ts = ctl_now_ms(), .action = ctl_access_name(access), .path = path, .input = request,
    .err = errno_name(err), .reason = reason, .uid = who->uid, .user = who->user,
    .pid = who->pid, .comm = who->comm, .host = who->host,
  };
  const char *event = err == EACCES ? "refused" : "rejected";
  GError *error = NULL;
  gboolean ok = ctl_model_begin(e->model, &error);
  ok = ok && ctl_store_refusal_insert(e->store, &row, &error);
  ok = ok && ctl_model_log(e->model, obj, event, details, &error);
  ok = ok && ctl_model_save(e->model, obj, &error);
  if (!ctl_model_end(e->model, ok, &error)) {
    /* The store failed (disk full?): the journal still gets who tried. */
    g_warning("%s: cannot record %s %s: %s (%s)", path, event, details, error->message, reason);
    g_error_free(error);
  }
  g_free(path);
}

/* KEY names what INPUT is: "input" (what was written) or "request" (what
 * was asked: "open state", "mkdir rt2"). */
static void
refuse(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *key,
       const char *input, gsize len, const char *reason, const CtlCaller *who);

void
ctl_engine_refuse(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *input,
                  gsize len, const char *reason, const CtlCaller *who)
{
  refuse(e, obj, access, err, access == CTL_ACCESS_COMMAND ? "input" : "request", input, len,
         reason, who);
}

static void
refuse(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *key,
       const char *input, gsize len, const char *reason, const CtlCaller *who)
{
  /* The newline echo adds is not part of what was asked. */
  if (len > 0 && input[len - 1] == '\n')
    len--;
  char *text = g_strndup(input, len);
  /* Invalid UTF-8 or control bytes must not break the one-line log format. */
  char *valid = g_utf8_make_valid(text, -1);
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "action", ctl_access_name(access));
  ctl_kv_append(d, key, valid);
  ctl_kv_append(d, "reason", reason);
  char *by = ctl_caller_describe(who);
  g_string_append_printf(d, " %s", by);
  if (access == CTL_ACCESS_COMMAND)
    ctl_set_str(&obj->last_error, reason);
  if (err == EACCES)
    e->refused[access]++;
  else
    e->rejected_writes++;
  record(e, obj, access, err, valid, reason, who, d->str);
  if (access == CTL_ACCESS_COMMAND)
    ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
  g_free(by);
  g_string_free(d, TRUE);
  g_free(valid);
  g_free(text);
}

void
ctl_engine_refuse_request(CtlEngine *e, CtlObject *obj, CtlAccess access, int err,
                          const char *request, const char *reason, CtlCaller *who)
{
  ctl_caller_resolve(who);
  char *valid = g_utf8_make_valid(request, -1);
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "action", ctl_access_name(access));
  ctl_kv_append(d, "request", valid);
  ctl_kv_append(d, "reason", reason);
  g_string_append_printf(d, " error=%s", errno_name(err));
  char *by = ctl_caller_describe(who);
  g_string_append_printf(d, " %s", by);
  if (access == CTL_ACCESS_COMMAND)
    ctl_set_str(&obj->last_error, reason);
  record(e, obj, access, err, valid, reason, who, d->str);
  if (access == CTL_ACCESS_COMMAND)
    ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
  g_free(by);
  g_string_free(d, TRUE);
  g_free(valid);
}

gboolean
ctl_engine_allows(CtlEngine *e, CtlAccess access, CtlObject *obj, const CtlCaller *who)
{
  CtlObject *rt = ctl_model_runtime_of(obj);
  return ctl_policy_allows(e->cfg.policy, access, rt ? rt->name : NULL, who);
}

int
ctl_engine_authorize(CtlEngine *e, CtlAccess access, CtlObject *obj, const char *verb,
                     const char *name, CtlCaller *who)
{
  if (ctl_engine_allows(e, access, obj, who))
    return 0;
  /* Only now: the request text and the caller's audit fields cost nothing on
   * the (common) allowed path. */
  CtlObject *rt = ctl_model_runtime_of(obj);
  char *request = name ? g_strdup_printf("%s %s", verb, name) : g_strdup(verb);
  ctl_caller_resolve(who);
  char *reason = g_strdup_printf("the access policy does not allow this caller to %s%s%s",
                                 ctl_access_name(access), rt ? " in runtime " : "",
                                 rt ? rt->name : "");
  refuse(e, obj, access, EACCES, "request", request, strlen(request), reason, who);
  g_free(reason);
  g_free(request);
  return EACCES;
}
