/* Waking watchers, and the times files show. The model tells us what
 * changed; each changed file (or directory) gets the time of that change as
 * its mtime and ctime, and after the current main loop iteration (so a burst
 * of changes is one wakeup) every changed file:
 *  - wakes poll()/select() waiters with POLLPRI|POLLERR (the sysfs convention),
 *  - has its cached attributes (size, times) invalidated,
 *  - gets the inotify events watchers wait for: the kernel raises none for
 *    changes the daemon makes, so a helper thread opens the file for writing
 *    through the mount, truncates it to its own size (IN_MODIFY), sets its
 *    times to now (IN_ATTRIB) and closes it (IN_CLOSE_WRITE); open() and
 *    setattr() know that thread by its tid and change nothing for it.
 * A file's time is recorded whether or not anyone watches it, so a stat()
 * poller (make, rsync, fs.watchFile) sees exactly the changes that wake
 * inotify and poll() watchers. */
#include "fs-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
  char      *path;    /* NULL: stop */
  gint64     size;
  fuse_ino_t ino;
} Kick;

struct CtlNotify {
  CtlFs        *fs;
  GHashTable   *dirty;      /* fuse_ino_t -> TRUE, flushed at idle */
  guint         idle;
  GHashTable   *seq;        /* fuse_ino_t -> guint64 change count */
  GHashTable   *times;      /* fuse_ino_t -> struct timespec of its last change */
  GHashTable   *handles;    /* fuse_ino_t -> GPtrArray of open CtlHandle* */
  GHashTable   *known;      /* fuse_ino_t -> gint64 kernel lookup count */
  gboolean      stopping;
  volatile gint stopped;
  GAsyncQueue  *kicks;
  GMutex        lock;       /* guards .queued, which both threads use */
  GHashTable   *queued;     /* fuse_ino_t -> TRUE: a kick waiting in .kicks */
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

static void
kick_failed(const Kick *k, const char *what)
{
  /* ENOENT (object gone) and ENOTCONN (unmounting) are expected. */
  if (errno != ENOENT && errno != ENOTCONN)
    g_debug("notify: %s %s: %s", what, k->path, g_strerror(errno));
}

/* Raises IN_MODIFY, IN_ATTRIB and IN_CLOSE_WRITE on K's file, in that order:
 * watchers pick their mask (inotifywait -e modify, entr and systemd's
 * PathChanged= watch IN_CLOSE_WRITE|IN_ATTRIB), and any one of them must
 * wake. Four requests (open, setattr twice, release), each answered without
 * a change, and no flush: op_open marks the helper's files FOPEN_NOFLUSH. */
static void
kick_file(const Kick *k)
{
  int fd = open(k->path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    /* Not allowed to write it (a daemon that is not root, under
     * default_permissions): as the owner it may still set its times. */
    if (errno != EACCES && errno != EPERM)
      kick_failed(k, "open");
    else if (utimensat(AT_FDCWD, k->path, NULL, 0) != 0)
      kick_failed(k, "utimensat");
    return;
  }
  if (ftruncate(fd, k->size) != 0)
    kick_failed(k, "ftruncate");
  if (futimens(fd, NULL) != 0)
    kick_failed(k, "futimens");
  close(fd);   /* IN_CLOSE_WRITE */
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
    /* From now on a new change queues another kick: this one may come
     * before a watcher read the file, but not after that change. */
    g_mutex_lock(&n->lock);
    g_hash_table_remove(n->queued, &k->ino);
    g_mutex_unlock(&n->lock);
    kick_file(k);
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

/* One kick per file waiting at a time: changes that come faster than the
 * helper's four requests per kick are answered by the kick already waiting
 * (it is not done yet, so its events come after them), and the queue never
 * holds more kicks than there are files the kernel knows. */
static void
queue_kick(CtlNotify *n, CtlObject *obj, guint slot, const CtlNode *node)
{
  fuse_ino_t ino = ctl_ino(obj, slot);
  g_mutex_lock(&n->lock);
  gboolean waiting = !g_hash_table_add(n->queued, ino_key(ino));
  g_mutex_unlock(&n->lock);
  if (waiting)
    return;
  struct stat st;
  ctl_fs_stat(n->fs, obj, slot, &st);
  Kick *k = g_new(Kick, 1);
  k->path = file_path(n->fs, obj, node);
  k->size = st.st_size;
  k->ino = ino;
  g_async_queue_push(n->kicks, k);
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
  /* An inode the kernel forgot (or never looked up) has no cached
   * attributes, and no watcher: inotify pins the inode it watches, and a
   * kick would only hold the mount busy. */
  gint64 *known = g_hash_table_lookup(n->known, &ino);
  if (!obj || !known || *known <= 0 || n->stopping)
    return;
  /* Attributes only (offset < 0): no page lock is taken, so this is safe on
   * the thread that serves requests. The next stat() shows the new size and
   * times, whatever the attribute timeout. */
  fuse_lowlevel_notify_inval_inode(n->fs->se, ino, -1, 0);
  const CtlNode *node = ctl_node_at(n->fs, obj, slot);
  if (kick && node)   /* a directory is never kicked (on_change) */
    queue_kick(n, obj, slot, node);
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

/* Records now as INO's change time, and always a later one than the last:
 * a stat() poller compares times, and must see every change as a new one
 * even when the clock stood still or stepped back. */
static void
stamp(CtlNotify *n, fuse_ino_t ino)
{
  struct timespec now, *t = g_hash_table_lookup(n->times, &ino);
  clock_gettime(CLOCK_REALTIME, &now);
  if (!t) {
    t = g_new(struct timespec, 1);
    g_hash_table_insert(n->times, ino_key(ino), t);
  } else if (now.tv_sec < t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec <= t->tv_nsec)) {
    now = *t;
    if (++now.tv_nsec == 1000000000) {
      now.tv_sec++;
      now.tv_nsec = 0;
    }
  }
  *t = now;
}

/* KICK: raise the inotify events too. Not needed where a write to the file
 * itself made the change: the kernel reports that write to inotify watchers
 * already (IN_MODIFY, and IN_CLOSE_WRITE when the writer closes it). */
static void
mark_ino(CtlNotify *n, fuse_ino_t ino, gboolean kick)
{
  stamp(n, ino);
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

/* A removed object's inodes are never used again (keys are not reused):
 * their times need not be kept. Slots are 0..15 (ctl_ino). */
static void
forget_times(CtlNotify *n, CtlObject *obj)
{
  for (guint slot = 0; slot < 16; slot++) {
    fuse_ino_t ino = ctl_ino(obj, slot);
    g_hash_table_remove(n->times, &ino);
  }
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
  if (what & CTL_CHANGE_CHILDREN) {
    mark(n, obj, "status");
    /* The directory's own times (ls -l): a mkdir or rmdir through the mount
     * is reported to its watchers by the kernel, an object that feedback
     * made or the janitor removed is not (a directory cannot be truncated). */
    mark_ino(n, ctl_ino(obj, 0), FALSE);
  }
  if (what & CTL_CHANGE_REMOVED)
    forget_times(n, obj);
}

CtlNotify *
ctl_notify_new(CtlFs *fs)
{
  CtlNotify *n = g_new0(CtlNotify, 1);
  n->fs = fs;
  n->dirty = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
  n->seq = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
  n->times = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
  n->handles = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                     (GDestroyNotify) g_ptr_array_unref);
  n->known = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
  n->kicks = g_async_queue_new_full((GDestroyNotify) kick_free);
  g_mutex_init(&n->lock);
  n->queued = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
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
  g_hash_table_unref(n->queued);
  g_mutex_clear(&n->lock);
  g_hash_table_unref(n->dirty);
  g_hash_table_unref(n->seq);
  g_hash_table_unref(n->times);
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

void
ctl_notify_changed_at(CtlNotify *n, CtlObject *obj, guint slot, struct timespec *when)
{
  fuse_ino_t ino = ctl_ino(obj, slot);
  const struct timespec *t = n ? g_hash_table_lookup(n->times, &ino) : NULL;
  if (t) {
    *when = *t;
  } else if (obj->made_at > 0) {
    when->tv_sec = obj->made_at / G_USEC_PER_SEC;
    when->tv_nsec = (obj->made_at % G_USEC_PER_SEC) * 1000;
  }
}
