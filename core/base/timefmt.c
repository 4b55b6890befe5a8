#include "timefmt.h"

gint64
ctl_now_ms(void)
{
  return g_get_real_time() / 1000;
}

char *
ctl_time_format(gint64 ms, char buf[CTL_TIME_LEN])
{
  /* Floor division, so times before 1970 still get a fraction in 0..999. */
  gint64 secs = ms / 1000;
  int frac = (int) (ms % 1000);
  if (frac < 0) {
    secs -= 1;
    frac += 1000;
  }

  GDateTime *dt = g_date_time_new_from_unix_utc(secs);
  if (dt == NULL) {
    /* Outside years 1..9999: cannot be written in this format at all. Clamp to
     * the epoch rather than write something a parser would reject. */
    dt = g_date_time_new_from_unix_utc(0);
    frac = 0;
  }
  /* Fields by hand rather than g_date_time_format(): its %Y does not pad
   * years below 1000 to four digits, which RFC 3339 requires. */
  g_snprintf(buf, CTL_TIME_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             g_date_time_get_year(dt), g_date_time_get_month(dt),
             g_date_time_get_day_of_month(dt), g_date_time_get_hour(dt),
             g_date_time_get_minute(dt), g_date_time_get_second(dt), frac);
  g_date_time_unref(dt);
  return buf;
}

/* GLib's ISO 8601 parser also takes forms RFC 3339 does not allow (basic
 * format without separators, ordinal and week dates, missing seconds), so the
 * shape is checked first and GLib does the calendar arithmetic. */
static gboolean
looks_like_rfc3339(const char *text)
{
  static GRegex *re;
  if (g_once_init_enter(&re)) {
    GRegex *r = g_regex_new(
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
        "(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
        G_REGEX_OPTIMIZE, 0, NULL);
    g_once_init_leave(&re, r);
  }
  return g_regex_match(re, text, 0, NULL);
}

gboolean
ctl_time_parse(const char *text, gint64 *ms_out)
{
  if (text == NULL || !looks_like_rfc3339(text))
    return FALSE;
  /* RFC 3339 also allows "t", "z" and a space as the separator; GLib takes
   * only the ISO 8601 spelling. The regex leaves no other letters to upcase. */
  g_autofree char *iso = g_ascii_strup(text, -1);
  iso[10] = 'T';
  /* No default zone: the regex already insists on an explicit offset. */
  GDateTime *dt = g_date_time_new_from_iso8601(iso, NULL);
  if (dt == NULL)
    return FALSE;   /* e.g. month 13 or 25:00 */
  gint64 ms = g_date_time_to_unix(dt) * 1000 + g_date_time_get_microsecond(dt) / 1000;
  g_date_time_unref(dt);
  /* An offset can carry a time written within years 1..9999 outside them in
   * UTC (9999-12-31T23:00:00-02:00), where ctl_time_format() cannot write it
   * and would show the epoch instead: refuse it here. */
  if (ms < CTL_TIME_MIN_MS || ms > CTL_TIME_MAX_MS)
    return FALSE;
  if (ms_out != NULL)
    *ms_out = ms;
  return TRUE;
}
