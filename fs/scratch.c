/* Scratch files: what lets tools that never write a file in place (sed -i,
 * Ansible, Puppet, Python's atomic-write helpers) write `state` and the other
 * writable files. They write a temporary file in the same directory and
 * rename() it over the target; here that temporary file lives in memory, is
 * never published, and its rename over a writable file is a write of its
 * whole content, with that write's checks, audit and answer.
 *
 * Rules (docs/scripting.md):
 *  - a regular file created in a directory with a writable file is a scratch
 *    file (in a directory whose files are declared by creating them, only one
 *    created with O_EXCL, as every temporary-file helper does: the shell's `>`
 *    still declares);
 *  - made by whoever may read the directory (the policy's command rule is
 *    checked where something is published: at the rename, as for a write; the
 *    directory's mode shows the command rule, so under default_permissions the
 *    kernel lets only those make one);
 *  - listed and stat'able by everyone, opened, changed, renamed and removed by
 *    its creator only, and root and the daemon's user: others get EACCES
 *    (open) or EPERM (the rest, as a sticky directory has it);
 *  - at most CTL_SCRATCH_MAX_BYTES (EFBIG past it) and CTL_SCRATCH_MAX_FILES
 *    per uid (EDQUOT);
 *  - renamed over a writable file it is gone, whatever the write's outcome;
 *    renamed to a free name (or over another of the caller's scratch files)
 *    it is just renamed, but where creating a file declares one, to a free
 *    name it declares NAME and writes it, as `echo VALUE > NAME` does; over
 *    a read-only file, EPERM;
 *  - mode and times can be set and are shown; a change of owner is accepted
 *    and changes nothing; fsync and flush succeed.
 *
 * Inode numbers start at SCRATCH_INO_FIRST, far above every object's
 * (ctl_ino()), and are never reused while mounted. Entries and attributes are
 * never cached by the kernel (timeouts 0): after a rename over `state` the
 * kernel's entry `state` points to the scratch inode until it asks again,
 * which with a timeout of 0 is the next lookup, answered with the real file.
 */
#include "fs-private.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SCRATCH_INO_FIRST ((fuse_ino_t) 1 << 62)

typedef struct {
  fuse_ino_t      ino;
  gint64          dir;        /* its directory's object key; -1 once unnamed */
  char           *name;
  uid_t           uid;        /* the creator */
  gid_t           gid;
  mode_t          mode;       /* permission bits */
  GByteArray     *data;
  struct timespec atime, mtime, ctime;
  guint           refs;       /* 1 while named, 1 per open handle */
  gboolean        efbig_told; /* its EFBIG is logged once */
} Scratch;

struct CtlScratch {
  CtlFs      *fs;
  GHashTable *by_ino;    /* fuse_ino_t* -> Scratch*: every one alive (named or open) */
  GHashTable *by_name;   /* "KEY/NAME" -> Scratch*: the named ones */
  GHashTable *per_uid;   /* uid -> count alive */
  fuse_ino_t  next;
};

static struct fuse_lowlevel_ops next_ops;   /* the operations wrapped */

/* ---- the table ---- */

static char *
name_key(gint64 dir, const char *name)
{
  return g_strdup_printf("%" G_GINT64_FORMAT "/%s", dir, name);
}

static Scratch *
named(CtlScratch *sc, gint64 dir, const char *name)
{
  char *key = name_key(dir, name);
  Scratch *s = g_hash_table_lookup(sc->by_name, key);
  g_free(key);
  return s;
}

static Scratch *
by_ino(CtlScratch *sc, fuse_ino_t ino)
{
  return g_hash_table_lookup(sc->by_ino, &ino);
}

static guint
count_of(CtlScratch *sc, uid_t uid)
{
  return GPOINTER_TO_UINT(g_hash_table_lookup(sc->per_uid, GUINT_TO_POINTER(uid)));
}

static void
count_add(CtlScratch *sc, uid_t uid, int delta)
{
  guint n = count_of(sc, uid) + delta;
  if (n)
    g_hash_table_insert(sc->per_uid, GUINT_TO_POINTER(uid), GUINT_TO_POINTER(n));
  else
    g_hash_table_remove(sc->per_uid, GUINT_TO_POINTER(uid));
}

static void
scratch_free(Scratch *s)
{
  g_byte_array_unref(s->data);
  g_free(s->name);
  g_free(s);
}

static void
unref(CtlScratch *sc, Scratch *s)
{
  if (--s->refs > 0)
    return;
  count_add(sc, s->uid, -1);
  g_hash_table_remove(sc->by_ino, &s->ino);   /* frees it */
}

/* Out of its directory: gone once no handle has it open. */
static void
unname(CtlScratch *sc, Scratch *s)
{
  char *key = name_key(s->dir, s->name);
  g_hash_table_remove(sc->by_name, key);
  g_free(key);
  s->dir = -1;
  unref(sc, s);
}

static void
set_name(CtlScratch *sc, Scratch *s, gint64 dir, const char *name)
{
  if (s->name != name) {
    g_free(s->name);
    s->name = g_strdup(name);
  }
  s->dir = dir;
  g_hash_table_insert(sc->by_name, name_key(dir, name), s);
}

static void
now(struct timespec *ts)
{
  clock_gettime(CLOCK_REALTIME, ts);
}

/* A directory that goes (rmdir, another host, the janitor) takes its
 * scratch files with it. */
static void
on_change(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlScratch *sc = data;
  if (!(what & CTL_CHANGE_REMOVED) || g_hash_table_size(sc->by_name) == 0)
    return;
  GPtrArray *gone = g_ptr_array_new();
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, sc->by_name);
  while (g_hash_table_iter_next(&it, NULL, &value))
    if (((Scratch *) value)->dir == obj->key)
      g_ptr_array_add(gone, value);
  for (guint i = 0; i < gone->len; i++)
    unname(sc, gone->pdata[i]);
  g_ptr_array_free(gone, TRUE);
}

CtlScratch *
ctl_scratch_new(CtlFs *fs)
{
  CtlScratch *sc = g_new0(CtlScratch, 1);
  sc->fs = fs;
  sc->by_ino = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL,
                                     (GDestroyNotify) scratch_free);
  sc->by_name = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  sc->per_uid = g_hash_table_new(NULL, NULL);
  sc->next = SCRATCH_INO_FIRST;
  ctl_model_add_listener(fs->model, on_change, sc);
  return sc;
}

void
ctl_scratch_free(CtlScratch *sc)
{
  if (!sc)
    return;
  g_hash_table_unref(sc->by_name);
  g_hash_table_unref(sc->by_ino);
  g_hash_table_unref(sc->per_uid);
  g_free(sc);
}

/* ---- who may ---- */

static gboolean
privileged(CtlFs *fs, uid_t uid)
{
  return uid == 0 || uid == fs->uid;
}

static gboolean
may_touch(CtlFs *fs, fuse_req_t req, const Scratch *s)
{
  uid_t uid = fuse_req_ctx(req)->uid;
  return uid == s->uid || privileged(fs, uid);
}

gboolean
ctl_scratch_dir(CtlFs *fs, CtlObject *dir)
{
  if (ctl_node_at(fs, dir, 0))
    return FALSE;   /* a file */
  if (ctl_node_children(fs, dir) == CTL_CHILDREN_CREATE)
    return TRUE;
  guint n;
  const CtlNode *nodes = ctl_nodes(fs, dir, &n);
  for (guint i = 0; i < n; i++)
    if (nodes[i].store)
      return TRUE;
  return FALSE;
}

gboolean
ctl_scratch_named(CtlFs *fs, CtlObject *dir, const char *name)
{
  return named(fs->scratch, dir->key, name) != NULL;
}

/* ---- attributes and entries ---- */

static void
scratch_stat(const Scratch *s, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_ino = s->ino;
  st->st_mode = S_IFREG | s->mode;
  st->st_nlink = s->dir >= 0 ? 1 : 0;
  st->st_uid = s->uid;
  st->st_gid = s->gid;
  st->st_size = s->data->len;
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
  st->st_atim = s->atime;
  st->st_mtim = s->mtime;
  st->st_ctim = s->ctime;
}

static void
scratch_entry(const Scratch *s, struct fuse_entry_param *e)
{
  memset(e, 0, sizeof *e);
  scratch_stat(s, &e->attr);
  e->ino = s->ino;
  e->attr_timeout = 0.0;
  e->entry_timeout = 0.0;
}

gboolean
ctl_scratch_lookup(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name)
{
  Scratch *s = named(fs->scratch, dir->key, name);
  if (!s)
    return FALSE;
  struct fuse_entry_param e;
  scratch_entry(s, &e);
  fuse_reply_entry(req, &e);
  return TRUE;
}

void
ctl_scratch_list(CtlFs *fs, CtlObject *dir,
                 void (*add)(gpointer data, const char *name, fuse_ino_t ino, mode_t mode),
                 gpointer data)
{
  GPtrArray *mine = g_ptr_array_new();
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, fs->scratch->by_name);
  while (g_hash_table_iter_next(&it, NULL, &value))
    if (((Scratch *) value)->dir == dir->key)
      g_ptr_array_add(mine, value);
  for (guint i = 0; i < mine->len; i++) {
    Scratch *s = mine->pdata[i];
    add(data, s->name, s->ino, S_IFREG | s->mode);
  }
  g_ptr_array_free(mine, TRUE);
}

/* ---- create, unlink ---- */

static void
open_reply(CtlFs *fs, fuse_req_t req, Scratch *s, struct fuse_file_info *fi,
           const struct fuse_entry_param *e)
{
  s->refs++;
  fi->fh = (uint64_t) (uintptr_t) s;
  fi->direct_io = 1;
  int rc = e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi);
  if (rc != 0)   /* the caller is gone: no release will come */
    unref(fs->scratch, s);
}

void
ctl_scratch_create(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name, mode_t mode,
                   struct fuse_file_info *fi)
{
  CtlScratch *sc = fs->scratch;
  CtlObject *owner = ctl_fs_files_owner(fs, dir);
  if (!ctl_fs_authorize(fs, req, CTL_ACCESS_READ, owner, "create", name))
    return;
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  if (count_of(sc, ctx->uid) >= CTL_SCRATCH_MAX_FILES) {
    char *why = g_strdup_printf("this user already has %d scratch files (at most %d per user:"
                                " remove or rename some)", CTL_SCRATCH_MAX_FILES,
                                CTL_SCRATCH_MAX_FILES);
    ctl_fs_refuse(fs, req, owner, CTL_ACCESS_COMMAND, EDQUOT, why, "create %s", name);
    g_free(why);
    return;
  }
  Scratch *s = g_new0(Scratch, 1);
  s->ino = sc->next++;
  s->uid = ctx->uid;
  s->gid = ctx->gid;
  s->mode = mode & 07777;
  s->data = g_byte_array_new();
  now(&s->atime);
  s->mtime = s->ctime = s->atime;
  s->refs = 1;
  g_hash_table_insert(sc->by_ino, &s->ino, s);
  count_add(sc, s->uid, 1);
  set_name(sc, s, dir->key, name);
  struct fuse_entry_param e;
  scratch_entry(s, &e);
  if (fi)
    open_reply(fs, req, s, fi, &e);
  else
    fuse_reply_entry(req, &e);
}

gboolean
ctl_scratch_unlink(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name)
{
  Scratch *s = named(fs->scratch, dir->key, name);
  if (!s)
    return FALSE;
  if (!may_touch(fs, req, s)) {
    ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EPERM,
                  "a scratch file is removed by its creator only", "unlink %s", name);
    return TRUE;
  }
  unname(fs->scratch, s);
  fuse_reply_err(req, 0);
  return TRUE;
}

/* ---- rename ---- */

typedef struct {
  fuse_req_t req;
} RenameReply;

/* The write's answer is the rename's. */
static void
rename_written(int err, gpointer data)
{
  RenameReply *r = data;
  fuse_reply_err(r->req, err);
  g_free(r);
}

/* "NAME", or the path from the mount for another directory than FROM's. */
static char *
target_text(CtlObject *from, CtlObject *to, const char *name)
{
  if (from == to)
    return g_strdup(name);
  char *dir = ctl_model_path(to);
  char *text = g_strdup_printf("%s%s%s", dir, *dir ? "/" : "", name);
  g_free(dir);
  return text;
}

gboolean
ctl_scratch_rename(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name,
                   CtlObject *newdir, const char *newname, unsigned int flags)
{
  CtlScratch *sc = fs->scratch;
  Scratch *s = named(sc, dir->key, name);
  if (!s)
    return FALSE;
  CtlObject *owner = ctl_fs_files_owner(fs, dir);
  CtlObject *new_owner = ctl_fs_files_owner(fs, newdir);
  char *to = target_text(dir, newdir, newname);
  if (flags & ~RENAME_NOREPLACE) {
    ctl_fs_refuse(fs, req, owner, CTL_ACCESS_COMMAND, EINVAL,
                  "only plain renames are supported (no RENAME_EXCHANGE or RENAME_WHITEOUT)",
                  "rename %s %s", name, to);
    goto done;
  }
  if (!may_touch(fs, req, s)) {
    ctl_fs_refuse(fs, req, owner, CTL_ACCESS_COMMAND, EPERM,
                  "a scratch file is renamed by its creator only", "rename %s %s", name, to);
    goto done;
  }
  /* The target: one of NEWDIR's files, a file that is an object, another
   * scratch file, or a free name. */
  guint slot;
  int err;
  CtlObject *obj = newdir;
  const CtlNode *node = ctl_node_find(fs, newdir, newname, &slot);
  CtlObject *child = node ? NULL : ctl_model_child(newdir, newname);
  if (child) {
    node = ctl_node_at(fs, child, 0);
    obj = child;
    if (!node) {
      ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, newdir), CTL_ACCESS_COMMAND, EISDIR,
                    "the target is a directory", "rename %s %s", name, to);
      goto done;
    }
  }
  Scratch *other = node ? NULL : named(sc, newdir->key, newname);
  if (!node && !other && ctl_node_children(fs, newdir) == CTL_CHILDREN_CREATE) {
    /* A free name where creating a file declares one: what `echo VALUE >
     * NAME` does, create then write (Ansible's copy to a new file). */
    CtlCaller who;
    ctl_fs_caller(fs, req, &who);
    err = ctl_engine_create(fs->engine, newdir, newname, &who, &child);
    ctl_caller_clear(&who);
    if (err) {
      fuse_reply_err(req, err);
      goto done;
    }
    obj = child;
    node = ctl_node_at(fs, child, 0);
  } else if (node && (flags & RENAME_NOREPLACE)) {
    fuse_reply_err(req, EEXIST);
    goto done;
  }
  if (node) {
    if (!node->store) {
      char *why = g_strdup_printf("%s is read-only: only writable files take a scratch file's"
                                  " content", newname);
      ctl_fs_refuse(fs, req, new_owner, CTL_ACCESS_COMMAND, EPERM, why, "rename %s %s", name,
                    to);
      g_free(why);
      goto done;
    }
    /* A write of the whole content, checked, audited and answered as a
     * write() is; the scratch file is gone whatever its outcome. */
    GByteArray *content = g_byte_array_ref(s->data);
    unname(sc, s);
    CtlCaller who;
    ctl_fs_caller(fs, req, &who);
    ctl_caller_resolve(&who);
    RenameReply *r = g_new(RenameReply, 1);
    r->req = req;
    node->store(fs->engine, obj, content->len ? (const char *) content->data : "",
                content->len, 0, &who, rename_written, r);
    ctl_caller_clear(&who);
    g_byte_array_unref(content);
    goto done;
  }
  if (other && other != s) {
    if (flags & RENAME_NOREPLACE) {
      fuse_reply_err(req, EEXIST);
      goto done;
    }
    if (!may_touch(fs, req, other)) {
      ctl_fs_refuse(fs, req, new_owner, CTL_ACCESS_COMMAND, EPERM,
                    "the target is another user's scratch file", "rename %s %s", name, to);
      goto done;
    }
  }
  if (!ctl_scratch_dir(fs, newdir)) {
    ctl_fs_refuse(fs, req, new_owner, CTL_ACCESS_COMMAND, EPERM,
                  "scratch files live only in directories with writable files",
                  "rename %s %s", name, to);
    goto done;
  }
  if (other && other != s)
    unname(sc, other);
  char *key = name_key(s->dir, s->name);
  g_hash_table_remove(sc->by_name, key);
  g_free(key);
  set_name(sc, s, newdir->key, newname);
  now(&s->ctime);
  fuse_reply_err(req, 0);
done:
  g_free(to);
  return TRUE;
}

/* ---- the file operations of scratch inodes ---- */

static gboolean
is_scratch(fuse_ino_t ino)
{
  return ino >= SCRATCH_INO_FIRST;
}

static Scratch *
scratch_of(fuse_req_t req, fuse_ino_t ino)
{
  CtlFs *fs = fuse_req_userdata(req);
  Scratch *s = by_ino(fs->scratch, ino);
  if (!s)
    fuse_reply_err(req, ENOENT);
  return s;
}

static void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (!is_scratch(ino)) {
    next_ops.getattr(req, ino, fi);
    return;
  }
  Scratch *s = scratch_of(req, ino);
  if (!s)
    return;
  struct stat st;
  scratch_stat(s, &st);
  fuse_reply_attr(req, &st, 0.0);
}

/* Past the size limit: EFBIG, logged once per file (a runaway writer would
 * otherwise fill the log). */
static gboolean
too_big(CtlFs *fs, fuse_req_t req, Scratch *s, gint64 size)
{
  if (size <= CTL_SCRATCH_MAX_BYTES)
    return FALSE;
  CtlObject *dir = s->dir >= 0 ? ctl_model_by_key(fs->model, s->dir) : NULL;
  if (dir && !s->efbig_told) {
    s->efbig_told = TRUE;
    char *why = g_strdup_printf("a scratch file holds at most %d bytes",
                                CTL_SCRATCH_MAX_BYTES);
    ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EFBIG, why,
                  "write %s", s->name);
    g_free(why);
  } else {
    fuse_reply_err(req, EFBIG);
  }
  return TRUE;
}

static void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
           struct fuse_file_info *fi)
{
  if (!is_scratch(ino)) {
    next_ops.setattr(req, ino, attr, to_set, fi);
    return;
  }
  CtlFs *fs = fuse_req_userdata(req);
  Scratch *s = scratch_of(req, ino);
  if (!s)
    return;
  if (!may_touch(fs, req, s)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  if ((to_set & FUSE_SET_ATTR_SIZE) && too_big(fs, req, s, attr->st_size))
    return;
  struct timespec t;
  now(&t);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    g_byte_array_set_size(s->data, attr->st_size);   /* new bytes: zeros */
    s->mtime = t;
  }
  if (to_set & FUSE_SET_ATTR_MODE)
    s->mode = attr->st_mode & 07777;
  /* FUSE_SET_ATTR_UID/GID: accepted, changes nothing (see the top). */
  if (to_set & FUSE_SET_ATTR_ATIME_NOW)
    s->atime = t;
  else if (to_set & FUSE_SET_ATTR_ATIME)
    s->atime = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW)
    s->mtime = t;
  else if (to_set & FUSE_SET_ATTR_MTIME)
    s->mtime = attr->st_mtim;
  s->ctime = t;
  struct stat st;
  scratch_stat(s, &st);
  fuse_reply_attr(req, &st, 0.0);
}

static void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (!is_scratch(ino)) {
    next_ops.open(req, ino, fi);
    return;
  }
  CtlFs *fs = fuse_req_userdata(req);
  Scratch *s = scratch_of(req, ino);
  if (!s)
    return;
  if (!may_touch(fs, req, s)) {
    fuse_reply_err(req, EACCES);
    return;
  }
  open_reply(fs, req, s, fi, NULL);
}

static void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  if (!is_scratch(ino)) {
    next_ops.read(req, ino, size, off, fi);
    return;
  }
  Scratch *s = (Scratch *) (uintptr_t) fi->fh;
  now(&s->atime);
  if (off < 0 || (gsize) off >= s->data->len) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  fuse_reply_buf(req, (const char *) s->data->data + off, MIN(size, s->data->len - (gsize) off));
}

static void
op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  if (!is_scratch(ino)) {
    next_ops.write(req, ino, buf, size, off, fi);
    return;
  }
  CtlFs *fs = fuse_req_userdata(req);
  Scratch *s = (Scratch *) (uintptr_t) fi->fh;
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (too_big(fs, req, s, (gint64) off + (gint64) size))
    return;
  if ((gsize) off + size > s->data->len)
    g_byte_array_set_size(s->data, off + size);
  memcpy(s->data->data + off, buf, size);
  now(&s->mtime);
  s->ctime = s->mtime;
  fuse_reply_write(req, size);
}

static void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (!is_scratch(ino)) {
    next_ops.release(req, ino, fi);
    return;
  }
  CtlFs *fs = fuse_req_userdata(req);
  unref(fs->scratch, (Scratch *) (uintptr_t) fi->fh);
  fuse_reply_err(req, 0);
}

/* Everything is in memory (scratch files) or committed before write()
 * returned (the daemon's files): nothing to flush or sync. */
static void
op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (!is_scratch(ino) && next_ops.flush)
    next_ops.flush(req, ino, fi);
  else
    fuse_reply_err(req, 0);
}

static void
op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
  if (!is_scratch(ino) && next_ops.fsync)
    next_ops.fsync(req, ino, datasync, fi);
  else
    fuse_reply_err(req, 0);
}

static void
op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct fuse_pollhandle *ph)
{
  if (!is_scratch(ino)) {
    next_ops.poll(req, ino, fi, ph);
    return;
  }
  if (ph)
    fuse_pollhandle_destroy(ph);   /* a scratch file never changes by itself */
  fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

void
ctl_fs_scratch_ops(struct fuse_lowlevel_ops *ops)
{
  next_ops = *ops;
  ops->getattr = op_getattr;
  ops->setattr = op_setattr;
  ops->open = op_open;
  ops->read = op_read;
  ops->write = op_write;
  ops->release = op_release;
  ops->flush = op_flush;
  ops->fsync = op_fsync;
  ops->poll = op_poll;
}
