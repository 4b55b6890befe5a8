/* Shared inside fs/ only. */
#pragma once
#include "fs.h"

/* The files of an object are the attributes of its type, which core/ keeps
 * (ctl_engine_type): nodes.c only looks them up. */
typedef struct CtlFs CtlFs;
typedef CtlAttr CtlNode;

/* OBJ's files, COUNT of them. */
const CtlNode *ctl_nodes(CtlFs *fs, CtlObject *obj, guint *count);
/* How a directory's children come to be. */
CtlChildren    ctl_node_children(CtlFs *fs, CtlObject *dir);
const CtlNode *ctl_node_find(CtlFs *fs, CtlObject *obj, const char *name, guint *slot);
/* The node of inode (OBJ, SLOT): its SLOT-th file, or for slot 0 the node an
 * object that is itself a file has (CtlType.self); NULL: a directory. */
const CtlNode *ctl_node_at(CtlFs *fs, CtlObject *obj, guint slot);
/* The name a node's file has: its own, or OBJ's when OBJ is the file. */
const char    *ctl_node_name(const CtlNode *node, CtlObject *obj);

typedef struct CtlNotify CtlNotify;
typedef struct CtlScratch CtlScratch;

struct CtlFs {
  struct fuse_session *se;
  CtlEngine           *engine;
  CtlModel            *model;
  GMainLoop           *loop;
  guint                source;
  struct fuse_buf      buf;
  char                *mountpoint;
  gboolean             mounted;
  uid_t                uid;
  gid_t                gid;
  struct timespec      mount_time;
  CtlNotify           *notify;
  CtlScratch          *scratch;
  /* Value files truncated by a writer (a shell's `>`) that has not written
   * or closed yet: they read as size 0 meanwhile (file.c). */
  GHashTable          *emptied;
  GHashTable          *writers;   /* ino -> open handles for writing */
  /* Open files' and directories' handles (sets): the kernel's RELEASE is
   * sent after close() returns, and one still on its way when the session
   * ends never comes; ctl_fs_free() frees what is left. */
  GHashTable          *open_files;
  GHashTable          *open_dirs;
};

/* Inode numbers: key * 16 + slot + 1, where slot 0 is the object's directory and
 * slot i > 0 its i-th file; the root directory comes out as 1 (FUSE_ROOT_ID). */
fuse_ino_t  ctl_ino(CtlObject *obj, guint slot);
CtlObject  *ctl_ino_object(CtlFs *fs, fuse_ino_t ino, guint *slot);

/* tree.c: directory operations; file.c: file operations. */
void ctl_fs_tree_ops(struct fuse_lowlevel_ops *ops);
void ctl_fs_file_ops(struct fuse_lowlevel_ops *ops);
/* Free an open file's handle (file.c) or a directory's listing (tree.c)
 * and take it out of its set (open_files, open_dirs): at its release, or at
 * the end of the session for those whose release never came. */
void ctl_fs_handle_free(CtlFs *fs, gpointer handle);
void ctl_fs_listing_free(CtlFs *fs, gpointer listing);
/* file.c: is INO a value file truncated by a writer not done yet? */
gboolean   ctl_fs_emptied(CtlFs *fs, fuse_ino_t ino);
/* Fills ST for inode (OBJ, SLOT). */
void ctl_fs_stat(CtlFs *fs, CtlObject *obj, guint slot, struct stat *st);
/* The object of INO, or NULL after replying ENOENT; ctl_fs_dir() also wants
 * a directory (ENOTDIR). */
CtlObject *ctl_fs_object(CtlFs *fs, fuse_req_t req, fuse_ino_t ino, guint *slot);
CtlObject *ctl_fs_dir(CtlFs *fs, fuse_req_t req, fuse_ino_t ino);
/* The caller of REQ: ids and, when the policy names groups, its supplementary
 * groups; ctl_caller_resolve() adds the audit fields (ctl_caller_clear when done). */
void ctl_fs_caller(CtlFs *fs, fuse_req_t req, CtlCaller *who);
/* Replies ERR to REQ once the refusal is recorded on OBJ's log (and, for
 * ACCESS command, its last_error) with the request (printf FMT: "rename a
 * b") and REASON: ctl_engine_refuse_request() for what fs/ turns down. */
void ctl_fs_refuse(CtlFs *fs, fuse_req_t req, CtlObject *obj, CtlAccess access, int err,
                   const char *reason, const char *fmt, ...) G_GNUC_PRINTF(7, 8);
/* The object a refusal of a file operation in directory DIR is recorded on:
 * the one whose files they are (DIR, or for a directory of files that are
 * objects themselves, its owner), as writes to them are. */
CtlObject *ctl_fs_files_owner(CtlFs *fs, CtlObject *dir);
/* Checks the access policy for REQ's caller; FALSE after replying EACCES (the
 * refusal recorded as VERB NAME, e.g. "open log"; NAME may be NULL). */
gboolean ctl_fs_authorize(CtlFs *fs, fuse_req_t req, CtlAccess access, CtlObject *obj,
                          const char *verb, const char *name);

/* notify.c: wakes poll() and inotify watchers of files that changed. */
CtlNotify *ctl_notify_new(CtlFs *fs);
void       ctl_notify_free(CtlNotify *n);
/* The kernel's lookup count of INO moved by DELTA (lookups, forgets). */
void       ctl_notify_looked_up(CtlNotify *n, fuse_ino_t ino, gint64 delta);
/* Stops raising inotify events, serving requests until the helper is idle, so
 * that no truncate of ours holds the mount busy when it is unmounted. */
void       ctl_notify_stop(CtlNotify *n);
/* Is PID (a request's caller) the helper thread that raises inotify events?
 * Its open() for writing, truncate and time setting must change nothing. */
gboolean   ctl_notify_is_kicker(CtlNotify *n, pid_t pid);
/* When file or directory (OBJ, SLOT) last changed in this run (new value, new
 * log line; for a directory a child made or removed); one unchanged since
 * OBJ was made in this run: then. Else WHEN is left as it is (the caller's
 * default: the mount's time; nothing older is kept across a restart). */
void       ctl_notify_changed_at(CtlNotify *n, CtlObject *obj, guint slot,
                                 struct timespec *when);
/* How many times the file INO has changed. */
guint64    ctl_notify_seq(CtlNotify *n, fuse_ino_t ino);
/* Open handles of INO, to be told of changes (ctl_fs_handle_changed). */
void       ctl_notify_track(CtlNotify *n, fuse_ino_t ino, gpointer handle);
void       ctl_notify_untrack(CtlNotify *n, fuse_ino_t ino, gpointer handle);
/* file.c: opens file (OBJ, SLOT) for REQ and replies, with fuse_reply_create
 * when ENTRY is given (create), else fuse_reply_open. */
void       ctl_fs_reply_open(CtlFs *fs, fuse_req_t req, CtlObject *obj, guint slot,
                             struct fuse_file_info *fi, const struct fuse_entry_param *entry);
/* file.c: the file behind HANDLE changed; wake its poll() waiter. */
void       ctl_fs_handle_changed(gpointer handle);

/* scratch.c: private scratch files, for the atomic replace of configuration
 * tools (a temporary file in the same directory, renamed over the target).
 * A regular file created in a directory that has writable files is one: kept
 * in memory, never published, listed for everyone, opened, renamed and
 * removed by its creator only (root and the daemon's user too), at most
 * CTL_SCRATCH_MAX_BYTES each and CTL_SCRATCH_MAX_FILES per uid. Renamed over a
 * writable file it is a write of its whole content, answered as that write
 * is. Gone when removed, renamed over a file, its directory removed, or the
 * mount is gone. See docs/scripting.md. */
#define CTL_SCRATCH_MAX_BYTES (64 * 1024)
#define CTL_SCRATCH_MAX_FILES 16

CtlScratch *ctl_scratch_new(CtlFs *fs);
void        ctl_scratch_free(CtlScratch *sc);
/* Wraps the file operations of OPS (tree.c's and file.c's, set before): a
 * scratch file's inode is served here, every other one as before. */
void        ctl_fs_scratch_ops(struct fuse_lowlevel_ops *ops);
/* May DIR hold scratch files (it has a writable file, or its files are
 * created)? */
gboolean    ctl_scratch_dir(CtlFs *fs, CtlObject *dir);
/* Is NAME a scratch file in DIR? */
gboolean    ctl_scratch_named(CtlFs *fs, CtlObject *dir, const char *name);
/* lookup: TRUE once NAME, a scratch file of DIR, was replied. */
gboolean    ctl_scratch_lookup(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name);
/* Makes scratch file NAME in DIR (a scratch directory; NAME free) and
 * replies: with it opened when FI is given (create), else its entry (mknod). */
void        ctl_scratch_create(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name,
                               mode_t mode, struct fuse_file_info *fi);
/* unlink and rename of a scratch file: FALSE when NAME is none (nothing replied). */
gboolean    ctl_scratch_unlink(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name);
gboolean    ctl_scratch_rename(CtlFs *fs, fuse_req_t req, CtlObject *dir, const char *name,
                               CtlObject *newdir, const char *newname, unsigned int flags);
/* Calls ADD for each scratch file of DIR, by name. */
void        ctl_scratch_list(CtlFs *fs, CtlObject *dir,
                             void (*add)(gpointer data, const char *name, fuse_ino_t ino,
                                         mode_t mode),
                             gpointer data);
