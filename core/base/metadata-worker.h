/* A metadata worker: rd_kafka_metadata() on a thread of its own, its results
 * on the main loop. rd_kafka_metadata() blocks (up to its timeout, with the
 * broker down), so a client driven by the GLib main loop cannot call it
 * there; the bus's partition discovery and ctlfs-agent's both use this.
 *
 * The contract:
 *  - Lookups happen when asked (ctl_metadata_worker_ask()), every PERIOD_MS
 *    when a period is given, and again soon while the callback says that
 *    something it looks for is missing: after 20 ms, doubling up to 2 s, the
 *    backoff starting again at 20 ms once nothing is missing. So a topic
 *    created a moment later (by another host's first command) is seen within
 *    milliseconds, and one nobody creates costs a request every two seconds.
 *  - Requests coalesce: asks made while a lookup is under way make one more
 *    lookup after it, not one each; a result the callback has not taken yet
 *    is replaced by a newer one. The callback sees the latest state.
 *  - Threading: the lookups run on the worker's thread; FN runs on the
 *    thread-default GMainContext of the thread that called
 *    ctl_metadata_worker_new(), through an idle source. Every function here
 *    is to be called from that thread.
 *  - RK is the caller's and must outlive the worker: free the worker before
 *    destroying RK (its thread may be inside rd_kafka_metadata() on it).
 *
 * Base layer: glib and librdkafka only, no other module of core/. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>

typedef struct CtlMetadataWorker CtlMetadataWorker;

/* One lookup's result: MD, NULL when the broker did not answer within the
 * timeout (or refused); MD is the worker's, valid during the call only.
 * Returns TRUE when something FN looks for is missing from it (a topic not
 * created yet), to be asked again soon with the backoff; FALSE otherwise.
 * FN may call ctl_metadata_worker_ask(), not ctl_metadata_worker_free(). */
typedef gboolean (*CtlMetadataFunc)(const struct rd_kafka_metadata *md, gpointer data);

/* Starts the worker's thread (named NAME) for lookups through RK: of TOPIC
 * only (where RK's broker and allow.auto.create.topics allow, the lookup
 * creates it), or, TOPIC NULL, of the topics RK has a handle for. Each
 * lookup waits up to TIMEOUT_MS. PERIOD_MS > 0: a lookup that often, for
 * partitions added to a topic; 0: none. No lookup is made until asked (or
 * the first period ends). FN (DATA) takes every result. */
CtlMetadataWorker *ctl_metadata_worker_new(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                           int period_ms, const char *name, CtlMetadataFunc fn,
                                           gpointer data);
/* A lookup as soon as the thread is free. */
void               ctl_metadata_worker_ask(CtlMetadataWorker *w);
/* Stops the thread, waiting for a lookup under way (at most its timeout),
 * and drops a result not taken yet: FN is not called again. NULL is
 * allowed. */
void               ctl_metadata_worker_free(CtlMetadataWorker *w);
