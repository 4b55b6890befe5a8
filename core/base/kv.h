/* Two small helpers on text that every layer uses: the KEY=VALUE fields of
 * log lines, and string fields that say whether they changed. */
#pragma once
#include <glib.h>

/* Appends KEY=VALUE to OUT, quoting VALUE ("...", C escapes) when it holds
 * anything but printable non-space ASCII, so log lines stay one per line and
 * splittable on spaces. */
void ctl_kv_append(GString *out, const char *key, const char *value);

/* Sets a string field (g_free the old value unless it is shared, below);
 * TRUE when it changed. The new value is always a copy of its own. */
gboolean ctl_set_str(char **field, const char *value);

/* The words most state fields hold ("running", "paused", "stopped"), shared:
 * a million resources loaded at start do not each hold a copy. Returns the
 * shared word equal to VALUE, else a copy (g_strdup). A field that may hold
 * one is changed with ctl_set_str() and freed with ctl_str_free(), never
 * g_free(); nothing writes into it. */
char    *ctl_str_share(const char *value);
void     ctl_str_free(char *value);
