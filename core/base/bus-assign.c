/* Which partitions the consumer reads: every partition of every watched topic.
 *
 * Positions are the engine's (stored in SQLite with the state they
 * produced): the bus asks for one only when it first assigns a partition, and
 * then follows the messages it hands out. How many partitions a topic has is
 * learnt from metadata, asked for on a thread of its own (rd_kafka_metadata
 * blocks: metadata-worker.h), for every watched topic at once: when a topic
 * is watched, again soon while one is missing (not created yet), and every
 * DISCOVER_PERIOD_MS for partitions added to a topic. */
#include "bus-private.h"

#define DISCOVER_TIMEOUT_MS 1000   /* also how long a stop may wait for the thread */
#define DISCOVER_PERIOD_MS  10000

void
bus_watch_free(gpointer data)
{
  Watch *w = data;
  if (w->rkt)
    rd_kafka_topic_destroy(w->rkt);
  g_array_unref(w->at_end);
  g_free(w);
}

static void
apply_increment(CtlBus *bus, rd_kafka_topic_partition_list_t *list, gboolean add)
{
  if (list->cnt == 0)
    return;
  rd_kafka_error_t *err = add ? rd_kafka_incremental_assign(bus->consumer, list)
                              : rd_kafka_incremental_unassign(bus->consumer, list);
  if (err) {
    g_warning("kafka %s: %s", add ? "assign" : "unassign", rd_kafka_error_string(err));
    rd_kafka_error_destroy(err);
  }
}

/* Where partition P of TOPIC starts: the engine's stored position, else 0.
 * Offset 0, not "beginning": a logical offset is first resolved with the
 * partition's leader, and when that is not known yet librdkafka retries only
 * after half a second. Where retention removed offset 0,
 * auto.offset.reset=earliest takes over. */
static gint64
start_of(CtlBus *bus, const char *topic, int p)
{
  gint64 next = bus->cb.position ? bus->cb.position(topic, p, bus->user_data) : -1;
  return next >= 0 ? next : 0;
}

/* The consumer's assignment follows `watched` by increments, once per
 * main-loop iteration: only partitions that come or go are touched, and
 * several changes in a row (a runtime's two topics, every runtime at start,
 * rmdir then mkdir) cost one step. A whole-list rd_kafka_assign() stops and
 * restarts every partition; done twice in quick succession, librdkafka 2.0
 * can then abort on a partition stopped twice (the "rktp_started" assertion,
 * librdkafka issue 5573). */
static gboolean
reassign(gpointer data)
{
  CtlBus *bus = data;
  bus->reassign_src = 0;
  rd_kafka_topic_partition_list_t *gone = rd_kafka_topic_partition_list_new(4);
  rd_kafka_topic_partition_list_t *fresh = rd_kafka_topic_partition_list_new(4);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, bus->assigned);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    Watch *w = g_hash_table_lookup(bus->watched, key);
    if (w && w->assigned == 0) {   /* unwatched and watched again: keeps reading */
      w->assigned = GPOINTER_TO_INT(value);
      g_array_set_size(w->at_end, w->assigned);
    }
    if (w)
      continue;
    for (int p = 0; p < GPOINTER_TO_INT(value); p++)
      rd_kafka_topic_partition_list_add(gone, key, p);
    g_hash_table_iter_remove(&it);
  }
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    Watch *w = value;
    if (w->assigned >= w->partitions)
      continue;
    for (int p = w->assigned; p < w->partitions; p++)
      rd_kafka_topic_partition_list_add(fresh, key, p)->offset = start_of(bus, key, p);
    w->assigned = w->partitions;
    g_array_set_size(w->at_end, w->assigned);
    g_hash_table_replace(bus->assigned, g_strdup(key), GINT_TO_POINTER(w->assigned));
  }
  apply_increment(bus, gone, FALSE);
  apply_increment(bus, fresh, TRUE);
  rd_kafka_topic_partition_list_destroy(gone);
  rd_kafka_topic_partition_list_destroy(fresh);
  return G_SOURCE_REMOVE;
}

static void
reassign_soon(CtlBus *bus)
{
  if (!bus->reassign_src)
    bus->reassign_src = g_idle_add(reassign, bus);
}

/* The new consumer's topic handles, and no partition assigned: reassign()
 * assigns them all, each from position(); every end is waited for again. */
void
bus_watches_rebuild(CtlBus *bus)
{
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    Watch *w = value;
    if (w->rkt)
      rd_kafka_topic_destroy(w->rkt);    /* the old consumer's */
    w->rkt = rd_kafka_topic_new(bus->consumer, key, NULL);
    w->assigned = 0;
    g_array_set_size(w->at_end, 0);
  }
  g_hash_table_remove_all(bus->assigned);  /* the old consumer's assignment */
  reassign_soon(bus);
}

/* ---- partition discovery (a metadata worker: metadata-worker.h) ---- */

void
bus_discover_now(CtlBus *bus)
{
  ctl_metadata_worker_ask(bus->discovery);
}

/* Takes in what a lookup learnt: more partitions than assigned are assigned.
 * TRUE (asked again soon) while a watched topic is missing: one created by
 * someone else is read within milliseconds. */
static gboolean
on_discovered(const struct rd_kafka_metadata *md, gpointer data)
{
  CtlBus *bus = data;
  for (int i = 0; md && i < md->topic_cnt; i++) {
    const struct rd_kafka_metadata_topic *t = &md->topics[i];
    Watch *w = g_hash_table_lookup(bus->watched, t->topic);
    if (!w || t->err || t->partition_cnt <= w->partitions)
      continue;
    if (w->partitions > 0)
      g_info("kafka: %s has %d partitions now (was %d)", t->topic, t->partition_cnt,
             w->partitions);
    w->partitions = t->partition_cnt;
    reassign_soon(bus);
  }

  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, NULL, &value))
    if (((Watch *) value)->partitions == 0)
      return TRUE;
  return FALSE;
}

/* Known topics only (no topic named): the watched ones, which have a handle
 * on the consumer. */
void
bus_discovery_start(CtlBus *bus)
{
  bus->discovery = ctl_metadata_worker_new(bus->consumer, NULL, DISCOVER_TIMEOUT_MS,
                                           DISCOVER_PERIOD_MS, "ctlfs-discover", on_discovered,
                                           bus);
}

/* Before the consumer goes: the thread may be inside rd_kafka_metadata().
 * The watchdog starts it again on the new consumer. */
void
bus_discovery_stop(CtlBus *bus)
{
  g_clear_pointer(&bus->discovery, ctl_metadata_worker_free);
}

void
ctl_bus_watch(CtlBus *bus, const char *topic)
{
  Watch *w = g_new0(Watch, 1);
  w->rkt = rd_kafka_topic_new(bus->consumer, topic, NULL);
  w->at_end = g_array_new(FALSE, TRUE, sizeof(gboolean));
  g_hash_table_replace(bus->watched, g_strdup(topic), w);
  reassign_soon(bus);
  bus_discover_now(bus);
}

void
ctl_bus_unwatch(CtlBus *bus, const char *topic)
{
  if (g_hash_table_remove(bus->watched, topic))
    reassign_soon(bus);
}
