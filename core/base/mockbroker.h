/* A Kafka-protocol broker for demos and tests: librdkafka's mock cluster.
 * Used by ctlfs-broker (own process) and by ctlfs when no --brokers is given
 * (embedded). The cluster runs on librdkafka's own threads. */
#pragma once
#include <glib.h>

typedef struct CtlMockBroker CtlMockBroker;

/* Starts a cluster of N_BROKERS (>= 1) brokers on 127.0.0.1, random ports. */
CtlMockBroker *ctl_mock_broker_new(int n_brokers, GError **error);
/* "127.0.0.1:PORT,..." owned by the broker. */
const char    *ctl_mock_broker_bootstraps(CtlMockBroker *mb);
/* Applies one fault command line: "down ID", "up ID", "rtt ID MS" (ID is a
 * broker id, 1..n), or "topic NAME PARTITIONS" (makes the topic now, with
 * that many partitions and min(n, 3) replicas; the mock otherwise makes any
 * topic asked for, with 4). Leading/trailing space ignored. FALSE + ERROR when the
 * line is not understood or the id unknown. */
gboolean       ctl_mock_broker_fault(CtlMockBroker *mb, const char *line, GError **error);
void           ctl_mock_broker_free(CtlMockBroker *mb);
