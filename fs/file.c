/* File operations: open, read, write, truncate. Every file is direct_io, so the
 * return value of write() is the daemon's answer and reads always come here. */
#include "fs-private.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

/* An open file. Value files keep the text generated at the last read from
 * offset 0, so one reader sees one consistent value across short reads
 * (the sysfs convention: re-read from offset 0 for a fresh value). */
typedef struct {
  const CtlNode          *node;
  gint64                  key;
  fuse_ino_t              ino;
  GString                *text;
  guint64                 seen;   /* change count at open or last read */
  struct fuse_pollhandle *ph;     /* a poll() waiting to be woken */
  gint64                  end;    /* where the last accepted write ended, or -1 */
  gboolean                writer; /* opened for writing */
} Handle;

static Handle *
handle_of(struct fuse_file_info *fi)
{
  return (Handle *) (uintptr_t) fi->fh;
}

static void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  guint slot;
  CtlObject *obj = ctl_fs_object(fs, req, ino, &slot);
  if (!obj)
    return;
  const CtlNode *node = ctl_node_at(fs, obj, slot);
  if (!node) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  /* The notify helper opens read-only files for writing too: closing them
   * raises IN_CLOSE_WRITE (notify.c). It never writes. */
  gboolean kicker = ctl_notify_is_kicker(fs->notify, fuse_req_ctx(req)->pid);
  if ((fi->flags & O_ACCMODE) != O_RDONLY && !node->store && !kicker) {
    fuse_reply_err(req, EACCES);
    return;
  }
  /* No flush when the helper's descriptor is closed (FOPEN_NOFLUSH). A child
   * this daemon forks (a backend's CLI) while the helper holds one inherits it
   * and closes it at exec; a flush there would wait for our main thread,
   * which waits for that exec, and for the inode lock the helper's truncate
   * holds until our main thread answers it: a deadlock. */
  fi->noflush = kicker;
  /* Refused here rather than at write(): every shell then says "Permission
   * denied" (dash says "I/O error" for any failed write). The store checks
   * again: a file opened by root may be handed to another process. */
  const char *name = ctl_node_name(node, obj);
  if ((fi->flags & O_ACCMODE) != O_RDONLY && !kicker
      && !ctl_fs_authorize(fs, req, CTL_ACCESS_COMMAND, obj, "open", name))
    return;
  if ((fi->flags & O_ACCMODE) != O_WRONLY
      && !ctl_fs_authorize(fs, req, CTL_ACCESS_READ, obj, "open", name))
    return;
  ctl_fs_reply_open(fs, req, obj, slot, fi, NULL);
}

/* A value file truncated by `>` reads as empty, as a truncated file does,
 * until a writer writes or the last one closes: GNU cat refuses to copy a non-empty
 * file onto itself, and `cat state > state` is how one says "again". The
 * value itself never changes by a truncate. */
gboolean
ctl_fs_emptied(CtlFs *fs, fuse_ino_t ino)
{
  return g_hash_table_contains(fs->emptied, GSIZE_TO_POINTER(ino));
}

static void
count_writer(CtlFs *fs, fuse_ino_t ino, int delta)
{
  gpointer key = GSIZE_TO_POINTER(ino);
  guint n = GPOINTER_TO_UINT(g_hash_table_lookup(fs->writers, key)) + delta;
  if (n > 0) {
    g_hash_table_insert(fs->writers, key, GUINT_TO_POINTER(n));
    return;
  }
  g_hash_table_remove(fs->writers, key);
  g_hash_table_remove(fs->emptied, key);
}

void
ctl_fs_handle_free(CtlFs *fs, gpointer handle)
{
  Handle *h = handle;
  g_hash_table_remove(fs->open_files, h);
  if (h->writer)
    count_writer(fs, h->ino, -1);
  ctl_notify_untrack(fs->notify, h->ino, h);
  if (h->ph)
    fuse_pollhandle_destroy(h->ph);
  if (h->text)
    g_string_free(h->text, TRUE);
  g_free(h);
}

void
ctl_fs_reply_open(CtlFs *fs, fuse_req_t req, CtlObject *obj, guint slot,
                  struct fuse_file_info *fi, const struct fuse_entry_param *entry)
{
  Handle *h = g_new0(Handle, 1);
  h->node = ctl_node_at(fs, obj, slot);
  h->key = obj->key;
  h->ino = ctl_ino(obj, slot);
  h->seen = ctl_notify_seq(fs->notify, h->ino);
  h->end = -1;
  h->writer = (fi->flags & O_ACCMODE) != O_RDONLY;
  if (h->writer)
    count_writer(fs, h->ino, +1);
  g_hash_table_add(fs->open_files, h);
  ctl_notify_track(fs->notify, h->ino, h);
  fi->fh = (uint64_t) (uintptr_t) h;
  fi->direct_io = 1;
  int rc;
  if (entry) {
    rc = fuse_reply_create(req, entry, fi);
    if (rc == 0)
      ctl_notify_looked_up(fs->notify, entry->ino, 1);
  } else {
    rc = fuse_reply_open(req, fi);
  }
  if (rc != 0)   /* the caller is gone (interrupted): no release will come */
    ctl_fs_handle_free(fs, h);
}

static void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  ctl_fs_handle_free(fs, handle_of(fi));
  fuse_reply_err(req, 0);
}

static void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  Handle *h = handle_of(fi);
  CtlObject *obj = ctl_model_by_key(fs->model, h->key);
  if (!obj) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (h->node->stream || off == 0)
    h->seen = ctl_notify_seq(fs->notify, ino);
  if (h->node->stream) {
    char *buf = g_malloc(size);
    gssize n = ctl_model_log_read(fs->model, obj, off, buf, size);
    if (n < 0)
      fuse_reply_err(req, EIO);
    else
      fuse_reply_buf(req, buf, n);
    g_free(buf);
    return;
  }
  if (off == 0 || !h->text) {
    if (h->text)
      g_string_truncate(h->text, 0);
    else
      h->text = g_string_new(NULL);
    h->node->show(fs->engine, obj, h->text);
  }
  if ((gsize) off >= h->text->len) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  fuse_reply_buf(req, h->text->str + off, MIN(size, h->text->len - (gsize) off));
}

typedef struct {
  fuse_req_t req;
  size_t     size;
  Handle    *h;      /* alive until the reply: the kernel releases after it */
  off_t      off;
} PendingWrite;

/* The write's answer comes when the engine has one: at once, or when the
 * broker acknowledges. The request waits in the meantime; other requests go on. */
static void
pending_write_done(int err, gpointer user_data)
{
  PendingWrite *pw = user_data;
  if (err) {
    fuse_reply_err(pw->req, err);
  } else {
    pw->h->end = pw->off + (gint64) pw->size;
    fuse_reply_write(pw->req, pw->size);
  }
  g_free(pw);
}

static gboolean
blank(const char *buf, size_t size)
{
  for (size_t i = 0; i < size; i++)
    if (!g_ascii_isspace(buf[i]))
      return FALSE;
  return TRUE;
}

static void
op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  Handle *h = handle_of(fi);
  CtlObject *obj = ctl_model_by_key(fs->model, h->key);
  if (!obj) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  g_hash_table_remove(fs->emptied, GSIZE_TO_POINTER(ino));
  if (!h->node->store) {
    fuse_reply_err(req, EACCES);
    return;
  }
  /* A value's trailing blank written by a second write() (bash's printf
   * 'pause\n\n' splits so) is nothing: the value was taken whole. */
  if (off > 0 && off == h->end && blank(buf, size)) {
    h->end += (gint64) size;
    fuse_reply_write(req, size);
    return;
  }
  CtlCaller who;
  ctl_fs_caller(fs, req, &who);
  ctl_caller_resolve(&who);
  PendingWrite *pw = g_new(PendingWrite, 1);
  pw->req = req;
  pw->size = size;
  pw->h = h;
  pw->off = off;
  h->node->store(fs->engine, obj, buf, size, off, &who, pending_write_done, pw);
  ctl_caller_clear(&who);
}

void
ctl_fs_handle_changed(gpointer handle)
{
  Handle *h = handle;
  if (h->ph) {
    fuse_lowlevel_notify_poll(h->ph);
    fuse_pollhandle_destroy(h->ph);
    h->ph = NULL;
  }
}

/* Always readable; POLLPRI|POLLERR once the file changed since it was opened
 * or last read from the start, as sysfs does. */
static void
op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct fuse_pollhandle *ph)
{
  CtlFs *fs = fuse_req_userdata(req);
  Handle *h = handle_of(fi);
  if (ph) {
    if (h->ph)
      fuse_pollhandle_destroy(h->ph);
    h->ph = ph;
  }
  unsigned revents = POLLIN | POLLRDNORM;
  if (ctl_notify_seq(fs->notify, ino) != h->seen)
    revents |= POLLPRI | POLLERR;
  fuse_reply_poll(req, revents);
}

/* Only a truncate of a writable file is accepted, and it does nothing: it is
 * how a shell's `>` opens the file (O_TRUNC). Times are the daemon's (the
 * last change): setting them is accepted and changes nothing, so `touch`
 * and `cp -p` do not fail. The notify helper's truncates and time settings
 * (inotify events, see notify.c) are answered without a look. */
static void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
           struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  guint slot;
  CtlObject *obj = ctl_fs_object(fs, req, ino, &slot);
  if (!obj)
    return;
  if (ctl_notify_is_kicker(fs->notify, fuse_req_ctx(req)->pid)) {
    struct stat st;
    ctl_fs_stat(fs, obj, slot, &st);
    fuse_reply_attr(req, &st, 0.0);
    return;
  }
  const CtlNode *node = ctl_node_at(fs, obj, slot);
  int allowed = FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME
                | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  if (to_set & ~allowed) {
    fuse_reply_err(req, EPERM);
    return;
  }
  if ((to_set & FUSE_SET_ATTR_SIZE) && (!node || !node->store)) {
    fuse_reply_err(req, node ? EACCES : EISDIR);
    return;
  }
  /* the kernel sends an open's O_TRUNC without the handle: a writer open */
  if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size == 0
      && g_hash_table_contains(fs->writers, GSIZE_TO_POINTER(ino)))
    g_hash_table_add(fs->emptied, GSIZE_TO_POINTER(ino));
  struct stat st;
  ctl_fs_stat(fs, obj, slot, &st);
  fuse_reply_attr(req, &st, 0.0);
}

void
ctl_fs_file_ops(struct fuse_lowlevel_ops *ops)
{
  ops->open = op_open;
  ops->release = op_release;
  ops->read = op_read;
  ops->write = op_write;
  ops->setattr = op_setattr;
  ops->poll = op_poll;
}
