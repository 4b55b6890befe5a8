/* The daemon's settings: defaults, the config file (GKeyFile) and single
 * settings by name (command line, -o key=value). One parser for all three, so
 * that every way of saying a setting is checked the same way. */
#pragma once
#include <glib.h>
#include <sys/types.h>

#include "policy.h"
#include "topic-settings.h"

typedef enum { CTL_WRITE_DURABLE, CTL_WRITE_QUEUED } CtlWriteMode;

/* What ctlfs does when a runtime reports a settled state other than the
 * desired one with nothing pending (drift, core/engine/drift.c): nothing
 * (off), show and log it (report), or also re-issue the desired command
 * (resend). 0 in a [runtime RT] group: follow [ctlfs]. */
typedef enum {
  CTL_RECONCILE_DEFAULT, CTL_RECONCILE_OFF, CTL_RECONCILE_REPORT, CTL_RECONCILE_RESEND,
} CtlReconcile;

/* Per-runtime settings ([runtime RT] in the config file). */
typedef struct {
  char *backend;   /* a registered backend (core/backends/registry.c): kafka, lifecycle */
  char *dialect;   /* the shape of its Kafka messages: ctlfs, mia */
  /* Its topics, when not PREFIX.RT.commands / PREFIX.RT.feedback (NULL):
   * the topics an existing deployment already uses. */
  char *command_topic, *feedback_topic;
  /* initial-state=: the runtime's desired state until a command to the
   * runtime sets it, paused or running (NULL: its backend's default). */
  char *initial_state;
  /* dialect=mia: Mia's ids of the runtime's pipeline and of artifacts not
   * yet heard of (mia-pipeline-id=ID, mia-artifact-id.RESOURCE=ID); ids
   * learned from feedback take their place. NULL when not given. */
  char       *mia_pipeline_id;
  GHashTable *mia_artifact_ids;   /* resource name -> id */
  CtlReconcile reconcile;     /* reconcile= (DEFAULT: [ctlfs]'s) */
  int   reconcile_attempts;   /* reconcile-attempts= (0: [ctlfs]'s) */
} CtlRuntimeConfig;

typedef struct {
  char        *brokers;         /* NULL: embedded broker */
  char        *db_path;         /* NULL until set: the caller picks the default */
  char        *topic_prefix;    /* "ctlfs" */
  CtlWriteMode write_mode;
  int          ack_timeout_ms;  /* 5000 */
  int          stale_after_ms;  /* 10000 */
  int          discover_max;    /* feedback creates resources while a runtime has fewer (10000) */
  int          metrics_per_resource;  /* reported metrics kept per resource (32) */
  int          metrics_series_max;    /* reported metrics exported in `metrics` (1000; 0: none) */
  CtlRuntimeConfig runtime_default;  /* [ctlfs] backend, dialect */
  GHashTable  *runtimes;        /* runtime name -> CtlRuntimeConfig*: [runtime RT] groups */
  int          expire_after_ms; /* janitor: feedback silent this long -> inactive (0: never) */
  gboolean     expire_remove;   /* expire=remove: inactive runtimes are cleaned up */
  char        *rama_cli;        /* [rama] cli: the cluster CLI ("rama": on PATH) */
  int          rama_timeout_ms; /* [rama] timeout-ms: a CLI call is killed after this */
  int          rama_refresh_ms; /* [rama] refresh-ms: moduleStatus this often (0: never) */
  gboolean     rama_internal_hostnames;  /* [rama] internal-hostnames: --useInternalHostnames
                                            on the commands that take it */
  /* [kafka] and -o kafka.KEY=VALUE: librdkafka properties for both clients,
   * in the order given: key, value, ..., NULL (never NULL itself). */
  char       **kafka_props;
  CtlTopicSettings topics;      /* [topics] */
  uid_t        owner_uid;       /* the mounting user */
  CtlPolicy   *policy;          /* never NULL after ctl_config_init() */
} CtlConfig;

/* Defaults; owner is the effective uid. */
void     ctl_config_init(CtlConfig *cfg);
void     ctl_config_clear(CtlConfig *cfg);
void     ctl_config_copy(CtlConfig *dst, const CtlConfig *src);

/* Runtime RUNTIME's backend and dialect: its [runtime RUNTIME] group, else
 * [ctlfs] or the command line (--backend, --dialect). */
const char *ctl_config_backend(const CtlConfig *cfg, const char *runtime);
const char *ctl_config_dialect(const CtlConfig *cfg, const char *runtime);
/* [runtime RT] mia-pipeline-id= and mia-artifact-id.RESOURCE=, or NULL. */
const char *ctl_config_mia_pipeline_id(const CtlConfig *cfg, const char *runtime);
const char *ctl_config_mia_artifact_id(const CtlConfig *cfg, const char *runtime,
                                       const char *resource);
/* Runtime RUNTIME's command topic (FEEDBACK: its feedback topic): its
 * [runtime RUNTIME] command-topic= / feedback-topic=, else PREFIX.RT.commands
 * / PREFIX.RT.feedback. Newly allocated. */
char       *ctl_config_topic(const CtlConfig *cfg, const char *runtime, gboolean feedback);
/* Runtime RUNTIME's initial-state= ([runtime RUNTIME], else [ctlfs]); NULL
 * when neither says: its backend decides. */
const char *ctl_config_initial_state(const CtlConfig *cfg, const char *runtime);
/* Runtime RUNTIME's reconcile mode and its re-sends per drift, at most:
 * [runtime RUNTIME], else [ctlfs] or -o (default resend, 5 attempts). */
CtlReconcile ctl_config_reconcile(const CtlConfig *cfg, const char *runtime);
int          ctl_config_reconcile_attempts(const CtlConfig *cfg, const char *runtime);
/* "off" | "report" | "resend". */
const char  *ctl_reconcile_name(CtlReconcile mode);

/* KEY as in the config file's [ctlfs] group (dashes or underscores). Returns
 * the canonical name, or NULL when KEY is not a setting. */
const char *ctl_config_key(const char *key);
/* One setting from text. FALSE + an error naming the key and the value. */
gboolean ctl_config_set(CtlConfig *cfg, const char *key, const char *value, GError **error);

/* A librdkafka property for both clients (ctlfs's own are refused, see
 * kafka-props.h; whether librdkafka knows it is checked with all of them by
 * ctl_kafka_props_check()). Given again, its value is replaced in place.
 * COMMAND_LINE: from -o kafka.KEY=VALUE, where a credential is refused
 * (ps and /proc/PID/cmdline show it to every user). */
gboolean ctl_config_set_kafka(CtlConfig *cfg, const char *key, const char *value,
                              gboolean command_line, GError **error);

/* A config file's text: [ctlfs] settings, [access] and [access RUNTIME] rules
 * (keys read, command, declare; values are lists of principals separated by
 * ';' or ','), [runtime RUNTIME] (backend, dialect), [rama] (cli,
 * timeout-ms), [kafka] (librdkafka properties) and [topics]
 * (topic-settings.h). Unknown groups and keys are errors. ORIGIN names the file in
 * errors. On failure CFG may hold part of the file: the caller gives up. */
gboolean ctl_config_parse(CtlConfig *cfg, const char *data, gsize len, const char *origin,
                          GError **error);
/* Reads and parses the file at PATH. A file whose [kafka] group holds a
 * credential is refused when others may read it, or its group and it is not
 * root's (ctl_kafka_secret_file_readers()). */
gboolean ctl_config_load(CtlConfig *cfg, const char *path, GError **error);
