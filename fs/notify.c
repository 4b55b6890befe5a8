/* Waking watchers. The model tells us what changed; after the current main
 * loop iteration (so a burst of changes is one wakeup) every changed file:
 *  - wakes poll()/select() waiters with POLLPRI|POLLERR (the sysfs convention),
 *  - has its cached attributes (size) invalidated,
 *  - gets an inotify IN_MODIFY: the kernel raises none for changes the daemon
 *    makes, so a helper thread truncates the file to its own size through the
 *    mount; setattr() knows that thread by its tid and does nothing for it. */
#include "fs-private.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
  char  *path;    /* NULL: stop */
  gint64 size;
} Kick;

struct CtlNotify {
  CtlFs        *fs;
  GHashTable   *dirty;      /* fuse_ino_t -> TRUE, flushed at idle */
  guint         idle;
  GHashTable   *seq;        /* fuse_ino_t -> guint64 change count */
  GHashTable   *handles;    /* fuse_ino_t -> GPtrArray of open CtlHandle* */
  GHashTable   *known;      /* fuse_ino_t -> gint64 kernel lookup count */
  gboolean      stopping;
  volatile gint stopped;
  GAsyncQueue  *kicks;
  GThread      *thread;
  volatile gint tid;        /* the helper thread's tid, for setattr() */
};

/* A key for the tables by inode number (g_free). */
static fuse_ino_t *
ino_key(fuse_ino_t ino)
{
  fuse_ino_t *key = g_new(fuse_ino_t, 1);
  *key = ino;
  return key;
}

static void
kick_free(Kick *k)
{
  g_free(k->path);
  g_free(k);
}

static gpointer
kicker(gpointer data)
{
  CtlNotify *n = data;
  g_atomic_int_set(&n->tid, (gint) syscall(SYS_gettid));
  for (;;) {
    Kick *k = g_async_queue_pop(n->kicks);
    if (!k->path) {
      kick_free(k);
      break;
    }
    if (g_atomic_int_get(&n->stopped)) {   /* draining after a stop request */
      kick_free(k);
      continue;
    }
    /* ENOENT (object gone) and ENOTCONN (unmounting) are expected. */
    if (truncate(k->path, k->size) != 0 && errno != ENOENT && errno != ENOTCONN)
      g_debug("notify: truncate %s: %s", k->path, g_strerror(errno));
    kick_free(k);
  }
  g_atomic_int_set(&n->stopped, 2);
  g_main_context_wakeup(NULL);
  return NULL;
}

static char *
file_path(CtlFs *fs, CtlObject *obj, const CtlNode *node)
{
  char *rel = ctl_model_path(obj);
  char *path = g_build_filename(fs->mountpoint, rel, node->name, NULL);   /* "": OBJ is the file */
  g_free(rel);
  return path;
}

static void
flush_one(CtlNotify *n, fuse_ino_t ino, gboolean kick)
{
  guint64 *seq = g_hash_table_lookup(n->seq, &ino);
  if (!seq) {
    seq = g_new0(guint64, 1);
    g_hash_table_insert(n->seq, ino_key(ino), seq);
  }
  (*seq)++;
  GPtrArray *open = g_hash_table_lookup(n->handles, &ino);
  for (guint i = 0; open && i < open->len; i++)
    ctl_fs_handle_changed(open->pdata[i]);
  guint slot;
  CtlObject *obj = ctl_ino_object(n->fs, ino, &slot);
  const CtlNode *node = obj ? ctl_node_at(n->fs, obj, slot) : NULL;
  /* inotify pins the inode it watches: an inode the kernel forgot (or never
   * looked up) has no watcher, and a kick would only hold the mount busy. */
  gint64 *known = g_hash_table_lookup(n->known, &ino);
  if (!node || !known || *known <= 0 || n->stopping)
    return;
  /* Attributes only (offset < 0): no page lock is taken, so this is safe on
   * the thread that serves requests. */
  fuse_lowlevel_notify_inval_inode(n->fs->se, ino, -1, 0);
  if (!kick)
    return;
  struct stat st;
  ctl_fs_stat(n->fs, obj, slot, &st);
  Kick *k = g_new(Kick, 1);
  k->path = file_path(n->fs, obj, node);
  k->size = st.st_size;
  g_async_queue_push(n->kicks, k);
}

static gboolean
flush(gpointer data)
{
  CtlNotify *n = data;
  n->idle = 0;
  GHashTableIter it;
  gpointer key, kick;
  g_hash_table_iter_init(&it, n->dirty);
  while (g_hash_table_iter_next(&it, &key, &kick))
    flush_one(n, *(fuse_ino_t *) key, GPOINTER_TO_INT(kick));
  g_hash_table_remove_all(n->dirty);
  return G_SOURCE_REMOVE;
}

/* KICK: raise IN_MODIFY too. Not needed where a write to the file itself made
 * the change: the kernel reports that write to inotify watchers already. */
static void
mark_ino(CtlNotify *n, fuse_ino_t ino, gboolean kick)
{
  kick = kick || GPOINTER_TO_INT(g_hash_table_lookup(n->dirty, &ino));
  g_hash_table_insert(n->dirty, ino_key(ino), GINT_TO_POINTER(kick));
  if (!n->idle)
    n->idle = g_idle_add(flush, n);
}

static void
mark_file(CtlNotify *n, CtlObject *obj, const char *name, gboolean kick)
{
  guint slot;
  if (obj && ctl_node_find(n->fs, obj, name, &slot))
    mark_ino(n, ctl_ino(obj, slot), kick);
}

static void
mark(CtlNotify *n, CtlObject *obj, const char *name)
{
  mark_file(n, obj, name, TRUE);
}

/* The files whose rows say which changes touch them (CtlAttr.wakes). A
 * settings change comes only from a write to its file, which raises
 * IN_MODIFY by itself: no kick for that. */
static void
wake_declared(CtlNotify *n, CtlObject *obj, CtlChange what)
{
  guint count;
  const CtlNode *nodes = ctl_nodes(n->fs, obj, &count);
  for (guint i = 0; i < count; i++)
    if (nodes[i].wakes & what)
      mark_ino(n, ctl_ino(obj, i + 1), (nodes[i].wakes & what & ~CTL_CHANGE_SETTINGS) != 0);
}

/* Which files a change touches. A log line lands in three streams. */
static void
on_change(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlNotify *n = data;
  CtlObject *rt = ctl_model_group_of(obj);   /* the group whose status counts it */
  /* A write to `state` raises IN_MODIFY by itself; a change from another host
   * needs the kick. */
  if (what & CTL_CHANGE_DESIRED)
    mark_file(n, obj, "state", (what & CTL_CHANGE_ELSEWHERE) != 0);
  if (what & CTL_CHANGE_OBSERVED) {
    mark(n, obj, "observed");
    if (rt != obj)
      mark(n, rt, "status");    /* counts by observed state */
  }
  if (what & (CTL_CHANGE_STATE | CTL_CHANGE_DESIRED | CTL_CHANGE_OBSERVED))
    mark(n, obj, "status");
  wake_declared(n, obj, what);
  if ((what & CTL_CHANGE_STATE) && ctl_node_at(n->fs, obj, 0))
    mark_ino(n, ctl_ino(obj, 0), TRUE);   /* the option's value, likewise */
  if (what & CTL_CHANGE_LOG) {
    mark(n, obj, "log");
    if (rt != obj)
      mark(n, rt, "log");
    mark(n, ctl_model_root(n->fs->model), "log");
  }
  if (what & CTL_CHANGE_CHILDREN)
    mark(n, obj, "status");
}

CtlNotify *
ctl_notify_new(CtlFs *fs)
{
  CtlNotify *n = g_new0(CtlNotify, 1);
  n->fs = fs;
  n->dirty = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
  n->seq = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
  n->handles = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                     (GDestroyNotify) g_ptr_array_unref);
  n->known = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
  n->kicks = g_async_queue_new_full((GDestroyNotify) kick_free);
  n->tid = -1;
  n->thread = g_thread_new("ctlfs-notify", kicker, n);
  ctl_model_add_listener(fs->model, on_change, n);
  return n;
}

/* Stops the helper. Call after the session is gone, so that a truncate still
 * waiting for the main loop has been answered (ENOTCONN) and the join returns. */
void
ctl_notify_free(CtlNotify *n)
{
  if (!n)
    return;
  if (!g_atomic_int_get(&n->stopped))
    g_async_queue_push_front(n->kicks, g_new0(Kick, 1));
  g_thread_join(n->thread);
  if (n->idle)
    g_source_remove(n->idle);
  g_async_queue_unref(n->kicks);
  g_hash_table_unref(n->dirty);
  g_hash_table_unref(n->seq);
  g_hash_table_unref(n->handles);
  g_hash_table_unref(n->known);
  g_free(n);
}

void
ctl_notify_stop(CtlNotify *n)
{
  if (!n || n->stopping)
    return;
  n->stopping = TRUE;
  g_atomic_int_set(&n->stopped, 1);
  g_async_queue_push(n->kicks, g_new0(Kick, 1));
  /* The helper may be inside a truncate that only this thread can answer. */
  gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
  while (g_atomic_int_get(&n->stopped) != 2 && g_get_monotonic_time() < deadline)
    g_main_context_iteration(NULL, TRUE);
}

void
ctl_notify_looked_up(CtlNotify *n, fuse_ino_t ino, gint64 delta)
{
  gint64 *count = g_hash_table_lookup(n->known, &ino);
  if (!count) {
    if (delta <= 0)
      return;
    count = g_new0(gint64, 1);
    g_hash_table_insert(n->known, ino_key(ino), count);
  }
  *count += delta;
  if (*count <= 0)
    g_hash_table_remove(n->known, &ino);
}

gboolean
ctl_notify_is_kicker(CtlNotify *n, pid_t pid)
{
  return n && pid == (pid_t) g_atomic_int_get(&n->tid);
}

guint64
ctl_notify_seq(CtlNotify *n, fuse_ino_t ino)
{
  guint64 *seq = g_hash_table_lookup(n->seq, &ino);
  /* A change already made but not yet flushed counts: a read now shows it,
   * and the flush must not then wake that reader's poll() for nothing. */
  return (seq ? *seq : 0) + (g_hash_table_contains(n->dirty, &ino) ? 1 : 0);
}

void
ctl_notify_track(CtlNotify *n, fuse_ino_t ino, gpointer handle)
{
  GPtrArray *open = g_hash_table_lookup(n->handles, &ino);
  if (!open) {
    open = g_ptr_array_new();
    g_hash_table_insert(n->handles, ino_key(ino), open);
  }
  g_ptr_array_add(open, handle);
}

void
ctl_notify_untrack(CtlNotify *n, fuse_ino_t ino, gpointer handle)
{
  GPtrArray *open = g_hash_table_lookup(n->handles, &ino);
  if (open && g_ptr_array_remove_fast(open, handle) && open->len == 0)
    g_hash_table_remove(n->handles, &ino);
}
