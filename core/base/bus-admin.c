/* Topic administration (topic-admin.h) through the producer: the admin is
 * made from the settings kept, so that a producer made anew gets the same. */
#include "bus-private.h"

static void
on_topic_checked(const char *topic, CtlTopicRole role, CtlTopicOutcome outcome,
                 const char *detail, gpointer data)
{
  CtlBus *bus = data;
  if (bus->cb.topic_checked)
    bus->cb.topic_checked(topic, role, outcome, detail, bus->user_data);
}

/* From the settings kept, so that a producer made anew gets the same. */
static void
admin_new(CtlBus *bus)
{
  GError *error = NULL;
  bus->admin = ctl_topic_admin_new(bus->producer, &bus->topic_settings, on_topic_checked, bus,
                                   &error);
  if (!bus->admin) {
    g_warning("kafka admin: %s", error->message);
    g_error_free(error);
  }
}

void
ctl_bus_set_topic_settings(CtlBus *bus, const CtlTopicSettings *settings)
{
  g_clear_pointer(&bus->admin, ctl_topic_admin_free);
  ctl_topic_settings_clear(&bus->topic_settings);
  ctl_topic_settings_copy(&bus->topic_settings, settings);
  admin_new(bus);
}

void
ctl_bus_ensure_topic(CtlBus *bus, const char *topic, CtlTopicRole role)
{
  if (!bus->admin)
    admin_new(bus);
  if (bus->admin)
    ctl_topic_admin_ensure(bus->admin, topic, role);
  else
    on_topic_checked(topic, role, CTL_TOPIC_UNAVAILABLE, "admin unavailable: no queue", bus);
}

static void
ask_again(const char *topic, CtlTopicRole role, gpointer bus)
{
  ctl_bus_ensure_topic(bus, topic, role);
}

/* The admin uses the producer: one on the new producer takes over the
 * checks under way, so that each still gets its one answer. Before the old
 * producer goes: the old admin may be asking it for metadata. */
void
bus_renew_admin(CtlBus *bus)
{
  CtlTopicAdmin *old = g_steal_pointer(&bus->admin);
  if (!old)
    return;
  admin_new(bus);
  ctl_topic_admin_foreach_pending(old, ask_again, bus);
  ctl_topic_admin_free(old);
}
