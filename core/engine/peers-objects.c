/* Other admin hosts: the objects of tree backends (a Rama module, its
 * topologies, its options) on the tree topic, next to the runtimes and
 * resources of peers.c, with the same order, catch-up and offset rules.
 *
 * Key: the object's path with its first '/' made ':' ("modules:m1",
 * "modules:m1/topologies/t1", "modules:m1/options/NAME"). A runtime's name
 * cannot hold ':' (names are A-Z a-z 0-9 . _ -), so these keys never meet a
 * runtime's "RT" or "RT/RES"; the tree topic's partitioner hashes the part
 * before the first '/', so a module's records and its children's share a
 * partition and are read in the order they were made.
 *
 * Value: the object's whole shared state, so that the last record of a key
 * (what compaction keeps) says all there is to say about it:
 *   {"id":…, "path":"modules/m1/options/x", "declared":true,
 *    "settings":{"value":"20000"}, "ts":…, "by":…}
 * The settings are those its type lists in CtlType.shared (a module's
 * `scale`, an option's `value`): the last value applied, announced by the
 * host whose CLI call applied it. A host reading one never runs the CLI —
 * the cluster has the value already — it only shows it. */
#include "engine-private.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "backend.h"
#include "kv.h"
#include "name.h"
#include "timefmt.h"

/* Is OBJ one of a tree backend's objects, made by mkdir or by creating a
 * file (not a directory that comes with its parent, such as options/)? */
static gboolean
tree_object_shared(CtlEngine *e, CtlObject *obj)
{
  const CtlBackend *b = ctl_engine_backend(e, obj);
  return obj->parent && b && (b->kinds & (1u << obj->kind))
         && ctl_engine_type(e, obj->parent)->children != CTL_CHILDREN_NONE;
}

gboolean
ctl_engine_shared(CtlEngine *e, CtlObject *obj)
{
  return obj->kind == CTL_KIND_RUNTIME || obj->kind == CTL_KIND_RESOURCE
         || tree_object_shared(e, obj);
}

gboolean
ctl_peer_object_key(const char *key, gsize len)
{
  return key && memchr(key, ':', len) != NULL;
}

static char *
key_of_path(const char *path)
{
  char *key = g_strdup(path);
  char *slash = strchr(key, '/');
  if (slash)
    *slash = ':';
  return key;
}

char *
ctl_peer_object_key_of(CtlObject *obj)
{
  char *path = ctl_model_path(obj);
  char *key = key_of_path(path);
  g_free(path);
  return key;
}

char *
ctl_peer_object_value(CtlEngine *e, CtlObject *obj, const char *id, gboolean declared,
                      const char *by)
{
  char ts[CTL_TIME_LEN];
  char *path = ctl_model_path(obj);
  json_t *o = json_pack("{s:s, s:s, s:b, s:s, s:s}", "id", id, "path", path,
                        "declared", declared, "ts", ctl_time_format(ctl_now_ms(), ts),
                        "by", by ? by : "-");
  g_free(path);
  const char *const *shared = ctl_engine_type(e, obj)->shared;
  json_t *settings = json_object();
  for (guint i = 0; declared && shared && shared[i]; i++) {
    const char *v = ctl_model_setting(obj, shared[i]);
    if (v)
      json_object_set_new(settings, shared[i], json_string(v));
  }
  json_object_set_new(o, "settings", settings);
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  char *copy = g_strdup(text);
  free(text);
  return copy;
}

/* ---- reading a record ---- */

/* One step of a path: what a directory entry can be. The rules of the
 * backend that made it were checked there; this only keeps a record from
 * naming something a directory could not hold. */
static gboolean
component_valid(const char *c)
{
  gsize len = strlen(c);
  if (len == 0 || len > CTL_NAME_MAX || strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if ((guchar) c[i] <= ' ' || (guchar) c[i] >= 0x7f)
      return FALSE;
  return TRUE;
}

static gboolean
path_valid(const char *path)
{
  char **parts = g_strsplit(path, "/", -1);
  gboolean ok = g_strv_length(parts) >= 2 && !strchr(parts[0], ':');
  for (char **p = parts; ok && *p; p++)
    ok = component_valid(*p);
  g_strfreev(parts);
  return ok;
}

void
ctl_peer_record_free(CtlPeerRecord *r)
{
  if (!r)
    return;
  g_free(r->id);
  g_free(r->path);
  g_free(r->by);
  json_decref(r->settings);
  g_free(r);
}

CtlPeerRecord *
ctl_peer_record_parse(const char *key, gsize key_len, const char *value, gsize len,
                      const char **why)
{
  json_error_t jerr;
  json_t *o = value ? json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  const char *id = NULL, *path = NULL, *by = NULL;
  json_t *settings = NULL;
  int declared = 0;
  CtlPeerRecord *r = NULL;
  if (!o || json_unpack(o, "{s:s, s:s, s:b, s?:s, s?:o}", "id", &id, "path", &path,
                        "declared", &declared, "by", &by, "settings", &settings) != 0
      || (settings && !json_is_object(settings))) {
    *why = "not a tree record";
  } else if (!path_valid(path)) {
    *why = "invalid path";
  } else {
    char *expect = key_of_path(path);
    gboolean same = strlen(expect) == key_len && memcmp(expect, key, key_len) == 0;
    g_free(expect);
    if (!same) {
      *why = "the key does not match the record";
    } else {
      r = g_new0(CtlPeerRecord, 1);
      r->id = g_strdup(id);
      r->path = g_strdup(path);
      r->by = g_strdup(by);
      r->declared = declared;
      r->settings = settings ? json_incref(settings) : json_object();
    }
  }
  json_decref(o);
  return r;
}

/* ---- applying a record ---- */

/* NAME in PARENT, made the way the parent's children come to be there; NULL
 * (logged) when PARENT is not a tree backend's or cannot take it. */
static CtlObject *
make_child(CtlEngine *e, CtlObject *parent, const char *name, const char *by, gint64 offset)
{
  const CtlBackend *b = ctl_engine_backend(e, parent);
  CtlChildren how = ctl_engine_type(e, parent)->children;
  if (!b || !(b->kinds & (1u << parent->kind)) || how == CTL_CHILDREN_NONE) {
    ctl_engine_peer_skip(e, ctl_model_root(e->model), offset, "not a shared object");
    return NULL;
  }
  int err = 0;
  /* Files declared by create are options (the only such kind): a value
   * remembered, made as the backend's create makes them. */
  CtlObject *obj = how == CTL_CHILDREN_CREATE
                   ? ctl_model_create_option(e->model, parent, name, by, &err)
                   : ctl_model_create(e->model, parent, name, "created", by, &err);
  if (!obj)
    ctl_engine_peer_skip(e, parent, offset, g_strerror(err));
  return obj;
}

static void
remove_here(CtlEngine *e, CtlObject *obj, const char *by, gint64 offset)
{
  if (!tree_object_shared(e, obj)) {
    ctl_engine_peer_skip(e, ctl_model_root(e->model), offset, "not a shared object");
    return;
  }
  /* A command of this host's still running on it (EBUSY): it stays here,
   * as the command's end needs it; the log says why the hosts differ. */
  int err = ctl_model_remove(e->model, obj, by);
  if (err == EBUSY)
    ctl_engine_peer_skip(e, obj, offset, "a command on it is still running here");
  else if (err)
    ctl_engine_peer_skip(e, obj, offset, g_strerror(err));
}

/* Shows the values the record carries; the CLI is not run (see the top). */
static void
apply_settings(CtlEngine *e, CtlObject *obj, const CtlPeerRecord *r, const char *by)
{
  const char *const *shared = ctl_engine_type(e, obj)->shared;
  for (guint i = 0; shared && shared[i]; i++) {
    const char *v = json_string_value(json_object_get(r->settings, shared[i]));
    if (!v || g_strcmp0(v, ctl_model_setting(obj, shared[i])) == 0)
      continue;
    GString *d = g_string_new(NULL);
    ctl_kv_append(d, "setting", shared[i]);
    ctl_kv_append(d, "value", v);
    g_string_append_printf(d, " %s", by);
    GError *error = NULL;
    gboolean ok = ctl_model_begin(e->model, &error);
    ok = ok && ctl_model_set_setting(e->model, obj, shared[i], v, &error);
    ok = ok && ctl_model_log(e->model, obj, "peer-setting", d->str, &error);
    if (!ctl_model_end(e->model, ok, &error)) {
      g_warning("peers: %s", error->message);
      g_error_free(error);
    }
    g_string_free(d, TRUE);
    ctl_model_changed(e->model, obj, CTL_CHANGE_STATE | CTL_CHANGE_SETTINGS);
  }
}

void
ctl_peer_record_apply(CtlEngine *e, const CtlPeerRecord *r, const char *by, gint64 offset)
{
  char **parts = g_strsplit(r->path, "/", -1);
  CtlObject *obj = ctl_model_root(e->model);
  for (char **p = parts; obj && *p; p++) {
    CtlObject *child = ctl_model_child(obj, *p);
    if (!child && r->declared)
      child = make_child(e, obj, *p, by, offset);
    obj = child;
  }
  g_strfreev(parts);
  if (!obj)
    return;   /* a removal of what is not here, or a creation skipped */
  if (!r->declared)
    remove_here(e, obj, by, offset);
  else if (tree_object_shared(e, obj))
    apply_settings(e, obj, r, by);
}

/* ---- announcing ---- */

/* What a removal of OBJ takes with it (a module's options) goes first, each
 * with a record of its own: else the last record of an option's key would
 * still say "declared" once the module's says "removed", and a newcomer
 * would make the option, and its module, again. */
static gboolean
announce_gone_below(CtlEngine *e, CtlObject *obj, const char *by, GError **error)
{
  GPtrArray *kids = ctl_model_children_array(obj);
  gboolean ok = TRUE;
  for (guint i = 0; ok && kids && i < kids->len; i++) {
    CtlObject *kid = kids->pdata[i];
    ok = announce_gone_below(e, kid, by, error)
         && (!tree_object_shared(e, kid) || ctl_engine_announce(e, kid, FALSE, by, error));
  }
  return ok;
}

gboolean
ctl_engine_announce_removal(CtlEngine *e, CtlObject *obj, const char *by, GError **error)
{
  /* A runtime holds nothing at rmdir (ENOTEMPTY before). */
  if (tree_object_shared(e, obj) && !announce_gone_below(e, obj, by, error))
    return FALSE;
  return ctl_engine_announce(e, obj, FALSE, by, error);
}

gboolean
ctl_engine_announce_settings(CtlEngine *e, CtlObject *obj, const char *by, GError **error)
{
  return !tree_object_shared(e, obj) || ctl_engine_announce(e, obj, TRUE, by, error);
}
