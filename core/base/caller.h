/* Who issued a request: the FUSE request's credentials, resolved into the audit
 * fields every command and refusal carries (uid, user, pid, comm, host). */
#pragma once
#include <glib.h>
#include <sys/types.h>

typedef struct {
  uid_t  uid;
  gid_t  gid;
  pid_t  pid;
  gid_t *groups;        /* supplementary groups, may be NULL */
  int    ngroups;
  char  *user;          /* resolved by ctl_caller_resolve() */
  char  *comm;
  const char *host;     /* this host's name (static) */
  /* ctlfs acting on its own (a reconcile re-send, core/engine/drift.c): the
   * whole "by=ctlfs ..." text log lines show instead of the fields above. */
  const char *describe_as;
} CtlCaller;

/* Fills user, comm and host from uid and pid. */
void     ctl_caller_resolve(CtlCaller *who);
void     ctl_caller_clear(CtlCaller *who);
/* "by=uid:1000(alice) pid=4242 comm=bash host=adm1" (g_free), or describe_as. */
char    *ctl_caller_describe(const CtlCaller *who);
