/* Structured log messages with ctlfs's own fields, over GLib's structured
 * logging (g_log_structured_array). Where they go is the program's log writer
 * (tools/ctlfs.c): under systemd the journal, which keeps every field, so that
 *   journalctl -u ctlfs CTLFS_RUNTIME=rt1 CTLFS_RESOURCE=svc
 *   journalctl -u ctlfs CTLFS_COMMAND_ID=0196f6a2-...
 * find an object's or a command's events; in the foreground stderr, where only
 * the MESSAGE shows (and INFO only with -d or G_MESSAGES_DEBUG). */
#pragma once
#include <glib.h>

#define CTL_LOG_RUNTIME    "CTLFS_RUNTIME"     /* runtime name */
#define CTL_LOG_RESOURCE   "CTLFS_RESOURCE"    /* resource name */
#define CTL_LOG_COMMAND_ID "CTLFS_COMMAND_ID"  /* command id (uuid) */
#define CTL_LOG_EVENT      "CTLFS_EVENT"       /* event word of a log line: command, observed, ... */

/* syslog(3) priority of a GLib level, as GLib itself maps it. */
static inline const char *
ctl_log_priority(GLogLevelFlags level)
{
  if (level & G_LOG_LEVEL_ERROR)
    return "3";
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    return "4";
  if (level & G_LOG_LEVEL_MESSAGE)
    return "5";
  if (level & G_LOG_LEVEL_INFO)
    return "6";
  return "7";
}

/* MESSAGE at LEVEL with PRIORITY and whichever of the ctlfs fields are not
 * NULL. */
static inline void
ctl_log_fields(GLogLevelFlags level, const char *runtime, const char *resource,
               const char *command_id, const char *event, const char *message)
{
  GLogField f[7];
  gsize n = 0;
  f[n++] = (GLogField) { "PRIORITY", ctl_log_priority(level), -1 };
  f[n++] = (GLogField) { "MESSAGE", message, -1 };
  const char *domain = G_LOG_DOMAIN;     /* glib.h's default: NULL */
  if (domain)
    f[n++] = (GLogField) { "GLIB_DOMAIN", domain, -1 };
  if (runtime)
    f[n++] = (GLogField) { CTL_LOG_RUNTIME, runtime, -1 };
  if (resource)
    f[n++] = (GLogField) { CTL_LOG_RESOURCE, resource, -1 };
  if (command_id)
    f[n++] = (GLogField) { CTL_LOG_COMMAND_ID, command_id, -1 };
  if (event)
    f[n++] = (GLogField) { CTL_LOG_EVENT, event, -1 };
  g_log_structured_array(level, f, n);
}
