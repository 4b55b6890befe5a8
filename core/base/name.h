/* Object names: runtimes, resources, modules, topologies, depots, PStates,
 * options. */
#pragma once
#include <glib.h>

#define CTL_NAME_MAX 128

/* Which names an object takes. PLAIN: 1..128 bytes of [A-Za-z0-9._-], not
 * "." or ".." (runtimes, resources, options). JAVA: PLAIN and `$`, for Rama
 * module names (Java class names, nested ones: com.example.Mod$Inner) and
 * topology names. DEPOT: `*` then JAVA bytes (Rama's `*myDepot`). PSTATE:
 * `$$` then JAVA bytes (`$$p`). No rule allows `/`. */
typedef enum {
  CTL_NAME_PLAIN,
  CTL_NAME_JAVA,
  CTL_NAME_DEPOT,
  CTL_NAME_PSTATE,
} CtlNameRule;

/* TRUE when NAME (LEN bytes, not NUL-terminated necessarily) is 1..128 bytes of
 * [A-Za-z0-9._-] and is neither "." nor "..". */
gboolean ctl_name_valid_len(const char *name, gsize len);
gboolean ctl_name_valid(const char *name);
/* Why NAME is not a valid name, in words for a log line and `last_error`
 * ("the name holds ' ' (a space); ..."), or NULL when it is valid (g_free). */
char    *ctl_name_problem(const char *name);
/* The same under RULE. */
gboolean ctl_name_valid_len_as(CtlNameRule rule, const char *name, gsize len);
gboolean ctl_name_valid_as(CtlNameRule rule, const char *name);
char    *ctl_name_problem_as(CtlNameRule rule, const char *name);
