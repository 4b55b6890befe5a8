/* The model: the objects of the tree (runtimes and their resources; cluster
 * modules and their topologies), their desired and observed state, and their event logs.
 *
 * The model owns the in-memory index and writes every change through to the
 * store. Listeners (fs/ is one) hear about changes; core/ never calls fs/. */
#pragma once
#include <glib.h>
#include "config.h"
#include "kv.h"
#include "store.h"

typedef enum {
  CTL_KIND_ROOT = 0,       /* the mount's root: virtual */
  CTL_KIND_RUNTIMES = 1,   /* runtimes/: virtual */
  CTL_KIND_RUNTIME = 2,
  CTL_KIND_RESOURCE = 3,
  CTL_KIND_MODULES = 4,    /* modules/: virtual */
  CTL_KIND_MODULE = 5,
  CTL_KIND_TOPOLOGIES = 6, /* a module's topologies/: stored with the module */
  CTL_KIND_TOPOLOGY = 7,
  CTL_KIND_OPTIONS = 8,    /* options/ of a module, topology, depot or PState: stored
                              with its owner */
  CTL_KIND_OPTION = 9,     /* a dynamic option: a file, its value a setting */
  CTL_KIND_DEPOTS = 10,    /* a module's depots/: stored with the module */
  CTL_KIND_DEPOT = 11,     /* a Rama depot (`*name`): holds its options/ */
  CTL_KIND_PSTATES = 12,   /* a module's pstates/: stored with the module */
  CTL_KIND_PSTATE = 13,    /* a Rama PState (`$$name`): holds its options/ */
  CTL_KIND_COUNT
} CtlKind;
/* Kinds are stored in the objects table: their numbers never change. A
 * "group" (runtime, module) has a log of its own events and its members';
 * a "leaf" (resource, topology) has a state, observed, status and log. */

/* Keys 0..15 are virtual objects; a stored object's key is its id + 15, so a
 * key is stable for the life of the database (ids are never reused). fs/
 * derives inode numbers from keys. */
#define CTL_KEY_ROOT      0
#define CTL_KEY_RUNTIMES  1
#define CTL_KEY_MODULES   2
#define CTL_KEY_FIRST_STORED 16

typedef struct CtlObject CtlObject;
/* One allocation per object, its name included: a tree of a million
 * resources is a million of these (docs/performance.md, "Scale at start"),
 * so fields are ordered to leave no holes and nothing per object is
 * allocated that most objects do not need. */
struct CtlObject {
  gint64      key;           /* first: the model's index by key hashes the object itself */
  gint64      id;            /* store id, 0 for virtual objects */
  CtlObject  *parent;
  GHashTable *children;      /* the child objects, a set hashed by name (ctl_model_child); NULL for leaves */
  GPtrArray  *sorted;        /* children by name, made on demand (NULL: stale) */

  /* runtime and resource state (see status in SPEC.md). `desired` and
   * `observed` may hold a shared word (ctl_str_share): change them with
   * ctl_set_str(), never g_free() them. */
  char       *desired;       /* "running" | "paused" | NULL */
  char       *observed;      /* last reported state, NULL never reported */
  gint64      observed_at;   /* ms (the runtime's timestamp), 0 never */
  gint64      feedback_at;   /* ms when ctlfs received the last feedback, 0 never */
  char       *pending;       /* command id awaiting feedback */
  char       *last_error;
  char       *last_cmd_id, *last_cmd_verb, *last_cmd_result;
  /* The command topic's offset of the command that set `desired`, -1 unknown:
   * commands apply in the topic's order, whichever host issued them (peers.c). */
  gint64      desired_offset;
  char       *desired_verb;  /* ... its verb, its id, and whether it was ours */
  char       *desired_id;
  GList      *stale_link;    /* the engine's staleness queue (stale.c) */

  /* runtimes: their topics (positions read in them: the store's offsets) */
  char       *command_topic, *feedback_topic;

  /* Named settings (name -> value, NULL until one is set): a flow's mode, a
   * module's options; stored in the settings table. */
  GHashTable *settings;

  /* Real time (µs) at which this run created the object; 0 when it was
   * loaded from the store. Until a file of the object changes, fs/ shows this
   * as the file's times: a file cannot have changed before it existed. */
  gint64      made_at;

  /* Bytes of the object's `log` stream (the root's: every event; a group's:
   * its own and its members'; a leaf's: its own), -1 until first needed. */
  gint64      log_size;

  CtlKind     kind;
  guint       inflight;      /* durable commands awaiting the broker */
  int         desired_partition;  /* desired_offset's partition (-1 unknown: not stored) */
  gboolean    desired_ours;
  guint       unplaced;      /* local commands whose place in that topic is not known yet */
  guint8      in_arena;      /* loaded at start: its memory is the model's arena's */
  char        name[];        /* last: held in the object's own allocation */
};

/* What changed, for listeners. */
typedef enum {
  CTL_CHANGE_STATE    = 1 << 0,   /* status (pending, last command, errors) */
  CTL_CHANGE_LOG      = 1 << 1,   /* a line was appended to the object's log */
  CTL_CHANGE_CHILDREN = 1 << 2,   /* a child appeared or went */
  CTL_CHANGE_REMOVED  = 1 << 3,   /* the object itself is gone (last call) */
  CTL_CHANGE_DESIRED  = 1 << 4,   /* desired state (the `state` file) */
  CTL_CHANGE_OBSERVED = 1 << 5,   /* observed state */
  CTL_CHANGE_ELSEWHERE = 1 << 6,  /* with DESIRED: not by a write to this `state` file
                                     (another host), so its watchers must be woken */
  CTL_CHANGE_SETTINGS = 1 << 7,   /* a named setting (a flow's `mode`) */
  CTL_CHANGE_METRICS  = 1 << 8,   /* the metrics a runtime reported (reported.c) */
} CtlChange;

typedef void (*CtlModelListener)(CtlObject *obj, CtlChange what, gpointer user_data);

typedef struct CtlModel CtlModel;

/* Loads every object from ST. CFG names the runtimes' topics. The model
 * owns neither; both outlive it. */
CtlModel  *ctl_model_new(CtlStore *st, const CtlConfig *cfg, GError **error);
void       ctl_model_free(CtlModel *m);

CtlObject *ctl_model_root(CtlModel *m);
CtlObject *ctl_model_runtimes(CtlModel *m);
CtlObject *ctl_model_by_key(CtlModel *m, gint64 key);
CtlObject *ctl_model_child(CtlObject *parent, const char *name);
CtlObject *ctl_model_modules(CtlModel *m);
/* The runtime an object belongs to (itself for a runtime), or NULL. */
CtlObject *ctl_model_runtime_of(CtlObject *obj);
/* The group an object belongs to: its runtime or module (itself for one), or
 * NULL. A group's log holds its members' events. */
CtlObject *ctl_model_group_of(CtlObject *obj);
gboolean   ctl_kind_is_group(CtlKind kind);
gboolean   ctl_kind_is_leaf(CtlKind kind);
/* A module's topologies/ directory. */
CtlObject *ctl_model_topologies(CtlObject *module);
/* The options/ directory of a module, topology, depot or PState. */
CtlObject *ctl_model_options(CtlObject *owner);
/* Is KIND a directory made with its owner and gone with it (a module's
 * topologies/, depots/, pstates/; anyone's options/)? */
gboolean   ctl_kind_is_own_dir(CtlKind kind);
/* Why NAME cannot be the name of a new child of PARENT (by the rule of the
 * child's kind: name.h), or NULL (g_free). */
char      *ctl_model_name_problem(CtlObject *parent, const char *name);
/* Does OBJ hold objects that rmdir must not take with it? (Topologies,
 * depots and PStates do; options do not: they go with their owner.) */
gboolean   ctl_model_has_children(CtlObject *obj);
/* How many such objects OBJ holds. */
guint      ctl_model_members(CtlObject *obj);
/* "runtimes/rt1/svc" (g_free); "" for the root. */
char      *ctl_model_path(CtlObject *obj);
/* Children sorted by name, as an array the model keeps until the children
 * change: a listing of a large directory does not sort it again. NULL for
 * leaves. */
GPtrArray *ctl_model_children_array(CtlObject *parent);
guint      ctl_model_count(CtlModel *m, CtlKind kind);

void       ctl_model_add_listener(CtlModel *m, CtlModelListener fn, gpointer user_data);
void       ctl_model_changed(CtlModel *m, CtlObject *obj, CtlChange what);

/* Creates a runtime under runtimes/, a resource under a runtime, a module
 * (with its topologies/) under modules/ or a topology. Checks the
 * name (EINVAL), kind (EPERM), existence or a file of the same name (EEXIST);
 * store errors are EIO.
 * BY is the actor for the log line ("uid:0(root) pid=1 comm=mkdir" or
 * "feedback offset=17"). Returns NULL with *ERRNO_OUT set. */
CtlObject *ctl_model_create(CtlModel *m, CtlObject *parent, const char *name,
                            const char *event, const char *by, int *errno_out);
/* Declares the option NAME under an options/ (an object that is a
 * file, not a directory): errors as ctl_model_create(). */
CtlObject *ctl_model_create_option(CtlModel *m, CtlObject *options, const char *name,
                                   const char *by, int *errno_out);
/* Removes an object: ENOTEMPTY while it has children, EBUSY while commands are in
 * flight, EIO on store errors; 0 on success. */
int        ctl_model_remove(CtlModel *m, CtlObject *obj, const char *by);

/* One transaction on the model's store, for a change of several steps:
 *   gboolean ok = ctl_model_begin(m, error);
 *   ok = ok && step(..., error);
 *   ok = ctl_model_end(m, ok, error);
 * ctl_model_end() commits when OK, else rolls back (the store and the cached
 * log sizes), and says whether the change stands. ERROR is set by the first
 * step that failed. */
gboolean   ctl_model_begin(CtlModel *m, GError **error);
gboolean   ctl_model_end(CtlModel *m, gboolean ok, GError **error);

/* Rolls back the store's transaction and forgets cached log sizes, which may
 * count lines that were never committed. */
void       ctl_model_rollback(CtlModel *m);

/* Writes OBJ's mutable state to the store (inside the caller's transaction if any). */
gboolean   ctl_model_save(CtlModel *m, CtlObject *obj, GError **error);

/* A named setting of OBJ, or NULL. Setting one writes it to the store (inside
 * the caller's transaction if any); the caller logs and tells listeners. A
 * lost commit reads them all back from the store. */
const char *ctl_model_setting(CtlObject *obj, const char *name);
gboolean   ctl_model_set_setting(CtlModel *m, CtlObject *obj, const char *name,
                                 const char *value, GError **error);

/* Appends one line "TS PATH EVENT DETAILS" to OBJ's log (and its runtime's and
 * the root's), inside the caller's transaction if any, and tells listeners.
 * OBJ may be the root for daemon-wide events. */
gboolean   ctl_model_log(CtlModel *m, CtlObject *obj, const char *event, const char *details,
                         GError **error);

/* Stream sizes and reads for the `log` files. */
gint64     ctl_model_log_size(CtlModel *m, CtlObject *obj);
gssize     ctl_model_log_read(CtlModel *m, CtlObject *obj, gint64 offset, char *buf, gsize size);


