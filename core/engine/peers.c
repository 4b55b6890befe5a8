/* Other admin hosts. Several daemons (each with its own database and mount)
 * on the same brokers are one control plane:
 *
 *  - each runtime's command topic is read by every daemon, not only by the
 *    runtime: a command written on one host shows in `state`, `status` and
 *    `log` on all of them, and `desired` follows the topic's order (command.c,
 *    ctl_engine_desire), so conflicting writes end the same way everywhere;
 *  - declarations and removals (mkdir, rmdir) go to one shared topic,
 *    PREFIX.tree, keyed by "RT" or "RT/RES": a host that was down catches up
 *    from its stored offset, and a new host reads it from the beginning. With
 *    cleanup.policy=compact the topic keeps the last record of every object
 *    for ever, so a newcomer sees the whole tree however old. Tree backends'
 *    objects (Rama modules, topologies, options) go there too, keyed and
 *    applied by peers-objects.c.
 *
 * Records this host produced come back like everyone else's; each key
 * remembers the newest offset applied to it, so that a record older than
 * what an object already shows is skipped — the topic's order decides. */
#include "engine-private.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "verb.h"
#include "message.h"
#include "name.h"
#include "timefmt.h"

#define TREE_SUFFIX "tree"

/* The engine's knowledge of the other admin hosts. */
struct CtlPeers {
  GHashTable *by_command_topic;  /* command topic -> runtime CtlObject* */
  GHashTable *announcing;    /* live announcements, owned */
  GHashTable *announce_ids;  /* their record ids -> announcement */
  GHashTable *tree_unplaced; /* tree key -> how many of ours are not placed yet */
  GHashTable *tree_offsets;  /* tree key -> gint64*: the newest record applied */
  char       *tree_topic;    /* PREFIX.tree */
};

/* An announcement the broker refused is offered again after this long. */
#define RETRY_MS 1000

/* e->peers->announcing owns every live one, whether with the producer or waiting
 * to be offered again. */
typedef struct {
  CtlEngine *engine;
  gint64     seq;          /* its row in the announcements table */
  char      *id;           /* the record's "id": how we know it when it comes back */
  char      *key;
  char      *value;
  guint      retry;
  gboolean   in_producer;
  gboolean   placed;       /* its offset on the topic is known */
} Announcement;

static void place_announcement(Announcement *a);

static void
announcement_free(gpointer p)
{
  Announcement *a = p;
  place_announcement(a);
  if (a->engine->peers->announce_ids && g_hash_table_lookup(a->engine->peers->announce_ids, a->id) == a)
    g_hash_table_remove(a->engine->peers->announce_ids, a->id);
  if (a->retry)
    g_source_remove(a->retry);
  g_free(a->id);
  g_free(a->key);
  g_free(a->value);
  g_free(a);
}

/* ---- watching ---- */

void
ctl_engine_watch_runtime(CtlEngine *e, CtlObject *rt)
{
  g_hash_table_insert(e->by_topic, g_strdup(rt->feedback_topic), rt);
  g_hash_table_insert(e->peers->by_command_topic, g_strdup(rt->command_topic), rt);
  /* Asked before the first watch, so that on a broker without
   * auto-creation the topics are there to be read. */
  ctl_engine_topics_ensure(e, rt->command_topic, CTL_TOPIC_COMMAND);
  ctl_engine_topics_ensure(e, rt->feedback_topic, CTL_TOPIC_FEEDBACK);
  ctl_bus_watch(e->bus, rt->feedback_topic);
  ctl_bus_watch(e->bus, rt->command_topic);
  ctl_bus_prepare_topic(e->bus, rt->command_topic);
  ctl_janitor_watch(e->janitor, rt);
  ctl_engine_runtime_watched(e, rt);
}

void
ctl_engine_unwatch_runtime(CtlEngine *e, CtlObject *rt)
{
  if (g_hash_table_lookup(e->by_topic, rt->feedback_topic) == rt) {
    g_hash_table_remove(e->by_topic, rt->feedback_topic);
    if (e->bus)
      ctl_bus_unwatch(e->bus, rt->feedback_topic);
  }
  if (g_hash_table_lookup(e->peers->by_command_topic, rt->command_topic) == rt) {
    g_hash_table_remove(e->peers->by_command_topic, rt->command_topic);
    if (e->bus)
      ctl_bus_unwatch(e->bus, rt->command_topic);
  }
}

void
ctl_engine_peer_skip(CtlEngine *e, CtlObject *obj, gint64 offset, const char *why)
{
  e->unused[obj == ctl_model_root(e->model) ? CTL_UNUSED_TREE : CTL_UNUSED_COMMAND]++;
  GString *d = g_string_new(NULL);
  ctl_engine_append_position(e, d, offset);
  ctl_kv_append(d, "reason", why);
  GError *error = NULL;
  if (!ctl_model_log(e->model, obj, "peer-skipped", d->str, &error)) {
    g_warning("peers: %s", error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
}

/* ---- the tree topic: records ---- */

static char *
tree_key(const char *runtime, const char *resource)
{
  return resource ? g_strdup_printf("%s/%s", runtime, resource) : g_strdup(runtime);
}

static char *
tree_value(const char *id, const char *runtime, const char *resource, gboolean declared,
           const char *by)
{
  char ts[CTL_TIME_LEN];
  json_t *o = json_pack("{s:s, s:s, s:b, s:s, s:s}", "id", id, "runtime", runtime,
                        "declared", declared, "ts", ctl_time_format(ctl_now_ms(), ts),
                        "by", by ? by : "-");
  if (resource)
    json_object_set_new(o, "resource", json_string(resource));
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  char *copy = g_strdup(text);
  free(text);
  return copy;
}

typedef struct {
  char    *id, *runtime, *resource, *by;
  gboolean declared;
} TreeRecord;

static void
tree_record_clear(TreeRecord *r)
{
  g_free(r->id);
  g_free(r->runtime);
  g_free(r->resource);
  g_free(r->by);
}

/* The value must name what the key names, with valid names: a record that
 * does not is skipped, never half applied. */
static gboolean
tree_record_parse(const char *key, gsize key_len, const char *value, gsize len, TreeRecord *out,
                  const char **why)
{
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *o = value ? json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  const char *id = NULL, *rt = NULL, *res = NULL, *by = NULL;
  int declared = 0;
  if (!o || json_unpack(o, "{s:s, s:s, s:b, s?:s, s?:s}", "id", &id, "runtime", &rt,
                        "declared", &declared, "resource", &res, "by", &by) != 0) {
    *why = "not a tree record";
  } else if (!ctl_name_valid(rt) || (res && !ctl_name_valid(res))) {
    *why = "invalid name";
  } else {
    char *expect = tree_key(rt, res);
    gboolean same = key && strlen(expect) == key_len && memcmp(expect, key, key_len) == 0;
    g_free(expect);
    if (!same) {
      *why = "the key does not match the record";
    } else {
      out->id = g_strdup(id);
      out->runtime = g_strdup(rt);
      out->resource = g_strdup(res);
      out->by = g_strdup(by);
      out->declared = declared;
    }
  }
  json_decref(o);
  return out->runtime != NULL;
}

/* ---- applying records ---- */

static CtlObject *
ensure_runtime(CtlEngine *e, const char *name, const char *by)
{
  CtlObject *rts = ctl_model_runtimes(e->model);
  CtlObject *rt = ctl_model_child(rts, name);
  if (rt)
    return rt;
  int err = 0;
  rt = ctl_model_create(e->model, rts, name, "created", by, &err);
  if (rt)
    ctl_engine_watch_runtime(e, rt);
  else
    g_warning("peers: cannot create runtime %s: %s", name, g_strerror(err));
  return rt;
}

static void
remove_object(CtlEngine *e, CtlObject *obj, const char *by)
{
  if (obj->kind == CTL_KIND_RUNTIME) {
    /* Its resources first: the declaring host had none left, this one may
     * still show some that feedback or commands made. */
    GPtrArray *children = ctl_model_children_array(obj);
    GPtrArray *copy = g_ptr_array_new();
    for (guint i = 0; children && i < children->len; i++)
      g_ptr_array_add(copy, children->pdata[i]);
    for (guint i = 0; i < copy->len; i++)
      remove_object(e, copy->pdata[i], by);
    g_ptr_array_free(copy, TRUE);
    ctl_engine_unwatch_runtime(e, obj);
  }
  char *name = g_strdup(obj->name);
  int err = ctl_model_remove(e->model, obj, by);
  if (err)
    g_warning("peers: cannot remove %s: %s", name, g_strerror(err));
  g_free(name);
}

/* Makes the tree show RECORD: the object exists (declared) or not. */
static void
apply_record(CtlEngine *e, const TreeRecord *r, const char *by)
{
  CtlObject *rts = ctl_model_runtimes(e->model);
  CtlObject *rt = ctl_model_child(rts, r->runtime);
  if (r->declared) {
    rt = ensure_runtime(e, r->runtime, by);
    if (rt && r->resource && !ctl_model_child(rt, r->resource)) {
      int err = 0;
      if (!ctl_model_create(e->model, rt, r->resource, "created", by, &err))
        g_warning("peers: cannot create %s/%s: %s", r->runtime, r->resource, g_strerror(err));
    }
    return;
  }
  CtlObject *obj = rt && r->resource ? ctl_model_child(rt, r->resource) : rt;
  if (obj)
    remove_object(e, obj, by);
}

static void
remember_key(CtlEngine *e, const char *key, gint64 offset)
{
  gint64 *last = g_hash_table_lookup(e->peers->tree_offsets, key);
  if (!last) {
    last = g_new(gint64, 1);
    g_hash_table_insert(e->peers->tree_offsets, g_strdup(key), last);
  }
  *last = offset;
}

/* Is OFFSET newer than what KEY shows? Then it is what KEY shows now, here
 * and in the store (inside the caller's transaction), so that a record read
 * again after a restart is not applied over a newer one. */
static gboolean
tree_newer(CtlEngine *e, const char *key, gint64 offset)
{
  gint64 *last = g_hash_table_lookup(e->peers->tree_offsets, key);
  if (last && offset <= *last)
    return FALSE;
  remember_key(e, key, offset);
  GError *error = NULL;
  if (!ctl_store_tree_key_set(e->store, key, offset, &error)) {
    g_warning("peers: %s", error->message);
    g_error_free(error);
  }
  return TRUE;
}

static void
load_key(const char *key, gint64 offset, gpointer data)
{
  remember_key(data, key, offset);
}

/* A tree record, of a runtime or resource (TreeRecord) or of a tree
 * backend's object (CtlPeerRecord, peers-objects.c). */
typedef struct {
  TreeRecord     rt;
  CtlPeerRecord *object;
} AnyRecord;

static gboolean
any_record_parse(const char *key, gsize key_len, const char *value, gsize len, AnyRecord *out,
                 const char **why)
{
  memset(out, 0, sizeof *out);
  if (!ctl_peer_object_key(key, key_len))
    return tree_record_parse(key, key_len, value, len, &out->rt, why);
  out->object = ctl_peer_record_parse(key, key_len, value, len, why);
  return out->object != NULL;
}

static const char *
any_record_id(const AnyRecord *r)
{
  return r->object ? r->object->id : r->rt.id;
}

static void
any_record_clear(AnyRecord *r)
{
  tree_record_clear(&r->rt);
  ctl_peer_record_free(r->object);
}

static void
tree_message(CtlEngine *e, gint64 offset, const char *key, gsize key_len, const char *value,
             gsize len)
{
  AnyRecord r;
  const char *why = NULL;
  if (!any_record_parse(key, key_len, value, len, &r, &why)) {
    ctl_engine_peer_skip(e, ctl_model_root(e->model), offset, why);
    return;
  }
  /* the parsers checked that the key is what the record names */
  char *k = g_strndup(key, key_len);
  Announcement *ours = g_hash_table_lookup(e->peers->announce_ids, any_record_id(&r));
  if (ours) {
    /* Ours, read back: the tree shows it already; now its place is known. */
    place_announcement(ours);
    tree_newer(e, k, offset);
  } else if (GPOINTER_TO_UINT(g_hash_table_lookup(e->peers->tree_unplaced, k)) > 0) {
    /* One of ours for this key is not placed yet, so it comes later in the
     * topic than this record, which must not show over it even briefly. */
  } else if (tree_newer(e, k, offset)) {
    const char *rby = r.object ? r.object->by : r.rt.by;
    char *by = g_strdup_printf("%s tree_offset=%" G_GINT64_FORMAT, rby ? rby : "-", offset);
    if (r.object)
      ctl_peer_record_apply(e, r.object, by, offset);
    else
      apply_record(e, &r.rt, by);
    g_free(by);
  }
  g_free(k);
  any_record_clear(&r);
}

static void
place_announcement(Announcement *a)
{
  CtlEngine *e = a->engine;
  if (a->placed || !e->peers->tree_unplaced)
    return;
  a->placed = TRUE;
  guint n = GPOINTER_TO_UINT(g_hash_table_lookup(e->peers->tree_unplaced, a->key));
  if (n > 1)
    g_hash_table_insert(e->peers->tree_unplaced, g_strdup(a->key), GUINT_TO_POINTER(n - 1));
  else
    g_hash_table_remove(e->peers->tree_unplaced, a->key);
}

/* A live announcement: known by its id, counted against its key until placed. */
static Announcement *
announcement_new(CtlEngine *e, gint64 seq, const char *id, const char *key, const char *value)
{
  Announcement *a = g_new0(Announcement, 1);
  a->engine = e;
  a->seq = seq;
  a->id = g_strdup(id);
  a->key = g_strdup(key);
  a->value = g_strdup(value);
  g_hash_table_insert(e->peers->announce_ids, a->id, a);
  guint n = GPOINTER_TO_UINT(g_hash_table_lookup(e->peers->tree_unplaced, key));
  g_hash_table_insert(e->peers->tree_unplaced, g_strdup(key), GUINT_TO_POINTER(n + 1));
  return a;
}

/* ---- announcing ---- */

static void produce(Announcement *a);

static gboolean
on_retry(gpointer data)
{
  Announcement *a = data;
  a->retry = 0;
  g_hash_table_steal(a->engine->peers->announcing, a);
  produce(a);
  return G_SOURCE_REMOVE;
}

static void
produce(Announcement *a)
{
  CtlEngine *e = a->engine;
  GError *error = NULL;
  g_hash_table_add(e->peers->announcing, a);
  if (e->stopping || !e->bus)
    return;       /* stays in the table: sent at the next start */
  if (ctl_bus_produce(e->bus, e->peers->tree_topic, a->key, a->value, NULL, a, &error)) {
    a->in_producer = TRUE;
    return;
  }
  g_warning("peers: cannot announce %s yet: %s", a->key, error->message);
  g_error_free(error);
  a->retry = g_timeout_add(RETRY_MS, on_retry, a);
}

static void
announce_committed(gpointer data, gboolean ok, const char *reason)
{
  Announcement *a = data;
  if (ok)
    produce(a);
  else
    announcement_free(a);   /* the change it announced was lost with it */
}

gboolean
ctl_engine_announce(CtlEngine *e, CtlObject *obj, gboolean declared, const char *by,
                    GError **error)
{
  char id[37];
  ctl_uuid7(id);
  char *key, *value;
  if (obj->kind == CTL_KIND_RUNTIME || obj->kind == CTL_KIND_RESOURCE) {
    const char *rt = obj->kind == CTL_KIND_RUNTIME ? obj->name : obj->parent->name;
    const char *res = obj->kind == CTL_KIND_RESOURCE ? obj->name : NULL;
    key = tree_key(rt, res);
    value = tree_value(id, rt, res, declared, by);
  } else {
    key = ctl_peer_object_key_of(obj);
    value = ctl_peer_object_value(e, obj, id, declared, by);
  }
  gint64 seq = -1;
  gboolean ok = ctl_model_begin(e->model, error);
  ok = ok && (seq = ctl_store_announcement_insert(e->store, key, value, error)) >= 0;
  ok = ctl_model_end(e->model, ok, error);
  if (ok)
    ctl_store_after_commit(e->store, announce_committed, announcement_new(e, seq, id, key, value));
  g_free(key);
  g_free(value);
  return ok;
}

gboolean
ctl_engine_peer_delivered(CtlEngine *e, gpointer opaque, gboolean ok, gint64 offset)
{
  Announcement *a = opaque;
  if (!e->peers || !g_hash_table_contains(e->peers->announcing, a) || !a->in_producer)
    return FALSE;
  a->in_producer = FALSE;
  if (!ok) {
    if (!e->stopping)
      a->retry = g_timeout_add(RETRY_MS, on_retry, a);
    return TRUE;
  }
  GError *error = NULL;
  place_announcement(a);
  /* The tree shows it already (applied when made here, and records of other
   * hosts read meanwhile were older: skipped). Only its offset is news. */
  gboolean done = ctl_model_begin(e->model, &error);
  if (done)
    tree_newer(e, a->key, offset);
  done = done && ctl_store_announcement_delete(e->store, a->seq, &error);
  if (!ctl_model_end(e->model, done, &error)) {
    g_warning("peers: %s", error->message);   /* sent again at the next start: harmless */
    g_error_free(error);
  }
  g_hash_table_remove(e->peers->announcing, a);   /* frees it */
  return TRUE;
}

/* ---- the consumer ---- */

gboolean
ctl_engine_peer_message(CtlEngine *e, const char *topic, int partition, gint64 offset, const char *key,
                        gsize key_len, const char *value, gsize value_len,
                        const char *command_id)
{
  if (strcmp(topic, e->peers->tree_topic) == 0) {
    tree_message(e, offset, key, key_len, value, value_len);
    ctl_engine_consumed(e, topic, partition, offset + 1);
    return TRUE;
  }
  CtlObject *rt = g_hash_table_lookup(e->peers->by_command_topic, topic);
  if (!rt)
    return FALSE;
  ctl_engine_command_seen(e, rt, offset, value, value_len, command_id);
  /* the runtime may be gone now (a command cannot remove it, but be safe) */
  if (g_hash_table_lookup(e->peers->by_command_topic, topic) == rt)
    ctl_engine_consumed(e, topic, partition, offset + 1);
  return TRUE;
}

CtlObject *
ctl_engine_peer_object(CtlEngine *e, CtlObject *rt, const char *name, gint64 offset)
{
  guint have = rt->children ? g_hash_table_size(rt->children) : 0;
  if (have >= (guint) e->cfg.discover_max) {
    ctl_engine_peer_skip(e, rt, offset, "the runtime has discover-max resources");
    return NULL;
  }
  GString *where = g_string_new("by=command");
  ctl_engine_append_position(e, where, offset);
  char *by = g_string_free(where, FALSE);
  int err = 0;
  CtlObject *res = ctl_model_create(e->model, rt, name, "discovered", by, &err);
  g_free(by);
  if (!res)
    ctl_engine_peer_skip(e, rt, offset, g_strerror(err));
  return res;
}

/* ---- start and stop ---- */

static void
resend(gint64 seq, const char *key, const char *value, gpointer data)
{
  CtlEngine *e = data;
  AnyRecord r;
  const char *why;
  if (!any_record_parse(key, strlen(key), value, strlen(value), &r, &why)) {
    g_warning("peers: dropping a stored announcement of %s: %s", key, why);
    return;
  }
  produce(announcement_new(e, seq, any_record_id(&r), key, value));
  any_record_clear(&r);
}

void
ctl_engine_peers_start(CtlEngine *e)
{
  e->peers = g_new0(CtlPeers, 1);
  e->peers->by_command_topic = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  e->peers->announcing = g_hash_table_new_full(NULL, NULL, announcement_free, NULL);
  e->peers->announce_ids = g_hash_table_new(g_str_hash, g_str_equal);
  e->peers->tree_unplaced = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  e->peers->tree_offsets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  e->peers->tree_topic = g_strdup_printf("%s.%s", e->cfg.topic_prefix, TREE_SUFFIX);
  /* A runtime's records and its resources' in one partition, in order: a
   * removal of rt1/svc then of rt1 is read in that order everywhere. */
  ctl_engine_topics_ensure(e, e->peers->tree_topic, CTL_TOPIC_TREE);
  ctl_bus_prepare_grouped_topic(e->bus, e->peers->tree_topic);
  GError *error = NULL;
  if (!ctl_store_tree_keys_foreach(e->store, load_key, e, &error)) {
    g_warning("peers: %s", error->message);
    g_clear_error(&error);
  }
  ctl_bus_watch(e->bus, e->peers->tree_topic);
  /* Announcements a stop or a crash kept from the broker, in their order. */
  if (!ctl_store_announcements_foreach(e->store, resend, e, &error)) {
    g_warning("peers: %s", error->message);
    g_error_free(error);
  }
}

void
ctl_engine_peers_stop(CtlEngine *e)
{
  if (!e->peers)   /* a start that failed before it */
    return;
  /* Announcements still with the producer stay in the table for next time. */
  g_clear_pointer(&e->peers->announcing, g_hash_table_unref);
  g_clear_pointer(&e->peers->announce_ids, g_hash_table_unref);
  g_clear_pointer(&e->peers->tree_unplaced, g_hash_table_unref);
  g_clear_pointer(&e->peers->by_command_topic, g_hash_table_unref);
  g_clear_pointer(&e->peers->tree_offsets, g_hash_table_unref);
  g_clear_pointer(&e->peers->tree_topic, g_free);
  g_clear_pointer(&e->peers, g_free);
}

gboolean
ctl_engine_peers_reads(CtlEngine *e, const char *topic)
{
  return e->peers && (g_hash_table_contains(e->peers->by_command_topic, topic)
                      || strcmp(topic, e->peers->tree_topic) == 0);
}

const char *
ctl_engine_tree_topic(CtlEngine *e)
{
  return e->peers ? e->peers->tree_topic : NULL;
}

CtlObject *
ctl_engine_command_topic_runtime(CtlEngine *e, const char *topic)
{
  return e->peers ? g_hash_table_lookup(e->peers->by_command_topic, topic) : NULL;
}
