/* Access policy: who may read the tree, issue commands (write `state`) and
 * declare objects (mkdir/rmdir), globally and per runtime. Loaded from the
 * config file ([access] and [access RT] groups); immutable once loaded and
 * shared by reference.
 *
 * Root and the daemon's own user always pass: they own the store and the
 * process anyway, so refusing them would protect nothing. */
#pragma once
#include <glib.h>
#include <sys/types.h>

#include "caller.h"

typedef enum {
  CTL_ACCESS_READ,      /* open a file for reading, list a directory */
  CTL_ACCESS_COMMAND,   /* write a verb to `state` */
  CTL_ACCESS_DECLARE,   /* mkdir / rmdir */
  CTL_ACCESS_COUNT
} CtlAccess;

typedef struct CtlPolicy CtlPolicy;

/* An empty policy: anyone may read; only root and OWNER may command and declare. */
CtlPolicy  *ctl_policy_new(uid_t owner);
CtlPolicy  *ctl_policy_ref(CtlPolicy *p);
void        ctl_policy_unref(CtlPolicy *p);

const char *ctl_access_name(CtlAccess a);               /* "read", "command", "declare" */
gboolean    ctl_access_from_name(const char *name, CtlAccess *out);

/* The rule for ACCESS, globally (RUNTIME NULL) or for one runtime, from a list
 * of principals: "alice" (user), "1000" (uid), "@ops" (group), "@50" (gid),
 * "*" (anyone). Replaces what was there. Unknown users and groups are errors:
 * a typo must not silently lock people out or let them in. */
gboolean    ctl_policy_set(CtlPolicy *p, const char *runtime, CtlAccess access,
                           const char *const *principals, gsize n, GError **error);
/* Adds group GID (called NAME) to the global rule for ACCESS (--admin-group). */
void        ctl_policy_add_group(CtlPolicy *p, CtlAccess access, gid_t gid, const char *name);

/* May WHO do ACCESS on an object of RUNTIME (NULL: the root, runtimes/, and
 * declaring or forgetting a runtime itself)? A runtime's own rule wins over
 * the global one; declare falls back to command when neither sets it. */
gboolean    ctl_policy_allows(const CtlPolicy *p, CtlAccess access, const char *runtime,
                              const CtlCaller *who);
/* Whether any rule names a group: only then are supplementary groups needed. */
gboolean    ctl_policy_uses_groups(const CtlPolicy *p);

/* Permission bits (0777 part) for a file or directory of RUNTIME whose reads
 * fall under READ and writes under WRITE (CTL_ACCESS_COUNT: not writable), and
 * the group to show (*GID, left alone when no group matters). The owner always
 * gets the bits. A rule of one group gives group bits; a rule the modes cannot
 * express (users, several groups, anyone) gives the bits to everyone and the
 * daemon's own check decides: the modes are a first gate for
 * default_permissions, never wider than the policy lets through the daemon. */
mode_t      ctl_policy_mode(const CtlPolicy *p, const char *runtime, CtlAccess read,
                            CtlAccess write, gboolean dir, gid_t *gid);

/* "command=@ops,alice; read=*" — the effective rules, for status and logs. */
char       *ctl_policy_describe(const CtlPolicy *p, const char *runtime);
