/* Object names: runtimes, resources, modules, topologies. */
#pragma once
#include <glib.h>

#define CTL_NAME_MAX 128

/* TRUE when NAME (LEN bytes, not NUL-terminated necessarily) is 1..128 bytes of
 * [A-Za-z0-9._-] and is neither "." nor "..". */
gboolean ctl_name_valid_len(const char *name, gsize len);
gboolean ctl_name_valid(const char *name);
/* Why NAME is not a valid name, in words for a log line and `last_error`
 * ("the name holds ' ' (a space); ..."), or NULL when it is valid (g_free). */
char    *ctl_name_problem(const char *name);
