/* The node-type table: which files each kind of object has, and their show()
 * and store() operations. The FUSE operations in tree.c and file.c only
 * translate requests into calls on this table. */
#include "fs-private.h"
#include "lifecycle.h"

#include <string.h>

#include "backend-rama.h"

static const char readme_text[] =
  "ctlfs: the control plane of data runtimes as files.\n"
  "\n"
  "  status              the daemon: version, brokers, broker link, db, write mode\n"
  "  log                 every event, oldest first (tail -f works)\n"
  "  metrics             Prometheus text format\n"
  "  runtimes/RT/        mkdir declares a runtime, rmdir forgets it\n"
  "    status, log       topics, resource counts by observed state, events\n"
  "    RES/              mkdir declares a resource of the runtime\n"
  "      state           desired state; write a verb: echo pause > state\n"
  "      observed        what the runtime last reported (or stale/unknown)\n"
  "      status          key: value lines: desired, observed, pending, last command\n"
  "      log             this resource's commands and reports\n"
  "  modules/MOD/        mkdir declares a cluster (Rama) module, rmdir forgets it\n"
  "    status            what `rama moduleStatus MOD` last printed\n"
  "    log               the module's and its topologies' events\n"
  "    scale             write workers=N threads=N: rama scaleExecutors\n"
  "    topologies/TOPO/  mkdir declares a microbatch topology\n"
  "      state, observed, status, log   as for a resource (rama pauseTopology)\n"
  "    options/NAME      echo JSON > NAME: rama setOption module MOD NAME JSON\n"
  "\n"
  "Verbs: pause, resume; lifecycle runtimes (flows) also start, stop, and have a\n"
  "`mode` file: ordinary or realtime, changed only while the flow is stopped.\n"
  "A write returns once the broker acknowledged the command\n"
  "(durable mode) or once it is stored (queued mode). Errors: EINVAL bad input,\n"
  "EACCES not allowed, EBUSY a CLI call still runs, ETIMEDOUT broker or CLI did not\n"
  "answer, EIO store, broker or CLI failed;\n"
  "the reason is in log and in status (last_error).\n"
  "Manual: docs/manual.md, ctlfs(8).\n";

static void
show_readme(CtlFs *fs, CtlObject *obj, GString *out)
{
  g_string_append(out, readme_text);
}

static void
show_status(CtlFs *fs, CtlObject *obj, GString *out)
{
  ctl_engine_show_status(fs->engine, obj, out);
}

static void
show_metrics(CtlFs *fs, CtlObject *obj, GString *out)
{
  ctl_engine_show_metrics(fs->engine, out);
}

static void
show_state(CtlFs *fs, CtlObject *obj, GString *out)
{
  g_string_append_printf(out, "%s\n", obj->desired ? obj->desired : "running");
}

static void
show_observed(CtlFs *fs, CtlObject *obj, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_engine_observed(fs->engine, obj));
}

static void
store_state(CtlFs *fs, CtlObject *obj, const char *buf, gsize len, gint64 offset,
            const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_engine_command(fs->engine, obj, buf, len, offset, who, done, user_data);
}

static void
store_topology_state(CtlFs *fs, CtlObject *obj, const char *buf, gsize len, gint64 offset,
                     const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_rama_topology_command(fs->engine, obj, buf, len, offset, who, done, user_data);
}

static void
show_scale(CtlFs *fs, CtlObject *obj, GString *out)
{
  const char *scale = ctl_rama_scale_value(obj);
  g_string_append_printf(out, "%s\n", scale ? scale : "-");
}

static void
store_scale(CtlFs *fs, CtlObject *obj, const char *buf, gsize len, gint64 offset,
            const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_rama_scale(fs->engine, obj, buf, len, offset, who, done, user_data);
}

/* A flow that was never started reads stopped (lifecycle.c). */
static void
show_flow_state(CtlFs *fs, CtlObject *obj, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_lifecycle_desired(fs->engine, obj));
}

static void
show_mode(CtlFs *fs, CtlObject *obj, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_lifecycle_mode(obj));
}

static void
store_mode(CtlFs *fs, CtlObject *obj, const char *buf, gsize len, gint64 offset,
           const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_engine_set_mode(fs->engine, obj, buf, len, offset, who, done, user_data);
}

/* A module's dynamic option: the file is the option object itself. */
static void
show_option(CtlFs *fs, CtlObject *obj, GString *out)
{
  const char *value = ctl_rama_option_value(obj);
  if (value)
    g_string_append_printf(out, "%s\n", value);
}

static void
store_option(CtlFs *fs, CtlObject *obj, const char *buf, gsize len, gint64 offset,
             const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_rama_set_option(fs->engine, obj, buf, len, offset, who, done, user_data);
}

#define LOG_NODE { .name = "log", .mode = S_IFREG | 0444, .stream = TRUE }

static const CtlNode root_nodes[] = {
  { .name = "README",  .mode = S_IFREG | 0444, .show = show_readme },
  { .name = "status",  .mode = S_IFREG | 0444, .show = show_status },
  LOG_NODE,
  { .name = "metrics", .mode = S_IFREG | 0444, .show = show_metrics },
};

static const CtlNode runtime_nodes[] = {
  { .name = "status", .mode = S_IFREG | 0444, .show = show_status },
  LOG_NODE,
};

/* state is writable by its owner and the admin group; the daemon checks the
 * caller itself too (mounts without default_permissions). */
static const CtlNode resource_nodes[] = {
  { .name = "state",    .mode = S_IFREG | 0664, .show = show_state, .store = store_state },
  { .name = "observed", .mode = S_IFREG | 0444, .show = show_observed },
  { .name = "status",   .mode = S_IFREG | 0444, .show = show_status },
  LOG_NODE,
};

/* A lifecycle backend's resources (elastic.io flows): `mode` is ordinary or
 * realtime, writable like `state` (the command policy decides). */
static const CtlNode lifecycle_nodes[] = {
  { .name = "state",    .mode = S_IFREG | 0664, .show = show_flow_state, .store = store_state },
  { .name = "observed", .mode = S_IFREG | 0444, .show = show_observed },
  { .name = "status",   .mode = S_IFREG | 0444, .show = show_status },
  LOG_NODE,
  { .name = "mode",     .mode = S_IFREG | 0664, .show = show_mode, .store = store_mode },
};

/* The cluster backend (Rama): commands run its CLI. */
static const CtlNode module_nodes[] = {
  { .name = "status", .mode = S_IFREG | 0444, .show = show_status },
  LOG_NODE,
  { .name = "scale",  .mode = S_IFREG | 0664, .show = show_scale, .store = store_scale },
};

static const CtlNode topology_nodes[] = {
  { .name = "state",    .mode = S_IFREG | 0664, .show = show_state,
    .store = store_topology_state },
  { .name = "observed", .mode = S_IFREG | 0444, .show = show_observed },
  { .name = "status",   .mode = S_IFREG | 0444, .show = show_status },
  LOG_NODE,
};

static const CtlNode option_self =
  { .name = "", .mode = S_IFREG | 0664, .show = show_option, .store = store_option };

static const struct {
  const CtlNode *nodes;
  guint          count;
  const CtlNode *self;   /* the object is this file, not a directory */
  CtlChildren    children;
} table[CTL_KIND_COUNT] = {
  [CTL_KIND_ROOT]     = { root_nodes, G_N_ELEMENTS(root_nodes) },
  [CTL_KIND_RUNTIMES] = { NULL, 0, .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_RUNTIME]  = { runtime_nodes, G_N_ELEMENTS(runtime_nodes),
                          .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_RESOURCE] = { resource_nodes, G_N_ELEMENTS(resource_nodes) },
  [CTL_KIND_MODULES]  = { NULL, 0, .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_MODULE]   = { module_nodes, G_N_ELEMENTS(module_nodes) },
  [CTL_KIND_TOPOLOGIES] = { NULL, 0, .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_TOPOLOGY] = { topology_nodes, G_N_ELEMENTS(topology_nodes) },
  [CTL_KIND_OPTIONS]  = { NULL, 0, .children = CTL_CHILDREN_CREATE },
  [CTL_KIND_OPTION]   = { NULL, 0, &option_self },
};

CtlChildren
ctl_node_children(CtlObject *dir)
{
  return table[dir->kind].children;
}

const CtlNode *
ctl_nodes(CtlFs *fs, CtlObject *obj, guint *count)
{
  if (obj->kind == CTL_KIND_RESOURCE
      && ctl_config_backend(ctl_engine_config(fs->engine), obj->parent->name)
         == CTL_BACKEND_LIFECYCLE) {
    *count = G_N_ELEMENTS(lifecycle_nodes);
    return lifecycle_nodes;
  }
  *count = table[obj->kind].count;
  return table[obj->kind].nodes;
}

const CtlNode *
ctl_node_find(CtlFs *fs, CtlObject *obj, const char *name, guint *slot)
{
  guint n;
  const CtlNode *nodes = ctl_nodes(fs, obj, &n);
  for (guint i = 0; i < n; i++) {
    if (strcmp(nodes[i].name, name) == 0) {
      *slot = i + 1;
      return &nodes[i];
    }
  }
  return NULL;
}

const CtlNode *
ctl_node_at(CtlFs *fs, CtlObject *obj, guint slot)
{
  if (slot == 0)
    return table[obj->kind].self;
  guint n;
  const CtlNode *nodes = ctl_nodes(fs, obj, &n);
  return slot <= n ? &nodes[slot - 1] : NULL;
}

const char *
ctl_node_name(const CtlNode *node, CtlObject *obj)
{
  return *node->name ? node->name : obj->name;
}
