/* The FUSE side: mounts the engine's model as a tree with the low-level
 * libfuse3 API, driven by the GLib main loop (one thread, no thread per
 * request; writes are answered asynchronously). */
#pragma once
#include <glib.h>
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include "engine.h"

typedef struct CtlFs CtlFs;

/* Creates the session and mounts it at MOUNTPOINT. ARGS carries libfuse's own
 * options (-o allow_other, ...). LOOP is quit when the filesystem is unmounted. */
CtlFs *ctl_fs_new(CtlEngine *engine, const char *mountpoint, struct fuse_args *args,
                  GMainLoop *loop, GError **error);
/* Unmounts (if still mounted) and frees. */
void   ctl_fs_free(CtlFs *fs);
