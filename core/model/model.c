/* The in-memory object index, written through to the store. */
#include "model.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "key-index.h"
#include "log.h"
#include "message.h"
#include "name.h"
#include "timefmt.h"

typedef struct {
  CtlModelListener fn;
  gpointer         user_data;
} Listener;

G_STATIC_ASSERT(G_STRUCT_OFFSET(CtlObject, key) == 0);   /* key-index.h */

struct CtlModel {
  CtlStore   *store;
  const CtlConfig *cfg;    /* runtimes' topic names (not owned) */
  CtlKeyIndex *by_key;       /* every object */
  CtlObject  *root, *runtimes, *modules;
  GArray     *listeners;
  /* Objects loaded at start are allocated here, all at once; one removed
   * later leaves its bytes until the model goes (never more than the load
   * took). Used only while loading: later objects are g_malloc'ed. */
  CtlArena   *arena;
  gboolean    loading;
  guint       counts[CTL_KIND_COUNT];
};

/* A parent's children are a set of the child objects, hashed and compared
 * by name: one pointer per entry instead of a name and an object. */
static guint
child_hash(gconstpointer o)
{
  return g_str_hash(((const CtlObject *) o)->name);
}

static gboolean
child_equal(gconstpointer a, gconstpointer b)
{
  return strcmp(((const CtlObject *) a)->name, ((const CtlObject *) b)->name) == 0;
}

/* Bytes of an object named NAME: its name is in the same allocation. */
static gsize
object_size(const char *name)
{
  return MAX(sizeof(CtlObject), G_STRUCT_OFFSET(CtlObject, name) + strlen(name) + 1);
}

static CtlObject *
object_new(CtlModel *m, gint64 key, gint64 id, CtlKind kind, const char *name, CtlObject *parent)
{
  gsize size = object_size(name);
  CtlObject *o = m->loading ? ctl_arena_alloc0(m->arena, size) : g_malloc0(size);
  o->in_arena = m->loading;
  strcpy(o->name, name);
  o->key = key;
  o->id = id;
  o->kind = kind;
  o->parent = parent;
  o->log_size = -1;
  o->desired_offset = -1;
  o->desired_partition = -1;
  /* a topology is a leaf that holds its options/ */
  if (kind != CTL_KIND_RESOURCE && kind != CTL_KIND_OPTION)
    o->children = g_hash_table_new(child_hash, child_equal);
  if (kind == CTL_KIND_RUNTIME) {
    o->command_topic = ctl_config_topic(m->cfg, name, FALSE);
    o->feedback_topic = ctl_config_topic(m->cfg, name, TRUE);
  }
  if (parent) {
    g_hash_table_add(parent->children, o);
    g_clear_pointer(&parent->sorted, g_ptr_array_unref);
  }
  ctl_key_index_add(m->by_key, o);
  m->counts[kind]++;
  return o;
}

static void
object_free(CtlObject *o)
{
  if (o->children)
    g_hash_table_unref(o->children);
  if (o->sorted)
    g_ptr_array_unref(o->sorted);
  ctl_str_free(o->desired);
  g_free(o->desired_verb);
  g_free(o->desired_id);
  ctl_str_free(o->observed);
  g_free(o->pending);
  g_free(o->last_error);
  g_free(o->last_cmd_id);
  g_free(o->last_cmd_verb);
  g_free(o->last_cmd_result);
  g_free(o->command_topic);
  g_free(o->feedback_topic);
  if (o->settings)
    g_hash_table_unref(o->settings);
  if (o->in_arena)
    ctl_arena_release(o, object_size(o->name));
  else
    g_free(o);
}

static void
object_unlink(CtlModel *m, CtlObject *o)
{
  if (o->parent) {
    g_hash_table_remove(o->parent->children, o);
    g_clear_pointer(&o->parent->sorted, g_ptr_array_unref);
  }
  ctl_key_index_remove(m->by_key, o);
  m->counts[o->kind]--;
}

static CtlKind child_kind(CtlObject *parent);

/* The directories an object is made with and that go with it: a module's
 * topologies/, options/, depots/ and pstates/; the options/ of a topology,
 * a depot or a PState. */
typedef struct {
  CtlKind     kind;
  const char *name;
} OwnDir;

static const OwnDir module_dirs[] = {
  { CTL_KIND_TOPOLOGIES, "topologies" }, { CTL_KIND_OPTIONS, "options" },
  { CTL_KIND_DEPOTS, "depots" }, { CTL_KIND_PSTATES, "pstates" }, { CTL_KIND_COUNT, NULL },
};
static const OwnDir member_dirs[] = { { CTL_KIND_OPTIONS, "options" }, { CTL_KIND_COUNT, NULL } };
static const OwnDir no_dirs[] = { { CTL_KIND_COUNT, NULL } };

static const OwnDir *
own_dirs(CtlKind kind)
{
  switch (kind) {
  case CTL_KIND_MODULE:   return module_dirs;
  case CTL_KIND_TOPOLOGY:
  case CTL_KIND_DEPOT:
  case CTL_KIND_PSTATE:   return member_dirs;
  default:                return no_dirs;
  }
}

gboolean
ctl_kind_is_own_dir(CtlKind kind)
{
  for (const OwnDir *d = module_dirs; d->name; d++)
    if (d->kind == kind)
      return TRUE;
  return FALSE;
}

/* May an object of kind PARENT hold one of KIND (as loaded from the store)? */
static gboolean
may_hold(CtlObject *parent, int kind)
{
  if ((int) child_kind(parent) == kind)
    return TRUE;
  for (const OwnDir *d = own_dirs(parent->kind); d->name; d++)
    if ((int) d->kind == kind)
      return TRUE;
  return FALSE;
}

static void
load_object(const CtlObjectRow *row, gpointer user_data)
{
  CtlModel *m = user_data;
  CtlObject *parent = row->kind == CTL_KIND_RUNTIME  ? m->runtimes
                      : row->kind == CTL_KIND_MODULE ? m->modules
                      : ctl_model_by_key(m, row->parent_id + CTL_KEY_FIRST_STORED - 1);
  if (!parent || !may_hold(parent, row->kind)) {
    g_warning("store: object %" G_GINT64_FORMAT " (%s) has no valid parent; ignored",
              row->id, row->name);
    return;
  }
  CtlObject *o = object_new(m, row->id + CTL_KEY_FIRST_STORED - 1, row->id, row->kind,
                            row->name, parent);
  o->desired = ctl_str_share(row->desired);
  o->observed = ctl_str_share(row->observed);
  o->observed_at = row->observed_at;
  o->feedback_at = row->feedback_at;
  o->pending = g_strdup(row->pending);
  o->last_error = g_strdup(row->last_error);
}

static void
put_setting(CtlObject *o, const char *name, const char *value)
{
  if (!o->settings)
    o->settings = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_hash_table_replace(o->settings, g_strdup(name), g_strdup(value));
}

static void
load_setting(gint64 object_id, const char *name, const char *value, gint64 updated_at,
             gpointer user_data)
{
  CtlObject *o = ctl_model_by_key(user_data, object_id + CTL_KEY_FIRST_STORED - 1);
  if (o)
    put_setting(o, name, value);
}

const char *
ctl_model_setting(CtlObject *obj, const char *name)
{
  return obj->settings ? g_hash_table_lookup(obj->settings, name) : NULL;
}

gboolean
ctl_model_set_setting(CtlModel *m, CtlObject *obj, const char *name, const char *value,
                      GError **error)
{
  if (!ctl_store_setting_put(m->store, obj->id, name, value, ctl_now_ms(), error))
    return FALSE;
  put_setting(obj, name, value);
  return TRUE;
}

static void
load_last_command(const CtlCommandRow *row, gpointer user_data)
{
  CtlModel *m = user_data;
  CtlObject *o = ctl_model_by_key(m, row->object_id + CTL_KEY_FIRST_STORED - 1);
  if (!o)
    return;
  ctl_set_str(&o->last_cmd_id, row->id);
  ctl_set_str(&o->last_cmd_verb, row->verb);
  ctl_set_str(&o->last_cmd_result, row->result);
}

/* Where `desired` stands in the command topic: commands read again after a
 * restart that are not newer than this are not applied again (peers.c). */
static void
load_placed(gint64 object_id, const char *verb, gint64 offset, const char *id, gboolean peer,
            gpointer user_data)
{
  CtlObject *o = ctl_model_by_key(user_data, object_id + CTL_KEY_FIRST_STORED - 1);
  if (!o)
    return;
  o->desired_offset = offset;
  ctl_set_str(&o->desired_verb, verb);
  ctl_set_str(&o->desired_id, id);
  o->desired_ours = !peer;
}

static void on_lost_commit(gpointer data, gboolean ok, const char *reason);
static CtlObject *insert_dir(CtlModel *m, CtlObject *owner, CtlKind kind, const char *name,
                             GError **error);

static void
find_missing_dirs(gpointer obj, gpointer owners)
{
  for (const OwnDir *d = own_dirs(((CtlObject *) obj)->kind); d->name; d++)
    if (!ctl_model_child(obj, d->name)) {
      g_ptr_array_add(owners, obj);
      return;
    }
}

/* Objects stored before one of their own directories existed (a module
 * before options/, depots/, pstates/; a topology before options/) get it
 * now, so that every object of a kind has the same tree. */
static gboolean
add_missing_dirs(CtlModel *m, GError **error)
{
  GPtrArray *owners = g_ptr_array_new();
  ctl_key_index_foreach(m->by_key, find_missing_dirs, owners);
  gboolean ok = owners->len == 0 || ctl_store_begin(m->store, error);
  for (guint i = 0; ok && i < owners->len; i++)
    for (const OwnDir *d = own_dirs(((CtlObject *) owners->pdata[i])->kind); ok && d->name; d++)
      if (!ctl_model_child(owners->pdata[i], d->name))
        ok = insert_dir(m, owners->pdata[i], d->kind, d->name, error) != NULL;
  if (owners->len > 0)
    ok = ok && ctl_store_commit(m->store, error);
  if (!ok && owners->len > 0)
    ctl_store_rollback(m->store);
  g_ptr_array_free(owners, TRUE);
  return ok;
}

CtlModel *
ctl_model_new(CtlStore *st, const CtlConfig *cfg, GError **error)
{
  CtlModel *m = g_new0(CtlModel, 1);
  m->store = st;
  m->cfg = cfg;
  m->by_key = ctl_key_index_new();
  m->listeners = g_array_new(FALSE, FALSE, sizeof(Listener));
  m->root = object_new(m, CTL_KEY_ROOT, 0, CTL_KIND_ROOT, "", NULL);
  m->runtimes = object_new(m, CTL_KEY_RUNTIMES, 0, CTL_KIND_RUNTIMES, "runtimes", m->root);
  m->modules = object_new(m, CTL_KEY_MODULES, 0, CTL_KIND_MODULES, "modules", m->root);
  m->arena = ctl_arena_new();
  m->loading = TRUE;
  gboolean loaded = ctl_store_objects_foreach(st, load_object, m, error);
  m->loading = FALSE;
  if (!loaded
      || !ctl_store_last_commands(st, load_last_command, m, error)
      || !ctl_store_settings_foreach(st, load_setting, m, error)
      || !ctl_store_placed_commands(st, load_placed, m, error)) {
    ctl_model_free(m);
    return NULL;
  }
  if (!add_missing_dirs(m, error)) {
    ctl_model_free(m);
    return NULL;
  }
  ctl_store_on_lost_commit(st, on_lost_commit, m);
  return m;
}

static void
free_one(gpointer obj, gpointer unused)
{
  object_free(obj);
}

void
ctl_model_free(CtlModel *m)
{
  if (!m)
    return;
  ctl_store_on_lost_commit(m->store, NULL, NULL);
  ctl_key_index_foreach(m->by_key, free_one, NULL);
  ctl_key_index_free(m->by_key);
  ctl_arena_free(m->arena);
  g_array_unref(m->listeners);
  g_free(m);
}

CtlObject *
ctl_model_root(CtlModel *m)
{
  return m->root;
}

CtlObject *
ctl_model_runtimes(CtlModel *m)
{
  return m->runtimes;
}

CtlObject *
ctl_model_modules(CtlModel *m)
{
  return m->modules;
}

CtlObject *
ctl_model_by_key(CtlModel *m, gint64 key)
{
  return ctl_key_index_lookup(m->by_key, key);
}

CtlObject *
ctl_model_child(CtlObject *parent, const char *name)
{
  if (!parent || !parent->children || !name)
    return NULL;
  /* The set's entries are objects: NAME is looked up as one that holds it
   * (on the stack; names are short: CTL_NAME_MAX). */
  gsize size = G_STRUCT_OFFSET(CtlObject, name) + strlen(name) + 1;
  gint64 stack[(sizeof(CtlObject) + CTL_NAME_MAX + 1 + sizeof(gint64) - 1) / sizeof(gint64)];
  CtlObject *probe = size <= sizeof stack ? (CtlObject *) stack : g_malloc(size);
  strcpy(probe->name, name);
  CtlObject *found = g_hash_table_lookup(parent->children, probe);
  if (probe != (CtlObject *) stack)
    g_free(probe);
  return found;
}

CtlObject *
ctl_model_runtime_of(CtlObject *obj)
{
  for (; obj; obj = obj->parent)
    if (obj->kind == CTL_KIND_RUNTIME)
      return obj;
  return NULL;
}

gboolean
ctl_kind_is_group(CtlKind kind)
{
  return kind == CTL_KIND_RUNTIME || kind == CTL_KIND_MODULE;
}

gboolean
ctl_kind_is_leaf(CtlKind kind)
{
  return kind == CTL_KIND_RESOURCE || kind == CTL_KIND_TOPOLOGY;
}

CtlObject *
ctl_model_group_of(CtlObject *obj)
{
  for (; obj; obj = obj->parent)
    if (ctl_kind_is_group(obj->kind))
      return obj;
  return NULL;
}

CtlObject *
ctl_model_topologies(CtlObject *module)
{
  return ctl_model_child(module, "topologies");
}

CtlObject *
ctl_model_options(CtlObject *owner)
{
  return ctl_model_child(owner, "options");
}

guint
ctl_model_members(CtlObject *obj)
{
  const OwnDir *dirs = own_dirs(obj->kind);
  if (!dirs->name)
    return obj->children ? g_hash_table_size(obj->children) : 0;
  /* Options are values remembered, not objects of the cluster: they go
   * with their owner. Topologies, depots and PStates must be removed first. */
  guint n = 0;
  for (const OwnDir *d = dirs; d->name; d++) {
    CtlObject *dir = ctl_model_child(obj, d->name);
    if (d->kind != CTL_KIND_OPTIONS && dir)
      n += g_hash_table_size(dir->children);
  }
  return n;
}

gboolean
ctl_model_has_children(CtlObject *obj)
{
  return ctl_model_members(obj) > 0;
}

char *
ctl_model_path(CtlObject *obj)
{
  GPtrArray *parts = g_ptr_array_new();
  for (; obj && obj->kind != CTL_KIND_ROOT; obj = obj->parent)
    g_ptr_array_insert(parts, 0, obj->name);
  g_ptr_array_add(parts, NULL);
  char *path = g_strjoinv("/", (char **) parts->pdata);
  g_ptr_array_free(parts, TRUE);
  return path;
}

static gint
by_name(gconstpointer a, gconstpointer b)
{
  return strcmp(((const CtlObject *) a)->name, ((const CtlObject *) b)->name);
}

static gint
by_name_ptr(gconstpointer a, gconstpointer b)
{
  return by_name(*(CtlObject *const *) a, *(CtlObject *const *) b);
}

GPtrArray *
ctl_model_children_array(CtlObject *parent)
{
  if (!parent->children)
    return NULL;
  if (!parent->sorted) {
    parent->sorted = g_ptr_array_sized_new(g_hash_table_size(parent->children));
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, parent->children);
    while (g_hash_table_iter_next(&it, NULL, &value))
      g_ptr_array_add(parent->sorted, value);
    g_ptr_array_sort(parent->sorted, by_name_ptr);
  }
  return parent->sorted;
}

guint
ctl_model_count(CtlModel *m, CtlKind kind)
{
  return m->counts[kind];
}

void
ctl_model_add_listener(CtlModel *m, CtlModelListener fn, gpointer user_data)
{
  Listener l = { fn, user_data };
  g_array_append_val(m->listeners, l);
}

void
ctl_model_changed(CtlModel *m, CtlObject *obj, CtlChange what)
{
  for (guint i = 0; i < m->listeners->len; i++) {
    Listener *l = &g_array_index(m->listeners, Listener, i);
    l->fn(obj, what, l->user_data);
  }
}

/* A runtime's directory also holds its status and log files: a resource may
 * not take their names. */
static gboolean
name_reserved(CtlKind kind, const char *name)
{
  return kind == CTL_KIND_RESOURCE && (strcmp(name, "status") == 0 || strcmp(name, "log") == 0);
}

static CtlKind
child_kind(CtlObject *parent)
{
  switch (parent->kind) {
  case CTL_KIND_RUNTIMES:   return CTL_KIND_RUNTIME;
  case CTL_KIND_RUNTIME:    return CTL_KIND_RESOURCE;
  case CTL_KIND_MODULES:    return CTL_KIND_MODULE;
  case CTL_KIND_MODULE:     return CTL_KIND_TOPOLOGIES;   /* made with the module only */
  case CTL_KIND_TOPOLOGIES: return CTL_KIND_TOPOLOGY;
  case CTL_KIND_OPTIONS:    return CTL_KIND_OPTION;      /* ctl_model_create_option only */
  case CTL_KIND_DEPOTS:     return CTL_KIND_DEPOT;
  case CTL_KIND_PSTATES:    return CTL_KIND_PSTATE;
  default:                  return CTL_KIND_COUNT;
  }
}

/* Rama's names: modules are Java class names (nested with `$`), topologies
 * take the same; depots start with `*`, PStates with `$$`. */
static CtlNameRule
name_rule(CtlKind kind)
{
  switch (kind) {
  case CTL_KIND_MODULE:
  case CTL_KIND_TOPOLOGY: return CTL_NAME_JAVA;
  case CTL_KIND_DEPOT:    return CTL_NAME_DEPOT;
  case CTL_KIND_PSTATE:   return CTL_NAME_PSTATE;
  default:                return CTL_NAME_PLAIN;
  }
}

char *
ctl_model_name_problem(CtlObject *parent, const char *name)
{
  return ctl_name_problem_as(name_rule(child_kind(parent)), name);
}

/* An object's own directory (OwnDir), inserted in the caller's
 * transaction; its key is stable like any stored object's. */
static CtlObject *
insert_dir(CtlModel *m, CtlObject *owner, CtlKind kind, const char *name, GError **error)
{
  gint64 id = ctl_store_object_insert(m->store, owner->id, kind, name, ctl_now_ms(), error);
  CtlObject *dir = id > 0 ? object_new(m, id + CTL_KEY_FIRST_STORED - 1, id, kind, name, owner)
                          : NULL;
  if (dir)
    dir->made_at = owner->made_at;
  return dir;
}

static gboolean
insert_own_dirs(CtlModel *m, CtlObject *owner, GError **error)
{
  for (const OwnDir *d = own_dirs(owner->kind); d->name; d++)
    if (!insert_dir(m, owner, d->kind, d->name, error))
      return FALSE;
  return TRUE;
}

static void
drop_own_dirs(CtlModel *m, CtlObject *owner)
{
  for (const OwnDir *d = own_dirs(owner->kind); d->name; d++) {
    CtlObject *dir = ctl_model_child(owner, d->name);
    if (dir) {
      object_unlink(m, dir);
      object_free(dir);
    }
  }
}

static CtlObject *create_in(CtlModel *m, CtlObject *parent, CtlKind kind, const char *name,
                            const char *event, const char *by, int *errno_out);

CtlObject *
ctl_model_create(CtlModel *m, CtlObject *parent, const char *name, const char *event,
                 const char *by, int *errno_out)
{
  CtlKind kind = child_kind(parent);
  if (kind == CTL_KIND_COUNT || ctl_kind_is_own_dir(kind) || kind == CTL_KIND_OPTION) {
    *errno_out = EPERM;
    return NULL;
  }
  return create_in(m, parent, kind, name, event, by, errno_out);
}

CtlObject *
ctl_model_create_option(CtlModel *m, CtlObject *options, const char *name, const char *by,
                        int *errno_out)
{
  if (options->kind != CTL_KIND_OPTIONS) {
    *errno_out = EPERM;
    return NULL;
  }
  return create_in(m, options, CTL_KIND_OPTION, name, "option-declared", by, errno_out);
}

static CtlObject *
create_in(CtlModel *m, CtlObject *parent, CtlKind kind, const char *name, const char *event,
          const char *by, int *errno_out)
{
  if (!ctl_name_valid_as(name_rule(kind), name)) {
    *errno_out = EINVAL;
    return NULL;
  }
  if (ctl_model_child(parent, name) || name_reserved(kind, name)) {
    *errno_out = EEXIST;
    return NULL;
  }
  GError *error = NULL;
  if (!ctl_store_begin(m->store, &error)) {
    g_warning("store: cannot create %s: %s", name, error->message);
    g_error_free(error);
    *errno_out = EIO;
    return NULL;
  }
  gint64 parent_id = parent->id;   /* 0 under a virtual directory */
  gint64 id = ctl_store_object_insert(m->store, parent_id, kind, name, ctl_now_ms(), &error);
  CtlObject *o = NULL;
  if (id > 0) {
    o = object_new(m, id + CTL_KEY_FIRST_STORED - 1, id, kind, name, parent);
    o->log_size = 0;
    o->made_at = g_get_real_time();
    /* a runtime's resource follows its runtime's state until commanded */
    if (ctl_kind_is_leaf(kind))
      o->desired = g_strdup(parent->kind == CTL_KIND_RUNTIME && parent->desired
                            ? parent->desired : "running");
  }
  /* Its own directories are objects of their own (a directory needs a
   * stable key), stored in the same transaction. */
  gboolean dirs = !o || insert_own_dirs(m, o, &error);
  if (!o || !dirs || !ctl_model_save(m, o, &error) || !ctl_model_log(m, o, event, by, &error)
      || !ctl_store_commit(m->store, &error)) {
    g_warning("store: cannot create %s: %s", name, error ? error->message : "?");
    g_clear_error(&error);
    ctl_model_rollback(m);
    if (o) {
      drop_own_dirs(m, o);
      object_unlink(m, o);
      object_free(o);
    }
    *errno_out = EIO;
    return NULL;
  }
  ctl_model_changed(m, parent, CTL_CHANGE_CHILDREN);
  *errno_out = 0;
  return o;
}

static void
forget_object(CtlModel *m, CtlObject *o)
{
  ctl_model_changed(m, o, CTL_CHANGE_REMOVED);
  object_unlink(m, o);
  object_free(o);
}

/* Everything under OBJ, children before their parents (the order in which
 * they are forgotten). */
static void
collect_descendants(CtlObject *obj, GPtrArray *out)
{
  GPtrArray *children = ctl_model_children_array(obj);
  for (guint i = 0; children && i < children->len; i++) {
    collect_descendants(children->pdata[i], out);
    g_ptr_array_add(out, children->pdata[i]);
  }
}

int
ctl_model_remove(CtlModel *m, CtlObject *obj, const char *by)
{
  if (obj->key < CTL_KEY_FIRST_STORED || ctl_kind_is_own_dir(obj->kind))
    return EPERM;
  if (ctl_model_has_children(obj))
    return ENOTEMPTY;
  if (obj->inflight > 0)
    return EBUSY;
  /* What is left under it is its own directories and their options: they go
   * with it (values remembered, not objects of the cluster). */
  GPtrArray *under = g_ptr_array_new();
  collect_descendants(obj, under);
  GError *error = NULL;
  gboolean ok = ctl_store_begin(m->store, &error);
  ok = ok && ctl_model_log(m, obj, obj->kind == CTL_KIND_OPTION ? "option-forgotten" : "removed",
                           by, &error);
  ok = ok && ctl_store_object_delete(m->store, obj->id, &error);
  for (guint i = 0; ok && i < under->len; i++)
    ok = ctl_store_object_delete(m->store, ((CtlObject *) under->pdata[i])->id, &error);
  if (ok && obj->kind == CTL_KIND_RUNTIME)
    ok = ctl_store_offset_delete(m->store, obj->feedback_topic, &error)
         && ctl_store_offset_delete(m->store, obj->command_topic, &error);
  ok = ok && ctl_store_commit(m->store, &error);
  if (!ok) {
    ctl_model_rollback(m);
    g_warning("store: cannot remove %s: %s", obj->name, error ? error->message : "?");
    g_clear_error(&error);
    g_ptr_array_free(under, TRUE);
    return EIO;
  }
  CtlObject *parent = obj->parent;
  for (guint i = 0; i < under->len; i++)
    forget_object(m, under->pdata[i]);
  g_ptr_array_free(under, TRUE);
  ctl_model_changed(m, obj, CTL_CHANGE_REMOVED);
  object_unlink(m, obj);
  object_free(obj);
  ctl_model_changed(m, parent, CTL_CHANGE_CHILDREN);
  return 0;
}

/* Cached log sizes may count lines that were never committed: forget them. */
static void
forget_log_size(gpointer obj, gpointer unused)
{
  ((CtlObject *) obj)->log_size = -1;
}

static void
forget_log_sizes(CtlModel *m)
{
  ctl_key_index_foreach(m->by_key, forget_log_size, NULL);
}

/* ---- a lost group commit ----
 * When a batch fails to commit (disk full, I/O error), everything written in
 * it is gone from the store while the objects in memory still show it. The
 * store is the truth: each object takes back its stored fields (and says in
 * last_error why its change was lost), objects created in the batch go, and
 * the writers of the batch were answered EIO by their after-commit
 * callbacks, which ran before this. An object removed in the batch stays out
 * of the tree until the next start, where it is back. */

typedef struct {
  CtlModel   *m;
  GHashTable *stored;      /* CtlObject* seen in the objects table */
  GHashTable *with_cmd;    /* CtlObject* with a stored command */
  GPtrArray  *changed;     /* CtlObject* that moved back */
  GArray     *what;        /* CtlChange for each of .changed */
  GPtrArray  *phantoms;    /* CtlObject* not in the objects table */
} Resync;

static void
resync_mark(Resync *r, CtlObject *o, CtlChange what)
{
  for (guint i = 0; i < r->changed->len; i++)
    if (r->changed->pdata[i] == o) {
      g_array_index(r->what, CtlChange, i) |= what;
      return;
    }
  g_ptr_array_add(r->changed, o);
  g_array_append_val(r->what, what);
}

static void
resync_object(const CtlObjectRow *row, gpointer data)
{
  Resync *r = data;
  CtlObject *o = ctl_model_by_key(r->m, row->id + CTL_KEY_FIRST_STORED - 1);
  if (!o)
    return;
  g_hash_table_add(r->stored, o);
  CtlChange what = 0;
  if (ctl_set_str(&o->desired, row->desired))
    what |= CTL_CHANGE_DESIRED;
  if (ctl_set_str(&o->observed, row->observed) | (o->observed_at != row->observed_at)
      | (o->feedback_at != row->feedback_at))
    what |= CTL_CHANGE_OBSERVED;
  o->observed_at = row->observed_at;
  o->feedback_at = row->feedback_at;
  if (ctl_set_str(&o->pending, row->pending) | ctl_set_str(&o->last_error, row->last_error))
    what |= CTL_CHANGE_STATE;
  if (what)
    resync_mark(r, o, what);
}

static void
resync_command(const CtlCommandRow *row, gpointer data)
{
  Resync *r = data;
  CtlObject *o = ctl_model_by_key(r->m, row->object_id + CTL_KEY_FIRST_STORED - 1);
  if (!o)
    return;
  g_hash_table_add(r->with_cmd, o);
  if (ctl_set_str(&o->last_cmd_id, row->id) | ctl_set_str(&o->last_cmd_verb, row->verb)
      | ctl_set_str(&o->last_cmd_result, row->result))
    resync_mark(r, o, CTL_CHANGE_STATE);
}

/* One object after the tables were read: a phantom, or a command it lost. */
static void
resync_check(gpointer obj, gpointer data)
{
  Resync *r = data;
  CtlObject *o = obj;
  if (o->id == 0)
    return;
  if (!g_hash_table_contains(r->stored, o))
    g_ptr_array_add(r->phantoms, o);
  else if (o->last_cmd_id && !g_hash_table_contains(r->with_cmd, o)) {
    g_clear_pointer(&o->last_cmd_id, g_free);
    g_clear_pointer(&o->last_cmd_verb, g_free);
    g_clear_pointer(&o->last_cmd_result, g_free);
    resync_mark(r, o, CTL_CHANGE_STATE);
  }
  if (o->settings)   /* read again below */
    g_hash_table_remove_all(o->settings);
}

static gint
by_id_desc(gconstpointer a, gconstpointer b)
{
  gint64 x = (*(CtlObject *const *) a)->id, y = (*(CtlObject *const *) b)->id;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void
on_lost_commit(gpointer data, gboolean ok, const char *reason)
{
  CtlModel *m = data;
  forget_log_sizes(m);
  Resync r = {
    .m = m,
    .stored = g_hash_table_new(NULL, NULL),
    .with_cmd = g_hash_table_new(NULL, NULL),
    .changed = g_ptr_array_new(),
    .what = g_array_new(FALSE, FALSE, sizeof(CtlChange)),
  };
  GError *error = NULL;
  if (!ctl_store_objects_foreach(m->store, resync_object, &r, &error)
      || !ctl_store_last_commands(m->store, resync_command, &r, &error)) {
    g_warning("store: cannot re-read after a lost commit: %s", error->message);
    g_error_free(error);
    goto out;
  }
  GPtrArray *phantoms = g_ptr_array_new();
  r.phantoms = phantoms;
  ctl_key_index_foreach(m->by_key, resync_check, &r);
  if (!ctl_store_settings_foreach(m->store, load_setting, m, &error)) {
    g_warning("store: cannot re-read settings after a lost commit: %s", error->message);
    g_clear_error(&error);
  }
  char *why = g_strdup_printf("change not stored: %s", reason ? reason : "commit failed");
  for (guint i = 0; i < r.changed->len; i++) {
    CtlObject *o = r.changed->pdata[i];
    if (g_hash_table_contains(r.stored, o)) {
      ctl_set_str(&o->last_error, why);
      ctl_model_changed(m, o, g_array_index(r.what, CtlChange, i) | CTL_CHANGE_STATE);
    }
  }
  g_free(why);
  /* Children before parents: their ids are larger. */
  g_ptr_array_sort(phantoms, by_id_desc);
  for (guint i = 0; i < phantoms->len; i++) {
    CtlObject *o = phantoms->pdata[i];
    if (o->inflight > 0 || (o->children && g_hash_table_size(o->children) > 0)) {
      g_warning("store: %s was never stored but is still in use", o->name);
      continue;
    }
    CtlObject *parent = o->parent;
    ctl_model_changed(m, o, CTL_CHANGE_REMOVED);
    object_unlink(m, o);
    object_free(o);
    ctl_model_changed(m, parent, CTL_CHANGE_CHILDREN);
  }
  g_ptr_array_free(phantoms, TRUE);
out:
  g_hash_table_unref(r.stored);
  g_hash_table_unref(r.with_cmd);
  g_ptr_array_free(r.changed, TRUE);
  g_array_unref(r.what);
}

gboolean
ctl_model_begin(CtlModel *m, GError **error)
{
  return ctl_store_begin(m->store, error);
}

gboolean
ctl_model_end(CtlModel *m, gboolean ok, GError **error)
{
  ok = ok && ctl_store_commit(m->store, error);
  if (!ok)
    ctl_model_rollback(m);
  return ok;
}

void
ctl_model_rollback(CtlModel *m)
{
  ctl_store_rollback(m->store);
  forget_log_sizes(m);
}

gboolean
ctl_model_save(CtlModel *m, CtlObject *obj, GError **error)
{
  if (obj->id == 0)
    return TRUE;
  CtlObjectRow row = {
    .id = obj->id,
    .desired = obj->desired,
    .observed = obj->observed,
    .observed_at = obj->observed_at,
    .feedback_at = obj->feedback_at,
    .pending = obj->pending,
    .last_error = obj->last_error,
  };
  return ctl_store_object_save(m->store, &row, error);
}

/* ---- logs ---- */

static CtlStream
stream_of(CtlObject *obj)
{
  /* The store's "runtime" stream is a group's: a runtime's or a module's. */
  if (obj->kind == CTL_KIND_ROOT)
    return CTL_STREAM_ROOT;
  return ctl_kind_is_group(obj->kind) ? CTL_STREAM_RUNTIME : CTL_STREAM_OBJECT;
}

gint64
ctl_model_log_size(CtlModel *m, CtlObject *obj)
{
  if (obj->kind != CTL_KIND_ROOT && !ctl_kind_is_group(obj->kind)
      && !ctl_kind_is_leaf(obj->kind))
    return 0;   /* runtimes/, modules/, topologies/: no log */
  if (obj->log_size < 0) {
    GError *error = NULL;
    obj->log_size = ctl_store_stream_size(m->store, stream_of(obj), obj->id, &error);
    if (obj->log_size < 0) {
      g_warning("store: log size of %s: %s", obj->name, error->message);
      g_error_free(error);
      return 0;
    }
  }
  return obj->log_size;
}

gssize
ctl_model_log_read(CtlModel *m, CtlObject *obj, gint64 offset, char *buf, gsize size)
{
  gint64 total = ctl_model_log_size(m, obj);
  if (offset >= total)
    return 0;
  size = MIN(size, (gsize) (total - offset));
  GError *error = NULL;
  gssize n = ctl_store_stream_read(m->store, stream_of(obj), obj->id, offset, buf, size, &error);
  if (n < 0) {
    g_warning("store: reading log of %s: %s", obj->name, error->message);
    g_error_free(error);
  }
  return n;
}

/* The command id an event line names: `id=` of a command line, `command=`
 * of an observed line; NULL when none (g_free). Values in quotes (escaped
 * text from a caller or a runtime) are skipped whole, so that a message cannot
 * pass for an id. */
static char *
event_command_id(const char *event, const char *details)
{
  const char *key = strcmp(event, "command") == 0 ? "id" : "command";
  gsize klen = strlen(key);
  const char *p = details;
  while (p && *p) {
    while (*p == ' ')
      p++;
    const char *eq = p + strcspn(p, "= ");
    const char *v = *eq == '=' ? eq + 1 : eq;
    const char *end = v;
    if (*v == '"')
      for (end = v + 1; *end && *end != '"'; end++)
        if (*end == '\\' && end[1])
          end++;
    end += strcspn(end, " ");
    if (*eq == '=' && *v != '"' && (gsize) (eq - p) == klen && strncmp(p, key, klen) == 0
        && end > v && !(end - v == 1 && *v == '-'))
      return g_strndup(v, end - v);
    p = end;
  }
  return NULL;
}

gboolean
ctl_model_log(CtlModel *m, CtlObject *obj, const char *event, const char *details,
              GError **error)
{
  CtlObject *rt = ctl_model_group_of(obj);
  gboolean leaf = ctl_kind_is_leaf(obj->kind);
  char ts[CTL_TIME_LEN];
  gint64 now = ctl_now_ms();
  char *path = ctl_model_path(obj);
  char *line = g_strdup_printf("%s %s %s%s%s\n", ctl_time_format(now, ts),
                               *path ? path : "-", event, details && *details ? " " : "",
                               details ? details : "");
  gsize len = strlen(line);
  CtlEventPos pos = {
    .ts = now,
    .object_id = obj->id,
    .runtime_id = rt ? rt->id : 0,
    .off_root = ctl_model_log_size(m, m->root),
    .off_runtime = rt ? ctl_model_log_size(m, rt) : -1,
    .off_object = leaf ? ctl_model_log_size(m, obj) : -1,
  };
  gboolean ok = ctl_store_event_append(m->store, &pos, line, len, error);
  if (ok) {
    /* Sizes move only once the line is stored, so a reader never sees a size
     * that runs past the stream. A rolled-back transaction forgets the line:
     * the sizes are then re-read from the store. */
    m->root->log_size += len;
    if (rt)
      rt->log_size += len;
    if (leaf)
      obj->log_size += len;
    ctl_model_changed(m, obj, CTL_CHANGE_LOG);
    /* The same event for the journal (or stderr with -d), with its fields. */
    char *cmd_id = event_command_id(event, details);
    line[len - 1] = '\0';
    ctl_log_fields(G_LOG_LEVEL_INFO, rt ? rt->name : NULL, leaf ? obj->name : NULL, cmd_id, event,
                   strchr(line, ' ') + 1);
    g_free(cmd_id);
  }
  g_free(line);
  g_free(path);
  return ok;
}
