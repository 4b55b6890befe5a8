/* The engine: configuration, the model, the bus and the command and feedback
 * paths wired together. fs/ holds one engine and calls it; it never sees Kafka
 * or SQLite. */
#pragma once
#include <glib.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "caller.h"
#include "config.h"
#include "model.h"

typedef struct CtlEngine CtlEngine;

/* Takes ownership of ST. Connects to CFG->brokers (which must be set: main
 * starts the embedded broker first). */
CtlEngine       *ctl_engine_new(const CtlConfig *cfg, CtlStore *st, GError **error);
/* Fails the commands still waiting (daemon stopping), flushes, frees. */
void             ctl_engine_free(CtlEngine *e);
CtlModel        *ctl_engine_model(CtlEngine *e);
const CtlConfig *ctl_engine_config(CtlEngine *e);

/* May WHO do ACCESS on OBJ (declare: create or remove a child of OBJ)? 0, or
 * EACCES once the refusal is recorded with who tried (SQLite table refusals,
 * OBJ's log, metrics). VERB and NAME (or NULL) say what was asked ("open"
 * "log", "mkdir" "rt2", "list" NULL). Resolves WHO's audit fields only when
 * refusing. */
int ctl_engine_authorize(CtlEngine *e, CtlAccess access, CtlObject *obj, const char *verb,
                         const char *name, CtlCaller *who);

/* A request on the tree (mkdir, rmdir, create, unlink, rename, link,
 * symlink, a scratch file's write) turned down with ERR for REASON: recorded
 * as refused writes are, with REQUEST ("mkdir NAME", "rename FROM TO") and who
 * asked: a line on OBJ's log (`refused` for EACCES, `rejected` for anything
 * else, with `error=` the errno's name), a row in the refusals table, and for
 * ACCESS command REASON becomes OBJ's last_error. OBJ is the directory's
 * object whose files are written (a resource, ...) or that is declared in.
 * Resolves WHO's audit fields. Counts in no metric: the refusal counter is the
 * access policy's, and these are not writes. */
void ctl_engine_refuse_request(CtlEngine *e, CtlObject *obj, CtlAccess access, int err,
                               const char *request, const char *reason, CtlCaller *who);

/* Directory operations on behalf of WHO, each authorised here (the access
 * policy's declare rule for mkdir and rmdir; its command rule, on the
 * directory's owner, for create and unlink) and recorded when refused; 0 or
 * an errno. mkdir makes a child of PARENT whose children come by mkdir;
 * create makes one that is a file, in a directory whose children come by
 * create (CtlType.children); rmdir and unlink remove OBJ, a directory or such
 * a file. */
int ctl_engine_mkdir(CtlEngine *e, CtlObject *parent, const char *name, CtlCaller *who,
                     CtlObject **out);
int ctl_engine_create(CtlEngine *e, CtlObject *dir, const char *name, CtlCaller *who,
                      CtlObject **out);
int ctl_engine_rmdir(CtlEngine *e, CtlObject *obj, CtlCaller *who);
int ctl_engine_unlink(CtlEngine *e, CtlObject *obj, CtlCaller *who);

/* A write of INPUT (LEN bytes at OFFSET) to OBJ's `state`. The value must come
 * whole, at offset 0, in at most CTL_WRITE_MAX bytes. DONE is called exactly
 * once with 0 or an errno: at once for bad input, refusals and queued mode;
 * when the broker answers in durable mode. A runtime backend's resource
 * already desired and reported in the state asked for, with nothing pending,
 * gets no command: the write is logged result=unchanged and answered 0. */
#define CTL_WRITE_MAX 64
/* Every value file takes its value whole, at offset 0, in at most MAX bytes:
 * NULL when a write of LEN bytes at OFFSET does, else the reason (g_free). */
char *ctl_write_shape_problem(gsize len, gint64 offset, gsize max);
typedef void (*CtlCommandDone)(int err, gpointer user_data);
void ctl_engine_command(CtlEngine *e, CtlObject *obj, const char *input, gsize len,
                        gint64 offset, const CtlCaller *who, CtlCommandDone done,
                        gpointer user_data);

/* Calls DONE with 0 once everything written so far is committed to the store,
 * or with EIO if that commit failed: for replies that promise durability
 * (mkdir, rmdir, a queued or acknowledged command). */
void ctl_engine_after_commit(CtlEngine *e, CtlCommandDone done, gpointer user_data);

/* What `observed` shows: the last reported state, "stale" when feedback is
 * older than --stale-after-ms, "unknown" before any. */
const char *ctl_engine_observed(CtlEngine *e, CtlObject *obj);

/* What `state` shows: the desired state as the object's backend sees it. */
const char *ctl_engine_desired(CtlEngine *e, CtlObject *obj);

/* ---- the files of an object: attributes (kernfs's show/store) ---- */

/* One file of an object. show() writes the whole content (value files);
 * stream files (logs) are read at any offset from the model; store() takes a
 * write and answers DONE exactly once with 0 or an errno, as
 * ctl_engine_command() does. */
typedef struct {
  const char *name;       /* "" in CtlType.self: the object itself is the file */
  mode_t      mode;
  void      (*show)(CtlEngine *e, CtlObject *obj, GString *out);
  gboolean    stream;
  void      (*store)(CtlEngine *e, CtlObject *obj, const char *buf, gsize len, gint64 offset,
                     const CtlCaller *who, CtlCommandDone done, gpointer user_data);
  /* Changes of the object, besides the usual ones (state, observed, status,
   * log), that change this file: its watchers are woken for them. */
  CtlChange   wakes;
} CtlAttr;

/* How a directory's children come to be: only from the model (feedback,
 * other hosts), by mkdir (declare access), or by creating a file. */
typedef enum { CTL_CHILDREN_NONE, CTL_CHILDREN_MKDIR, CTL_CHILDREN_CREATE } CtlChildren;

/* What an object of some kind is: its files, whether it is itself a file,
 * and how its children come to be (sysfs's kobj_type). */
typedef struct {
  const CtlAttr *attrs;
  guint          n_attrs;
  const CtlAttr *self;       /* non-NULL: the object is this file, not a directory */
  CtlChildren    children;
  /* Tree backends: the settings of such an object that other admin hosts
   * are told of with it (NULL-terminated; NULL: none), see peers-objects.c. */
  const char *const *shared;
} CtlType;

/* OBJ's type: the engine's for the root, runtimes/ and a runtime, else its
 * backend's. Never NULL. */
const CtlType *ctl_engine_type(CtlEngine *e, CtlObject *obj);

/* The text of `metrics`. */
void ctl_engine_show_metrics(CtlEngine *e, GString *out);
