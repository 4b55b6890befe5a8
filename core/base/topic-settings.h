/* How ctlfs wants its topics: the [topics] group of the configuration, and
 * the comparison of a topic the broker described with that. Pure functions;
 * the Admin API calls are topic-admin.c's.
 *
 * Base layer: glib only, no other module of core/. */
#pragma once
#include <glib.h>

/* What a topic is for; each role has its own topic configs. */
typedef enum {
  CTL_TOPIC_COMMAND,    /* PREFIX.RT.commands */
  CTL_TOPIC_FEEDBACK,   /* PREFIX.RT.feedback */
  CTL_TOPIC_TREE,       /* PREFIX.tree: declarations shared by admin hosts */
} CtlTopicRole;
#define CTL_TOPIC_N_ROLES 3

/* What ctl_topic_admin_ensure() found or did. */
typedef enum {
  CTL_TOPIC_CREATED,      /* it was missing and has been created as configured */
  CTL_TOPIC_MATCHING,     /* it exists as configured */
  CTL_TOPIC_DIFFERING,    /* it exists otherwise; the detail lists each difference */
  CTL_TOPIC_MISSING,      /* it does not exist and create=false */
  CTL_TOPIC_UNAVAILABLE,  /* the Admin API did not answer (timed out, unsupported) */
  CTL_TOPIC_FAILED,       /* the broker refused (not authorised, invalid config, ...) */
} CtlTopicOutcome;

typedef struct {
  int       partitions;          /* for topics ctlfs creates; -1: the broker's default */
  int       replication_factor;  /* -1: the broker's default */
  gboolean  create;              /* create missing topics (Admin API CreateTopics) */
  int       timeout_ms;          /* one Admin API request's time limit */
  /* Per role: topic configs as key, value, ..., NULL (never NULL itself). */
  char    **configs[CTL_TOPIC_N_ROLES];
} CtlTopicSettings;

/* Defaults: partitions and replication factor the broker's, create=true,
 * timeout 5000 ms; command and tree topics cleanup.policy=compact; feedback
 * cleanup.policy=delete, retention.ms=604800000 (7 days). */
void        ctl_topic_settings_init(CtlTopicSettings *s);
void        ctl_topic_settings_clear(CtlTopicSettings *s);
void        ctl_topic_settings_copy(CtlTopicSettings *dst, const CtlTopicSettings *src);

/* "command", "feedback", "tree"; "created", "matching", "differing",
 * "missing", "unavailable", "failed". */
const char *ctl_topic_role_name(CtlTopicRole role);
const char *ctl_topic_outcome_name(CtlTopicOutcome outcome);

/* One key of [topics] (dashes or underscores): create, partitions,
 * replication-factor, timeout-ms, command-config, feedback-config,
 * tree-config. FALSE + ERROR naming the key (and the value) otherwise. */
gboolean    ctl_topic_settings_set(CtlTopicSettings *s, const char *key, const char *value,
                                   GError **error);

/* "key=value;key=value" (blanks around each part ignored, empty parts
 * skipped, "" for none) -> key, value, ..., NULL. Keys are Kafka topic
 * config names: [a-z0-9._-]+. FALSE + ERROR on a part without '=' or a bad
 * key; *OUT untouched then. */
gboolean    ctl_topic_configs_parse(const char *text, char ***out, GError **error);
/* The reverse: "key=value;key=value" ("" for none). */
char       *ctl_topic_configs_format(const char *const *configs);

/* The differences between a topic as described and as S wants it for
 * ROLE, as "cleanup.policy=delete (want compact), partitions=3 (want 1)",
 * or NULL when there is none. PARTITIONS, REPLICAS: the topic's (-1: not
 * known); compared only where S sets them. DESCRIBED: its configs (key,
 * value, ..., NULL), or NULL when they could not be had (not compared). */
char       *ctl_topic_compare(const CtlTopicSettings *s, CtlTopicRole role, int partitions,
                              int replicas, const char *const *described);
