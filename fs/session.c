/* The FUSE session as a GSource: the /dev/fuse descriptor is non-blocking and
 * read whenever the main loop sees it readable; each request is processed to
 * completion or parked (asynchronous writes) without blocking the loop. */
#include "fs-private.h"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

G_DEFINE_QUARK(ctl-fs-error-quark, ctl_fs_error)
#define CTL_FS_ERROR (ctl_fs_error_quark())

/* Requests handled per wakeup before other sources (Kafka) get their turn. */
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

CtlFs *
ctl_fs_new(CtlEngine *engine, const char *mountpoint, struct fuse_args *args, GMainLoop *loop,
           GError **error)
{
  static struct fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.init = op_init;
  ctl_fs_tree_ops(&ops);
  ctl_fs_file_ops(&ops);

  CtlFs *fs = g_new0(CtlFs, 1);
  fs->engine = engine;
  fs->model = ctl_engine_model(engine);
  fs->loop = loop;
  fs->mountpoint = g_strdup(mountpoint);
  fs->uid = ctl_engine_config(engine)->owner_uid;
  fs->gid = getgid();
  clock_gettime(CLOCK_REALTIME, &fs->mount_time);

  fs->se = fuse_session_new(args, &ops, sizeof ops, fs);
  if (!fs->se) {
    g_set_error(error, CTL_FS_ERROR, 0, "invalid FUSE options");
    ctl_fs_free(fs);
    return NULL;
  }
  if (fuse_session_mount(fs->se, mountpoint) != 0) {
    g_set_error(error, CTL_FS_ERROR, 0, "cannot mount on %s", mountpoint);
    ctl_fs_free(fs);
    return NULL;
  }
  fs->mounted = TRUE;
  int fd = fuse_session_fd(fs->se);
  if (!g_unix_set_fd_nonblocking(fd, TRUE, error)) {
    ctl_fs_free(fs);
    return NULL;
  }
  fs->source = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_fuse_readable, fs);
  return fs;
}

void
ctl_fs_free(CtlFs *fs)
{
  if (!fs)
    return;
  if (fs->source)
    g_source_remove(fs->source);
  if (fs->se) {
    if (fs->mounted)
      fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
  }
  free(fs->buf.mem);
  g_free(fs->mountpoint);
  g_free(fs);
}
