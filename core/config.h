/* The daemon's settings: defaults, the config file (GKeyFile) and single
 * settings by name (command line, -o key=value). One parser for all three, so
 * that every way of saying a setting is checked the same way. */
#pragma once
#include <glib.h>
#include <sys/types.h>

#include "policy.h"

typedef enum { CTL_WRITE_DURABLE, CTL_WRITE_QUEUED } CtlWriteMode;

typedef struct {
  char        *brokers;         /* NULL: embedded broker */
  char        *db_path;         /* NULL until set: the caller picks the default */
  char        *topic_prefix;    /* "ctlfs" */
  CtlWriteMode write_mode;
  int          ack_timeout_ms;  /* 5000 */
  int          stale_after_ms;  /* 10000 */
  int          discover_max;    /* feedback creates resources while a runtime has fewer (10000) */
  uid_t        owner_uid;       /* the mounting user */
  CtlPolicy   *policy;          /* never NULL after ctl_config_init() */
} CtlConfig;

/* Defaults; owner is the effective uid. */
void     ctl_config_init(CtlConfig *cfg);
void     ctl_config_clear(CtlConfig *cfg);
void     ctl_config_copy(CtlConfig *dst, const CtlConfig *src);

/* KEY as in the config file's [ctlfs] group (dashes or underscores). Returns
 * the canonical name, or NULL when KEY is not a setting. */
const char *ctl_config_key(const char *key);
/* One setting from text. FALSE + an error naming the key and the value. */
gboolean ctl_config_set(CtlConfig *cfg, const char *key, const char *value, GError **error);

/* A config file's text: [ctlfs] settings, [access] and [access RUNTIME] rules
 * (keys read, command, declare; values are lists of principals separated by
 * ';' or ','). Unknown groups and keys are errors. ORIGIN names the file in
 * errors. On failure CFG may hold part of the file: the caller gives up. */
gboolean ctl_config_parse(CtlConfig *cfg, const char *data, gsize len, const char *origin,
                          GError **error);
gboolean ctl_config_load(CtlConfig *cfg, const char *path, GError **error);
