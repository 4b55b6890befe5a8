/* Inode numbers and directory operations: lookup, getattr, readdir, mkdir,
 * rmdir. Inodes are derived from object keys, so there is no inode table to
 * keep and forget() has nothing to do. */
#include "fs-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>


/* The kernel may cache entries and attributes for a second: a mkdir/rmdir it
 * sees itself, and every change the daemon makes to a file invalidates that
 * file's attributes at once (notify.c), so a size is never stale after an
 * event. Only a status's heartbeat_age_ms moves on its own, and with direct_io
 * a read never trusts the cached size anyway. */
#define DIR_TIMEOUT  1.0
#define FILE_TIMEOUT 1.0

fuse_ino_t
ctl_ino(CtlObject *obj, guint slot)
{
  return (fuse_ino_t) obj->key * 16 + slot + 1;
}

CtlObject *
ctl_ino_object(CtlFs *fs, fuse_ino_t ino, guint *slot)
{
  if (ino == 0)
    return NULL;
  *slot = (guint) ((ino - 1) % 16);
  CtlObject *obj = ctl_model_by_key(fs->model, (gint64) ((ino - 1) / 16));
  if (!obj)
    return NULL;
  guint n;
  ctl_nodes(fs, obj, &n);
  return *slot <= n ? obj : NULL;
}

void
ctl_fs_stat(CtlFs *fs, CtlObject *obj, guint slot, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_ino = ctl_ino(obj, slot);
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  /* Times are those of the last change (ls -l, make, stat() pollers); no
   * access time is kept, so atime shows the same. */
  st->st_mtim = fs->mount_time;
  ctl_notify_changed_at(fs->notify, obj, slot, &st->st_mtim);
  st->st_atim = st->st_ctim = st->st_mtim;
  const CtlNode *node = ctl_node_at(fs, obj, slot);
  const CtlPolicy *policy = ctl_engine_config(fs->engine)->policy;
  CtlObject *rt = ctl_model_runtime_of(obj);
  if (!node) {
    /* mkdir declares (declare access); creating a file is a command */
    CtlChildren how = ctl_node_children(fs, obj);
    /* A scratch file (scratch.c) is made to be renamed over a writable file:
     * a command. (No sticky bit: under default_permissions the kernel would
     * then refuse to replace `state`, which is not the caller's.) */
    CtlAccess write = how == CTL_CHILDREN_MKDIR ? CTL_ACCESS_DECLARE
                      : how == CTL_CHILDREN_CREATE || ctl_scratch_dir(fs, obj) ? CTL_ACCESS_COMMAND
                      : CTL_ACCESS_COUNT;
    st->st_mode = S_IFDIR | ctl_policy_mode(policy, rt ? rt->name : NULL, CTL_ACCESS_READ,
                                            write, TRUE, &st->st_gid);
    st->st_nlink = 2 + (obj->children ? g_hash_table_size(obj->children) : 0);
    return;
  }
  st->st_mode = (node->mode & S_IFMT)
                | ctl_policy_mode(policy, rt ? rt->name : NULL, CTL_ACCESS_READ,
                                  node->store ? CTL_ACCESS_COMMAND : CTL_ACCESS_COUNT, FALSE,
                                  &st->st_gid);
  st->st_nlink = 1;
  if (node->stream) {
    st->st_size = ctl_model_log_size(fs->model, obj);
  } else {
    /* Value files are small: their size is their current text. */
    GString *text = g_string_new(NULL);
    node->show(fs->engine, obj, text);
    st->st_size = ctl_fs_emptied(fs, ctl_ino(obj, slot)) ? 0 : text->len;
    g_string_free(text, TRUE);
  }
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
}

static void
reply_entry(CtlFs *fs, fuse_req_t req, CtlObject *obj, guint slot)
{
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  ctl_fs_stat(fs, obj, slot, &e.attr);
  e.ino = e.attr.st_ino;
  e.attr_timeout = slot == 0 ? DIR_TIMEOUT : FILE_TIMEOUT;
  e.entry_timeout = DIR_TIMEOUT;
  if (fuse_reply_entry(req, &e) == 0)
    ctl_notify_looked_up(fs->notify, e.ino, 1);
}

CtlObject *
ctl_fs_dir(CtlFs *fs, fuse_req_t req, fuse_ino_t ino)
{
  guint slot;
  CtlObject *obj = ctl_ino_object(fs, ino, &slot);
  if (obj && slot == 0 && !ctl_node_at(fs, obj, 0))
    return obj;
  fuse_reply_err(req, obj ? ENOTDIR : ENOENT);
  return NULL;
}

CtlObject *
ctl_fs_object(CtlFs *fs, fuse_req_t req, fuse_ino_t ino, guint *slot)
{
  CtlObject *obj = ctl_ino_object(fs, ino, slot);
  if (!obj)
    fuse_reply_err(req, ENOENT);
  return obj;
}

void
ctl_fs_caller(CtlFs *fs, fuse_req_t req, CtlCaller *who)
{
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  memset(who, 0, sizeof *who);
  who->uid = ctx->uid;
  who->gid = ctx->gid;
  who->pid = ctx->pid;
  /* Supplementary groups cost a read of /proc: only when a group can matter. */
  if (ctx->uid != 0 && ctl_policy_uses_groups(ctl_engine_config(fs->engine)->policy)) {
    gid_t groups[64];
    int n = fuse_req_getgroups(req, G_N_ELEMENTS(groups), groups);
    if (n > 0) {
      who->ngroups = MIN(n, (int) G_N_ELEMENTS(groups));
      who->groups = g_memdup2(groups, who->ngroups * sizeof(gid_t));
    }
  }
}

gboolean
ctl_fs_authorize(CtlFs *fs, fuse_req_t req, CtlAccess access, CtlObject *obj, const char *verb,
                 const char *name)
{
  CtlCaller who;
  ctl_fs_caller(fs, req, &who);
  int err = ctl_engine_authorize(fs->engine, access, obj, verb, name, &who);
  ctl_caller_clear(&who);
  if (err)
    fuse_reply_err(req, err);
  return err == 0;
}

void
ctl_fs_refuse(CtlFs *fs, fuse_req_t req, CtlObject *obj, CtlAccess access, int err,
              const char *reason, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *request = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  CtlCaller who;
  ctl_fs_caller(fs, req, &who);
  ctl_engine_refuse_request(fs->engine, obj, access, err, request, reason, &who);
  ctl_caller_clear(&who);
  g_free(request);
  fuse_reply_err(req, err);
}

CtlObject *
ctl_fs_files_owner(CtlFs *fs, CtlObject *dir)
{
  return ctl_node_children(fs, dir) == CTL_CHILDREN_CREATE && dir->parent ? dir->parent : dir;
}

static void
op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  CtlFs *fs = fuse_req_userdata(req);
  guint slot;
  CtlObject *dir = ctl_fs_dir(fs, req, parent);
  if (!dir)
    return;
  if (ctl_node_find(fs, dir, name, &slot)) {
    reply_entry(fs, req, dir, slot);
    return;
  }
  CtlObject *child = ctl_model_child(dir, name);
  if (!child && ctl_scratch_lookup(fs, req, dir, name))
    return;
  if (!child) {
    /* No negative entry is cached: objects also appear from feedback. */
    fuse_reply_err(req, ENOENT);
    return;
  }
  reply_entry(fs, req, child, 0);
}

static void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  guint slot;
  CtlObject *obj = ctl_fs_object(fs, req, ino, &slot);
  if (!obj)
    return;
  struct stat st;
  ctl_fs_stat(fs, obj, slot, &st);
  fuse_reply_attr(req, &st, slot == 0 ? DIR_TIMEOUT : FILE_TIMEOUT);
}

/* ---- readdir: a listing is built at opendir and served by offset ---- */

typedef struct {
  GByteArray *data;   /* entries as fuse_add_direntry() lays them out */
  GArray     *ends;   /* gsize: where each entry ends (its "next" offset) */
} Listing;

static void
listing_add(Listing *l, fuse_req_t req, const char *name, fuse_ino_t ino, mode_t mode)
{
  struct stat st = { .st_ino = ino, .st_mode = mode };
  size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
  gsize old = l->data->len;
  gsize end = old + need;
  g_byte_array_set_size(l->data, end);
  fuse_add_direntry(req, (char *) l->data->data + old, need, name, &st, end);
  g_array_append_val(l->ends, end);
}

typedef struct {
  Listing   *l;
  fuse_req_t req;
} ListingCtx;

static void
listing_add_scratch(gpointer data, const char *name, fuse_ino_t ino, mode_t mode)
{
  ListingCtx *lc = data;
  listing_add(lc->l, lc->req, name, ino, mode);
}

void
ctl_fs_listing_free(CtlFs *fs, gpointer listing)
{
  Listing *l = listing;
  g_hash_table_remove(fs->open_dirs, l);
  g_byte_array_unref(l->data);
  g_array_unref(l->ends);
  g_free(l);
}

static void
op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = ctl_fs_dir(fs, req, ino);
  if (!dir || !ctl_fs_authorize(fs, req, CTL_ACCESS_READ, dir, "list", NULL))
    return;
  Listing *l = g_new0(Listing, 1);
  l->data = g_byte_array_new();
  l->ends = g_array_new(FALSE, FALSE, sizeof(gsize));
  listing_add(l, req, ".", ino, S_IFDIR);
  listing_add(l, req, "..", dir->parent ? ctl_ino(dir->parent, 0) : ino, S_IFDIR);
  guint n;
  const CtlNode *nodes = ctl_nodes(fs, dir, &n);
  for (guint i = 0; i < n; i++)
    listing_add(l, req, nodes[i].name, ctl_ino(dir, i + 1), nodes[i].mode);
  GPtrArray *children = ctl_model_children_array(dir);
  for (guint i = 0; children && i < children->len; i++) {
    CtlObject *c = children->pdata[i];
    const CtlNode *self = ctl_node_at(fs, c, 0);
    listing_add(l, req, c->name, ctl_ino(c, 0), self ? self->mode : S_IFDIR);
  }
  ListingCtx lc = { l, req };
  ctl_scratch_list(fs, dir, listing_add_scratch, &lc);
  fi->fh = (uint64_t) (uintptr_t) l;
  g_hash_table_add(fs->open_dirs, l);
  if (fuse_reply_open(req, fi) != 0)   /* the caller is gone: no release will come */
    ctl_fs_listing_free(fs, l);
}

static void
op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  Listing *l = (Listing *) (uintptr_t) fi->fh;
  /* Entries are never split: send the whole entries from OFF that fit. */
  gsize end = (gsize) off;
  for (guint i = 0; i < l->ends->len; i++) {
    gsize e = g_array_index(l->ends, gsize, i);
    if (e <= (gsize) off)
      continue;
    if (e - (gsize) off > size)
      break;
    end = e;
  }
  fuse_reply_buf(req, (char *) l->data->data + off, end - (gsize) off);
}

static void
op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  ctl_fs_listing_free(fuse_req_userdata(req), (Listing *) (uintptr_t) fi->fh);
  fuse_reply_err(req, 0);
}

/* ---- mkdir / rmdir ----
 * Both answer once the change is committed: a directory the caller saw
 * created is never lost to a crash. */

typedef struct {
  CtlFs     *fs;
  fuse_req_t req;
  gint64     key;      /* mkdir: the new object; 0 for rmdir */
  gboolean   open;     /* create: reply with the file opened (fi) */
  struct fuse_file_info fi;
} DirReply;

static void
dir_committed(int err, gpointer data)
{
  DirReply *r = data;
  CtlObject *obj = r->key ? ctl_model_by_key(r->fs->model, r->key) : NULL;
  if (err || !r->key) {
    fuse_reply_err(r->req, err);
  } else if (!obj) {
    fuse_reply_err(r->req, ENOENT);   /* removed again before the commit */
  } else if (r->open) {
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    ctl_fs_stat(r->fs, obj, 0, &e.attr);
    e.ino = e.attr.st_ino;
    e.attr_timeout = FILE_TIMEOUT;
    e.entry_timeout = DIR_TIMEOUT;
    ctl_fs_reply_open(r->fs, r->req, obj, 0, &r->fi, &e);
  } else {
    reply_entry(r->fs, r->req, obj, 0);
  }
  g_free(r);
}

static void
reply_when_committed_fi(CtlFs *fs, fuse_req_t req, CtlObject *obj, struct fuse_file_info *fi)
{
  DirReply *r = g_new0(DirReply, 1);
  r->fs = fs;
  r->req = req;
  r->key = obj ? obj->key : 0;
  if (fi) {
    r->open = TRUE;
    r->fi = *fi;
  }
  ctl_engine_after_commit(fs->engine, dir_committed, r);
}

/* Directory operations: core/ authorises and acts, fs/ replies once that
 * is committed. */
static void
reply_dir_op(CtlFs *fs, fuse_req_t req, CtlCaller *who, int err, CtlObject *obj,
             struct fuse_file_info *fi)
{
  ctl_caller_clear(who);
  if (err)
    fuse_reply_err(req, err);
  else
    reply_when_committed_fi(fs, req, obj, fi);
}

static void
op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = ctl_fs_dir(fs, req, parent);
  if (!dir)
    return;
  CtlCaller who;
  ctl_fs_caller(fs, req, &who);
  CtlObject *obj = NULL;
  int err = ctl_engine_mkdir(fs->engine, dir, name, &who, &obj);
  reply_dir_op(fs, req, &who, err, obj, NULL);
}

static void
op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  CtlFs *fs = fuse_req_userdata(req);
  guint slot;
  CtlObject *dir = ctl_ino_object(fs, parent, &slot);
  CtlObject *obj = dir && slot == 0 ? ctl_model_child(dir, name) : NULL;
  if (!obj || ctl_node_at(fs, obj, 0)) {
    gboolean file = obj || (dir && slot == 0 && (ctl_node_find(fs, dir, name, &slot)
                                                 || ctl_scratch_named(fs, dir, name)));
    fuse_reply_err(req, file ? ENOTDIR : ENOENT);
    return;
  }
  CtlCaller who;
  ctl_fs_caller(fs, req, &who);
  int err = ctl_engine_rmdir(fs->engine, obj, &who);
  reply_dir_op(fs, req, &who, err, NULL, NULL);
}

/* The kernel forgets inodes it evicted; an inode it does not know cannot be
 * watched, so notify.c stops raising inotify events for it. */
static void
op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
  CtlFs *fs = fuse_req_userdata(req);
  ctl_notify_looked_up(fs->notify, ino, -(gint64) nlookup);
  fuse_reply_none(req);
}

static void
op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
  CtlFs *fs = fuse_req_userdata(req);
  for (size_t i = 0; i < count; i++)
    ctl_notify_looked_up(fs->notify, forgets[i].ino, -(gint64) forgets[i].nlookup);
  fuse_reply_none(req);
}

/* The directory PARENT, or NULL after replying ENOENT or ENOTDIR. */
static CtlObject *
dir_of(CtlFs *fs, fuse_req_t req, fuse_ino_t parent)
{
  guint slot;
  CtlObject *dir = ctl_ino_object(fs, parent, &slot);
  if (!dir || slot != 0 || ctl_node_at(fs, dir, 0)) {
    fuse_reply_err(req, dir ? ENOTDIR : ENOENT);
    return NULL;
  }
  return dir;
}

/* Does DIR have anything called NAME: a file, an object, a scratch file? */
static gboolean
taken(CtlFs *fs, CtlObject *dir, const char *name)
{
  guint slot;
  return ctl_node_find(fs, dir, name, &slot) || ctl_model_child(dir, name)
         || ctl_scratch_named(fs, dir, name);
}

/* The daemon's files and objects keep their names: only scratch files
 * (scratch.c) and, in a directory whose children come by create (its type
 * says so), files that are objects are created and removed: creating one
 * declares it, unlink forgets it. Each refusal is logged with its reason on
 * the directory's object (ctl_fs_refuse). */
static void
op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = dir_of(fs, req, parent);
  if (!dir || ctl_scratch_unlink(fs, req, dir, name))
    return;
  guint slot;
  CtlObject *obj = ctl_model_child(dir, name);
  if (obj && !ctl_node_at(fs, obj, 0)) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (!obj) {
    if (ctl_node_find(fs, dir, name, &slot))
      ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EPERM,
                    "the daemon's files cannot be removed", "unlink %s", name);
    else
      fuse_reply_err(req, ENOENT);
    return;
  }
  CtlCaller who;
  ctl_fs_caller(fs, req, &who);
  int err = ctl_engine_unlink(fs->engine, obj, &who);
  reply_dir_op(fs, req, &who, err, NULL, NULL);
}

/* A new file (create, or mknod); FI set: open it too. */
static void
create_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
            struct fuse_file_info *fi)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = dir_of(fs, req, parent);
  if (!dir)
    return;
  if (taken(fs, dir, name)) {
    fuse_reply_err(req, EEXIST);
    return;
  }
  gboolean declares = ctl_node_children(fs, dir) == CTL_CHILDREN_CREATE;
  if (!S_ISREG(mode)) {
    ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EPERM,
                  "only regular files can be created", "mknod %s", name);
    return;
  }
  /* Where creating declares, a temporary-file helper's O_EXCL makes a
   * scratch file instead: `echo 1 > NAME` declares, mkstemp() does not. */
  if (declares && !(fi && (fi->flags & O_EXCL))) {
    CtlCaller who;
    ctl_fs_caller(fs, req, &who);
    CtlObject *obj = NULL;
    int err = ctl_engine_create(fs->engine, dir, name, &who, &obj);
    reply_dir_op(fs, req, &who, err, obj, fi);
    return;
  }
  if (!ctl_scratch_dir(fs, dir)) {
    ctl_fs_refuse(fs, req, dir, CTL_ACCESS_COMMAND, EPERM,
                  "files are created only in a directory with a writable file (a scratch"
                  " file, to be renamed over it)", "create %s", name);
    return;
  }
  ctl_scratch_create(fs, req, dir, name, mode, fi);
}

static void
op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
          struct fuse_file_info *fi)
{
  create_file(req, parent, name, mode, fi);
}

static void
op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
  create_file(req, parent, name, mode, NULL);
}

/* Only a scratch file moves (scratch.c): over a writable file it is a write
 * of its content; anything else keeps its name. */
static void
op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
          const char *newname, unsigned int flags)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = dir_of(fs, req, parent);
  if (!dir)
    return;
  CtlObject *newdir = dir_of(fs, req, newparent);
  if (!newdir || ctl_scratch_rename(fs, req, dir, name, newdir, newname, flags))
    return;
  guint slot;
  CtlObject *obj = ctl_model_child(dir, name);
  if (!obj && !ctl_node_find(fs, dir, name, &slot)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  char *to = newdir == dir ? g_strdup(newname) : NULL;
  if (!to) {
    char *path = ctl_model_path(newdir);
    to = g_strdup_printf("%s%s%s", path, *path ? "/" : "", newname);
    g_free(path);
  }
  if (obj && !ctl_node_at(fs, obj, 0))
    ctl_fs_refuse(fs, req, dir, CTL_ACCESS_DECLARE, EPERM,
                  "objects keep their names: mkdir the new name and rmdir the old",
                  "rename %s %s", name, to);
  else
    ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EPERM,
                  "the daemon's files keep their names: only a scratch file is renamed",
                  "rename %s %s", name, to);
  g_free(to);
}

static void
op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = dir_of(fs, req, parent);
  if (dir)
    ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EPERM,
                  "no symbolic links here", "symlink %s", name);
}

static void
op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
  CtlFs *fs = fuse_req_userdata(req);
  CtlObject *dir = dir_of(fs, req, newparent);
  if (dir)
    ctl_fs_refuse(fs, req, ctl_fs_files_owner(fs, dir), CTL_ACCESS_COMMAND, EPERM,
                  "no hard links here", "link %s", newname);
}

void
ctl_fs_tree_ops(struct fuse_lowlevel_ops *ops)
{
  ops->lookup = op_lookup;
  ops->forget = op_forget;
  ops->forget_multi = op_forget_multi;
  ops->getattr = op_getattr;
  ops->opendir = op_opendir;
  ops->readdir = op_readdir;
  ops->releasedir = op_releasedir;
  ops->mkdir = op_mkdir;
  ops->rmdir = op_rmdir;
  ops->unlink = op_unlink;
  ops->rename = op_rename;
  ops->mknod = op_mknod;
  ops->create = op_create;
  ops->symlink = op_symlink;
  ops->link = op_link;
}
