/* Wall-clock times as the contract writes them: RFC 3339, UTC, milliseconds,
 * e.g. 2026-11-23T10:00:00.123Z. Internally times are gint64 ms since the epoch. */
#pragma once
#include <glib.h>

#define CTL_TIME_LEN 25   /* "YYYY-MM-DDTHH:MM:SS.mmmZ" + NUL */
/* The times that format can hold: 0001-01-01T00:00:00.000Z..9999-12-31T23:59:59.999Z. */
#define CTL_TIME_MIN_MS G_GINT64_CONSTANT(-62135596800000)
#define CTL_TIME_MAX_MS G_GINT64_CONSTANT(253402300799999)

gint64   ctl_now_ms(void);                          /* g_get_real_time() / 1000 */
/* Writes into BUF (at least CTL_TIME_LEN bytes); returns BUF. */
char    *ctl_time_format(gint64 ms, char buf[CTL_TIME_LEN]);
/* Parses RFC 3339 (any offset, optional fraction); FALSE when malformed or
 * outside CTL_TIME_MIN_MS..CTL_TIME_MAX_MS once in UTC. */
gboolean ctl_time_parse(const char *text, gint64 *ms_out);
