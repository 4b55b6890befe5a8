/* Wall-clock times as the contract writes them: RFC 3339, UTC, milliseconds,
 * e.g. 2026-11-23T10:00:00.123Z. Internally times are gint64 ms since the epoch. */
#pragma once
#include <glib.h>

#define CTL_TIME_LEN 25   /* "YYYY-MM-DDTHH:MM:SS.mmmZ" + NUL */

gint64   ctl_now_ms(void);                          /* g_get_real_time() / 1000 */
/* Writes into BUF (at least CTL_TIME_LEN bytes); returns BUF. */
char    *ctl_time_format(gint64 ms, char buf[CTL_TIME_LEN]);
/* Parses RFC 3339 (any offset, optional fraction); FALSE when malformed. */
gboolean ctl_time_parse(const char *text, gint64 *ms_out);
