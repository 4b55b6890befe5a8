/* Topic administration on the GLib main loop: does a topic exist, with how
 * many partitions and which configs; create it when it is missing (Kafka's
 * Admin API, CreateTopics and DescribeConfigs). Nothing blocks the loop:
 * the cluster's metadata is asked on a worker thread (librdkafka 2.0 has no
 * asynchronous call for it), the Admin API's answers arrive on a librdkafka
 * queue woken into the loop (queue-wake.h).
 *
 * For each ctl_topic_admin_ensure():
 *   1. metadata of the whole cluster (so that asking never auto-creates the
 *      topic, as a metadata request for the topic itself may): does it exist,
 *      its partition count and replication factor;
 *   2. missing: CreateTopics with the settings' partitions, replication
 *      factor and the role's configs (create=true), else the outcome MISSING;
 *      existing: DescribeConfigs, compared with the role's configs;
 *      TOPIC_ALREADY_EXISTS (another client was first): step 1 again, then
 *      as existing;
 *   3. the callback, on the main loop, once: CREATED, MATCHING, DIFFERING
 *      (the detail lists each difference), MISSING, UNAVAILABLE (no metadata,
 *      the Admin API timed out or is not supported) or FAILED (refused).
 * Every request is bounded by the settings' timeout_ms. Once the Admin API
 * was found unavailable, it is not asked again for five minutes: further
 * topics get UNAVAILABLE with the same reason at once (after their
 * metadata), and the daemon's log says so once, not once per topic.
 *
 * Base layer: glib, librdkafka, queue-wake and topic-settings. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "topic-settings.h"

typedef struct CtlTopicAdmin CtlTopicAdmin;

/* DETAIL: for CREATED, MATCHING the topic's partitions (and configs set);
 * for DIFFERING the differences ("cleanup.policy=delete (want compact),
 * partitions=3 (want 1)"); otherwise the reason. Never NULL. */
typedef void (*CtlTopicAdminResult)(const char *topic, CtlTopicRole role,
                                    CtlTopicOutcome outcome, const char *detail,
                                    gpointer user_data);

/* Uses RK (a producer or consumer handle that outlives the admin: free the
 * admin first) for its requests. SETTINGS is copied. NULL + ERROR when no
 * queue wake can be had. */
CtlTopicAdmin *ctl_topic_admin_new(rd_kafka_t *rk, const CtlTopicSettings *settings,
                                   CtlTopicAdminResult cb, gpointer user_data, GError **error);
/* Checks TOPIC for ROLE as above. A topic already being checked is not
 * checked twice: the one callback answers both calls. */
void           ctl_topic_admin_ensure(CtlTopicAdmin *ta, const char *topic, CtlTopicRole role);
/* Calls FN for each check under way, as asked (topic, role): to ask a new
 * admin the same, on a client made anew, before this one is freed. */
void           ctl_topic_admin_foreach_pending(CtlTopicAdmin *ta,
                                               void (*fn)(const char *topic, CtlTopicRole role,
                                                          gpointer user_data),
                                               gpointer user_data);
/* Drops the checks under way (no callback for them). Waits for a metadata
 * request in flight, at most the settings' timeout_ms. NULL is allowed. */
void           ctl_topic_admin_free(CtlTopicAdmin *ta);
