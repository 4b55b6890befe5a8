/* ctlfs-minfs: the floor for ctlfs-bench. A FUSE filesystem with ctlfs's tree
 * shape that answers every request from constant text, so that what the bench
 * measures on it is the kernel and libfuse round trip and nothing else.
 *
 *   ctlfs-minfs [--resources=N] [--entry-timeout=S] [--attr-timeout=S] MOUNTPOINT
 *
 * Kernel cache settings are options, not constants: the comparison with ctlfs
 * is fair only when both run with the same ones. */
#define FUSE_USE_VERSION 35

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Fixed inodes; resources follow from INO_RES_BASE, SLOTS inodes each (their
 * directory, then its files), so a name maps to an inode and back in O(1). */
enum {
  INO_ROOT = FUSE_ROOT_ID,
  INO_README,
  INO_STATUS,
  INO_LOG,
  INO_METRICS,
  INO_RUNTIMES,
  INO_RT1,
  INO_RT1_STATUS,
  INO_RT1_LOG,
  INO_FIXED_END,
  INO_RES_BASE = 16,
};

#define DIR_MODE (S_IFDIR | 0755)
#define RO_MODE  (S_IFREG | 0444)
#define RW_MODE  (S_IFREG | 0664)

static const char README_TEXT[] =
  "ctlfs-minfs: a constant in-memory tree with ctlfs's shape, used as the\n"
  "baseline of ctlfs-bench. Writes to state are accepted and ignored.\n";

/* About the size of a ctlfs status file, so reads move as many bytes. */
static const char STATUS_TEXT[] =
  "kind: resource\n"
  "state: running\n"
  "observed: running\n"
  "converged: yes\n"
  "pending: none\n"
  "last-command: none\n"
  "last-error: none\n"
  "updated: 2026-01-01T00:00:00.000Z\n";

static const char METRICS_TEXT[] =
  "requests: 0\n"
  "pending: 0\n";

static const char RUNNING_TEXT[] = "running\n";

typedef struct {
  const char *name;
  fuse_ino_t  parent;
  mode_t      mode;
  const char *text;   /* NULL for directories */
} Node;

/* Indexed by inode. */
static const Node fixed_nodes[INO_FIXED_END] = {
  [INO_ROOT]       = { "",         INO_ROOT,     DIR_MODE, NULL },
  [INO_README]     = { "README",   INO_ROOT,     RO_MODE,  README_TEXT },
  [INO_STATUS]     = { "status",   INO_ROOT,     RO_MODE,  STATUS_TEXT },
  [INO_LOG]        = { "log",      INO_ROOT,     RO_MODE,  "" },
  [INO_METRICS]    = { "metrics",  INO_ROOT,     RO_MODE,  METRICS_TEXT },
  [INO_RUNTIMES]   = { "runtimes", INO_ROOT,     DIR_MODE, NULL },
  [INO_RT1]        = { "rt1",      INO_RUNTIMES, DIR_MODE, NULL },
  [INO_RT1_STATUS] = { "status",   INO_RT1,      RO_MODE,  STATUS_TEXT },
  [INO_RT1_LOG]    = { "log",      INO_RT1,      RO_MODE,  "" },
};

/* A resource's inodes by slot; slot 0 is its directory (name and parent are
 * per resource, filled in by describe()). */
enum { SLOT_DIR, SLOT_STATE, SLOT_OBSERVED, SLOT_STATUS, SLOT_LOG, SLOTS };

static const Node slot_nodes[SLOTS] = {
  [SLOT_DIR]      = { NULL,       0, DIR_MODE, NULL },
  [SLOT_STATE]    = { "state",    0, RW_MODE,  RUNNING_TEXT },
  [SLOT_OBSERVED] = { "observed", 0, RO_MODE,  RUNNING_TEXT },
  [SLOT_STATUS]   = { "status",   0, RO_MODE,  STATUS_TEXT },
  [SLOT_LOG]      = { "log",      0, RO_MODE,  "" },
};

typedef struct {
  guint64         resources;
  double          entry_timeout;
  double          attr_timeout;
  struct timespec mount_time;
  uid_t           uid;
  gid_t           gid;
} MinFs;

/* ---- the inode scheme ---- */

static fuse_ino_t
resource_ino(guint64 index, unsigned slot)
{
  return INO_RES_BASE + index * SLOTS + slot;
}

/* What INO is; FALSE if no such inode. */
static bool
describe(const MinFs *fs, fuse_ino_t ino, Node *out)
{
  if (ino >= INO_ROOT && ino < INO_FIXED_END) {
    *out = fixed_nodes[ino];
    return true;
  }
  if (ino < INO_RES_BASE || (ino - INO_RES_BASE) / SLOTS >= fs->resources)
    return false;
  unsigned slot = (ino - INO_RES_BASE) % SLOTS;
  *out = slot_nodes[slot];
  out->parent = slot == SLOT_DIR ? INO_RT1 : ino - slot;
  return true;
}

/* "r<index>" with the index as printed by "%" G_GUINT64_FORMAT (no leading
 * zeros), so that every resource has exactly one name. */
static bool
parse_resource(const MinFs *fs, const char *name, guint64 *index)
{
  if (name[0] != 'r' || !g_ascii_isdigit(name[1]) || (name[1] == '0' && name[2]))
    return false;
  guint64 value = 0;
  for (const char *p = name + 1; *p; p++) {
    if (!g_ascii_isdigit(*p) || value >= fs->resources)
      return false;   /* the bound check also keeps value * 10 from overflowing */
    value = value * 10 + (guint64) (*p - '0');
  }
  if (value >= fs->resources)
    return false;
  *index = value;
  return true;
}

/* The child NAME of directory PARENT (known to be one), or 0. */
static fuse_ino_t
child_ino(const MinFs *fs, fuse_ino_t parent, const char *name)
{
  if (parent >= INO_RES_BASE) {
    for (unsigned slot = SLOT_DIR + 1; slot < SLOTS; slot++)
      if (strcmp(name, slot_nodes[slot].name) == 0)
        return parent + slot;
    return 0;
  }
  for (fuse_ino_t ino = INO_ROOT + 1; ino < INO_FIXED_END; ino++)
    if (fixed_nodes[ino].parent == parent && strcmp(name, fixed_nodes[ino].name) == 0)
      return ino;
  guint64 index;
  if (parent == INO_RT1 && parse_resource(fs, name, &index))
    return resource_ino(index, SLOT_DIR);
  return 0;
}

static MinFs *
minfs_of(fuse_req_t req)
{
  return fuse_req_userdata(req);
}

static void
fill_stat(const MinFs *fs, fuse_ino_t ino, const Node *node, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = node->mode;
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  /* Directories count their subdirectories' ".." links, as a disk fs would. */
  if (ino == INO_RT1)
    st->st_nlink = 2 + (nlink_t) fs->resources;
  else if (ino == INO_ROOT || ino == INO_RUNTIMES)
    st->st_nlink = 3;
  else
    st->st_nlink = S_ISDIR(node->mode) ? 2 : 1;
  st->st_size = node->text ? (off_t) strlen(node->text) : 0;
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
  st->st_atim = st->st_mtim = st->st_ctim = fs->mount_time;
}

/* ---- inode operations ---- */

static void
op_init(void *userdata, struct fuse_conn_info *conn)
{
  /* As ctlfs does: an O_TRUNC open costs a separate setattr there, so it must
   * here too for the two to be compared request for request. */
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

static void
op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  MinFs *fs = minfs_of(req);
  Node node;
  if (!describe(fs, parent, &node) || !S_ISDIR(node.mode)) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_ino_t ino = child_ino(fs, parent, name);
  if (!ino || !describe(fs, ino, &node)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = ino;
  fill_stat(fs, ino, &node, &e.attr);
  e.entry_timeout = fs->entry_timeout;
  e.attr_timeout = fs->attr_timeout;
  fuse_reply_entry(req, &e);
}

static void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  MinFs *fs = minfs_of(req);
  Node node;
  if (!describe(fs, ino, &node)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fill_stat(fs, ino, &node, &st);
  fuse_reply_attr(req, &st, fs->attr_timeout);
}

/* Only state is writable; a truncate or chmod on it is accepted and changes
 * nothing, like a write. */
static void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
           struct fuse_file_info *fi)
{
  MinFs *fs = minfs_of(req);
  Node node;
  if (!describe(fs, ino, &node)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (node.mode != RW_MODE) {
    fuse_reply_err(req, EACCES);
    return;
  }
  struct stat st;
  fill_stat(fs, ino, &node, &st);
  fuse_reply_attr(req, &st, fs->attr_timeout);
}

/* ---- files ---- */

static void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  MinFs *fs = minfs_of(req);
  Node node;
  if (!describe(fs, ino, &node)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (S_ISDIR(node.mode)) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY && node.mode != RW_MODE) {
    fuse_reply_err(req, EACCES);
    return;
  }
  /* ctlfs generates values per read and bypasses the page cache; so do we, or
   * a cached read here would be compared with a request there. */
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

static void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  MinFs *fs = minfs_of(req);
  Node node;
  if (!describe(fs, ino, &node) || !node.text) {
    fuse_reply_err(req, EIO);
    return;
  }
  size_t len = strlen(node.text);
  if (off < 0 || (size_t) off >= len) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  size_t n = len - (size_t) off;
  fuse_reply_buf(req, node.text + off, n < size ? n : size);
}

static void
op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  /* open() let only state through for writing; its value never changes. */
  fuse_reply_write(req, size);
}

/* ---- directories: the listing is laid out once at opendir ---- */

typedef struct {
  char   *data;    /* entries as fuse_add_direntry() lays them out */
  size_t  len;
  size_t  cap;
  size_t *ends;    /* ends[i]: where entry i ends, i.e. the offset after it */
  size_t  count;
  size_t  ends_cap;
} Listing;

static void
listing_add(Listing *l, fuse_req_t req, const char *name, fuse_ino_t ino, mode_t mode)
{
  size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
  while (l->len + need > l->cap) {
    l->cap = l->cap ? l->cap * 2 : 4096;
    l->data = g_realloc(l->data, l->cap);
  }
  if (l->count == l->ends_cap) {
    l->ends_cap = l->ends_cap ? l->ends_cap * 2 : 64;
    l->ends = g_renew(size_t, l->ends, l->ends_cap);
  }
  struct stat st = { .st_ino = ino, .st_mode = mode };
  size_t end = l->len + need;
  /* Each entry's offset is where the next begins: readdir resumes there. */
  fuse_add_direntry(req, l->data + l->len, need, name, &st, (off_t) end);
  l->len = end;
  l->ends[l->count++] = end;
}

static void
listing_free(Listing *l)
{
  g_free(l->data);
  g_free(l->ends);
  g_free(l);
}

static void
list_children(const MinFs *fs, fuse_req_t req, fuse_ino_t dir, Listing *l)
{
  if (dir >= INO_RES_BASE) {
    for (unsigned slot = SLOT_DIR + 1; slot < SLOTS; slot++)
      listing_add(l, req, slot_nodes[slot].name, dir + slot, slot_nodes[slot].mode);
    return;
  }
  for (fuse_ino_t ino = INO_ROOT + 1; ino < INO_FIXED_END; ino++)
    if (fixed_nodes[ino].parent == dir)
      listing_add(l, req, fixed_nodes[ino].name, ino, fixed_nodes[ino].mode);
  if (dir != INO_RT1)
    return;
  char name[32];
  for (guint64 i = 0; i < fs->resources; i++) {
    g_snprintf(name, sizeof name, "r%" G_GUINT64_FORMAT, i);
    listing_add(l, req, name, resource_ino(i, SLOT_DIR), DIR_MODE);
  }
}

static void
op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  MinFs *fs = minfs_of(req);
  Node node;
  if (!describe(fs, ino, &node)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (!S_ISDIR(node.mode)) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  Listing *l = g_new0(Listing, 1);
  listing_add(l, req, ".", ino, DIR_MODE);
  listing_add(l, req, "..", node.parent, DIR_MODE);
  list_children(fs, req, ino, l);
  fi->fh = (uint64_t) (uintptr_t) l;
  if (fuse_reply_open(req, fi) != 0)
    listing_free(l);   /* interrupted: no releasedir will come for it */
}

/* How many bytes of whole entries, starting at entry boundary FROM, fit in
 * SIZE: the last entry end within from + size, found by bisection since the
 * resource directory has thousands of entries. */
static size_t
whole_entries(const Listing *l, size_t from, size_t size)
{
  size_t lo = 0, hi = l->count;   /* first end > from + size, in [lo, hi] */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->ends[mid] <= from + size)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0 || l->ends[lo - 1] <= from)
    return 0;
  return l->ends[lo - 1] - from;
}

static void
op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  const Listing *l = (const Listing *) (uintptr_t) fi->fh;
  if (off < 0 || (size_t) off >= l->len) {
    fuse_reply_buf(req, NULL, 0);   /* end of directory */
    return;
  }
  fuse_reply_buf(req, l->data + off, whole_entries(l, (size_t) off, size));
}

static void
op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  listing_free((Listing *) (uintptr_t) fi->fh);
  fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops minfs_ops = {
  .init       = op_init,
  .lookup     = op_lookup,
  .getattr    = op_getattr,
  .setattr    = op_setattr,
  .open       = op_open,
  .read       = op_read,
  .write      = op_write,
  .opendir    = op_opendir,
  .readdir    = op_readdir,
  .releasedir = op_releasedir,
};

/* ---- command line and session ---- */

static G_GNUC_NORETURN void
die_usage(const char *message)
{
  fprintf(stderr, "ctlfs-minfs: %s\n", message);
  exit(2);
}

/* Returns the mountpoint; FS gets the options. */
static const char *
parse_options(int *argc, char ***argv, MinFs *fs)
{
  gint64 resources = 10000;
  double entry_timeout = 1.0, attr_timeout = 1.0;
  GOptionEntry entries[] = {
    { "resources", 0, 0, G_OPTION_ARG_INT64, &resources,
      "Resources under runtimes/rt1 (default 10000)", "N" },
    { "entry-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &entry_timeout,
      "Kernel entry cache timeout in seconds (default 1.0)", "S" },
    { "attr-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &attr_timeout,
      "Kernel attribute cache timeout in seconds (default 1.0)", "S" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new("MOUNTPOINT");
  g_option_context_set_summary(ctx, "A constant FUSE tree with ctlfs's shape (benchmark floor).");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  gboolean ok = g_option_context_parse(ctx, argc, argv, &error);
  g_option_context_free(ctx);
  if (!ok) {
    fprintf(stderr, "ctlfs-minfs: %s\n", error->message);
    g_error_free(error);
    exit(2);
  }
  if (*argc != 2)
    die_usage("expected one argument, MOUNTPOINT");
  /* The bound keeps every resource inode well inside fuse_ino_t. */
  if (resources < 0 || resources > G_GINT64_CONSTANT(1) << 40)
    die_usage("--resources is out of range");
  if (!(entry_timeout >= 0) || !(attr_timeout >= 0))
    die_usage("timeouts must be >= 0");
  fs->resources = (guint64) resources;
  fs->entry_timeout = entry_timeout;
  fs->attr_timeout = attr_timeout;
  return (*argv)[1];
}

/* Mounts, serves until unmounted, unmounts: 0 on a clean unmount. */
static int
serve(MinFs *fs, const char *argv0, const char *mountpoint)
{
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&args, argv0);
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, "fsname=ctlfs-minfs,subtype=ctlfs-minfs");
  struct fuse_session *se = fuse_session_new(&args, &minfs_ops, sizeof minfs_ops, fs);
  fuse_opt_free_args(&args);
  if (!se)
    return 1;
  int status = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, mountpoint) == 0) {
      /* One thread, as ctlfs serves its requests from one main loop. */
      int res = fuse_session_loop(se);
      fuse_session_unmount(se);
      /* < 0 is an error; > 0 the signal that stopped us, still a clean end. */
      status = res < 0 ? 1 : 0;
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return status;
}

int
main(int argc, char **argv)
{
  MinFs fs;
  memset(&fs, 0, sizeof fs);
  const char *mountpoint = parse_options(&argc, &argv, &fs);
  fs.uid = getuid();
  fs.gid = getgid();
  clock_gettime(CLOCK_REALTIME, &fs.mount_time);
  return serve(&fs, argv[0], mountpoint);
}
