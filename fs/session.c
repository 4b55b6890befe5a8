/* The FUSE session as a GSource: the /dev/fuse descriptor is non-blocking and
 * read whenever the main loop sees it readable; each request is processed to
 * completion or parked (asynchronous writes) without blocking the loop. */
#include "fs-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <glib-unix.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

G_DEFINE_QUARK(ctl-fs-error-quark, ctl_fs_error)
#define CTL_FS_ERROR (ctl_fs_error_quark())

/* Requests handled per wakeup before other sources (the bus) get their turn. */
#define REQUESTS_PER_WAKEUP 64

static void
unmounted(CtlFs *fs)
{
  fs->source = 0;
  if (fs->loop)
    g_main_loop_quit(fs->loop);
}

static gboolean
on_fuse_readable(gint fd, GIOCondition cond, gpointer data)
{
  CtlFs *fs = data;
  for (int i = 0; i < REQUESTS_PER_WAKEUP; i++) {
    int res = fuse_session_receive_buf(fs->se, &fs->buf);
    if (res == -EAGAIN || res == -EINTR)
      break;
    if (res <= 0 || fuse_session_exited(fs->se)) {
      /* ENODEV (0 here): unmounted, by fusermount3 -u or umount. */
      if (res < 0)
        g_warning("fuse: reading requests: %s", g_strerror(-res));
      unmounted(fs);
      return G_SOURCE_REMOVE;
    }
    fuse_session_process_buf(fs->se, &fs->buf);
  }
  if (cond & (G_IO_HUP | G_IO_ERR)) {
    unmounted(fs);
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

static void
op_init(void *userdata, struct fuse_conn_info *conn)
{
  /* No page cache games: values are generated per read (direct_io), and a
   * truncate with O_TRUNC must reach setattr rather than be folded into open. */
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

/* libfuse reports through this, sometimes a line in several pieces. While the
 * session is made, what it says is kept to become our one-line error;
 * otherwise whole lines go to the log. */
static GString *fuse_said;
static gboolean fuse_capture;

static void
on_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
  if (!fuse_said)
    fuse_said = g_string_new(NULL);
  g_string_append_vprintf(fuse_said, fmt, ap);
  char *nl;
  while (!fuse_capture && (nl = strchr(fuse_said->str, '\n')) != NULL) {
    *nl = '\0';
    g_info("fuse: %s", fuse_said->str);
    g_string_erase(fuse_said, 0, nl - fuse_said->str + 1);
  }
}

/* What libfuse said, as one line: its lines joined with "; ", each without
 * the "fuse: " prefix libfuse starts it with (only there: "/dev/fuse: ..."
 * is part of the message) (g_free). */
static char *
fuse_complaint(void)
{
  char *text = g_strdup(fuse_said && fuse_said->len ? fuse_said->str : "rejected by libfuse");
  if (fuse_said)
    g_string_truncate(fuse_said, 0);
  char **lines = g_strsplit(text, "\n", -1);
  GPtrArray *kept = g_ptr_array_new();
  for (char **l = lines; *l; l++) {
    char *line = g_strstrip(*l);
    if (g_str_has_prefix(line, "fuse: "))
      line += strlen("fuse: ");
    if (*line)
      g_ptr_array_add(kept, line);
  }
  g_ptr_array_add(kept, NULL);
  char *joined = g_strjoinv("; ", (char **) kept->pdata);
  g_ptr_array_free(kept, TRUE);
  g_strfreev(lines);
  g_free(text);
  return joined;
}

/* The file system type of the mount at PATH ("fuse.ctlfs"), or NULL when
 * PATH is not a mount point (g_free). From /proc/self/mountinfo: field 5 is
 * the mount point (octal escapes for blanks), the type follows " - ". */
static char *
mounted_type(const char *path)
{
  char *real = realpath(path, NULL);
  char *text = NULL;
  char *type = NULL;
  if (!real || !g_file_get_contents("/proc/self/mountinfo", &text, NULL, NULL)) {
    free(real);
    return NULL;
  }
  char **lines = g_strsplit(text, "\n", -1);
  for (char **l = lines; *l && !type; l++) {
    char **f = g_strsplit(*l, " ", 0);
    if (g_strv_length(f) > 4) {
      char *point = g_strcompress(f[4]);
      const char *dash = strstr(*l, " - ");
      if (strcmp(point, real) == 0 && dash)
        type = g_strndup(dash + 3, strcspn(dash + 3, " "));
      g_free(point);
    }
    g_strfreev(f);
  }
  g_strfreev(lines);
  g_free(text);
  free(real);
  return type;
}

CtlFs *
ctl_fs_new(struct fuse_args *args, GError **error)
{
  static struct fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.init = op_init;
  ctl_fs_tree_ops(&ops);
  ctl_fs_file_ops(&ops);
  ctl_fs_scratch_ops(&ops);   /* last: it serves scratch inodes, passes on the rest */

  CtlFs *fs = g_new0(CtlFs, 1);
  fuse_set_log_func(on_fuse_log);
  fuse_capture = TRUE;
  fs->se = fuse_session_new(args, &ops, sizeof ops, fs);
  fuse_capture = FALSE;
  if (!fs->se) {
    char *why = fuse_complaint();
    g_set_error(error, CTL_FS_ERROR, 0, "invalid mount options: %s", why);
    g_free(why);
    ctl_fs_free(fs);
    return NULL;
  }
  return fs;
}

gboolean
ctl_fs_mount(CtlFs *fs, const char *mountpoint, GError **error)
{
  /* The kernel would stack a second, empty tree over the first one. */
  char *type = mounted_type(mountpoint);
  if (type && g_str_has_prefix(type, "fuse")) {
    g_set_error(error, CTL_FS_ERROR, 0,
                "%s is already a FUSE mount (%s); unmount it first: fusermount3 -u %s",
                mountpoint, type, mountpoint);
    g_free(type);
    return FALSE;
  }
  g_free(type);
  fs->mountpoint = g_strdup(mountpoint);
  clock_gettime(CLOCK_REALTIME, &fs->mount_time);
  fuse_capture = TRUE;
  int res = fuse_session_mount(fs->se, mountpoint);
  fuse_capture = FALSE;
  if (res != 0) {
    char *why = fuse_complaint();
    g_set_error(error, CTL_FS_ERROR, 0, "cannot mount on %s: %s", mountpoint, why);
    g_free(why);
    return FALSE;
  }
  fs->mounted = TRUE;
  return TRUE;
}

gboolean
ctl_fs_serve(CtlFs *fs, CtlEngine *engine, GMainLoop *loop, GError **error)
{
  fs->engine = engine;
  fs->model = ctl_engine_model(engine);
  fs->loop = loop;
  fs->uid = ctl_engine_config(engine)->owner_uid;
  fs->gid = getgid();
  fs->notify = ctl_notify_new(fs);
  fs->scratch = ctl_scratch_new(fs);
  fs->emptied = g_hash_table_new(NULL, NULL);
  fs->writers = g_hash_table_new(NULL, NULL);
  fs->open_files = g_hash_table_new(NULL, NULL);
  fs->open_dirs = g_hash_table_new(NULL, NULL);
  int fd = fuse_session_fd(fs->se);
  if (!g_unix_set_fd_nonblocking(fd, TRUE, error))
    return FALSE;
  fs->source = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_fuse_readable, fs);
  return TRUE;
}

/* Frees what is left in OPEN, a set of handles FREE_ONE removes from it. */
static void
forget_left(CtlFs *fs, GHashTable *open, void (*free_one)(CtlFs *, gpointer))
{
  if (!open)
    return;
  GList *left = g_hash_table_get_keys(open);
  for (GList *l = left; l; l = l->next)
    free_one(fs, l->data);
  g_list_free(left);
}

void
ctl_fs_free(CtlFs *fs)
{
  if (!fs)
    return;
  ctl_notify_stop(fs->notify);   /* no-op when ctl_fs_stop() did it */
  if (fs->source)
    g_source_remove(fs->source);
  /* No request is read any more: releases still on their way never come. */
  forget_left(fs, fs->open_files, ctl_fs_handle_free);
  forget_left(fs, fs->open_dirs, ctl_fs_listing_free);
  if (fs->se) {
    if (fs->mounted)
      fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
  }
  ctl_notify_free(fs->notify);
  ctl_scratch_free(fs->scratch);
  g_clear_pointer(&fs->emptied, g_hash_table_unref);
  g_clear_pointer(&fs->writers, g_hash_table_unref);
  g_clear_pointer(&fs->open_files, g_hash_table_unref);
  g_clear_pointer(&fs->open_dirs, g_hash_table_unref);
  free(fs->buf.mem);
  g_free(fs->mountpoint);
  g_free(fs);
  if (fuse_said) {
    g_string_free(fuse_said, TRUE);
    fuse_said = NULL;
  }
}

void
ctl_fs_stop(CtlFs *fs)
{
  ctl_notify_stop(fs->notify);
}
