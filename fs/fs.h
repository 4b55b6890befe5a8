/* The FUSE side: mounts the engine's model as a tree with the low-level
 * libfuse3 API, driven by the GLib main loop (one thread, no thread per
 * request; writes are answered asynchronously). */
#pragma once
#include <glib.h>
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include "engine.h"

typedef struct CtlFs CtlFs;

/* Creates the session from ARGS, libfuse's own options (-o allow_other, ...),
 * so that a bad option is reported before anything starts. */
CtlFs   *ctl_fs_new(struct fuse_args *args, GError **error);
/* Mounts at MOUNTPOINT, refusing one that is already a FUSE mount; the
 * kernel's requests wait until ctl_fs_serve(). First, so that nothing is
 * created or printed for a mount that cannot be made. */
gboolean ctl_fs_mount(CtlFs *fs, const char *mountpoint, GError **error);
/* Serves the ENGINE's tree on the mount; LOOP is quit when it is unmounted. */
gboolean ctl_fs_serve(CtlFs *fs, CtlEngine *engine, GMainLoop *loop, GError **error);
/* Stops raising inotify events (serving requests until that is done); call
 * while the engine is still alive, before ctl_engine_free(). */
void   ctl_fs_stop(CtlFs *fs);
/* Unmounts (if still mounted) and frees. */
void   ctl_fs_free(CtlFs *fs);
