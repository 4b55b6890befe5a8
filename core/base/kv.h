/* Two small helpers on text that every layer uses: the KEY=VALUE fields of
 * log lines, and string fields that say whether they changed. */
#pragma once
#include <glib.h>

/* Appends KEY=VALUE to OUT, quoting VALUE ("...", C escapes) when it holds
 * anything but printable non-space ASCII, so log lines stay one per line and
 * splittable on spaces. */
void ctl_kv_append(GString *out, const char *key, const char *value);

/* Sets a string field (g_free the old value); TRUE when it changed. */
gboolean ctl_set_str(char **field, const char *value);
