/* librdkafka client properties from the configuration (the [kafka] group,
 * -o kafka.KEY=VALUE): which ones ctlfs keeps for itself, which ones are
 * credentials, checking them at start, applying them to a client's conf, and
 * masking credentials in any text that may echo them.
 *
 * PROPS is always a NULL-terminated list key, value, key, value, ..., NULL
 * (NULL itself: none).
 *
 * Base layer: glib and librdkafka only, no other module of core/. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>
#include <sys/types.h>

/* What a credential is shown as, everywhere. */
#define CTL_KAFKA_MASK "***"

/* Why KEY may not be set by the user (ctlfs sets it itself and depends on
 * its value), or NULL when it may. */
const char *ctl_kafka_prop_reserved(const char *key);

/* TRUE when KEY's value is a credential: a name containing "password" or
 * "secret" (sasl.password, ssl.key.password, ssl.keystore.password,
 * sasl.oauthbearer.client.secret, ...), the private key itself
 * (ssl.key.pem), and sasl.oauthbearer.config (which may carry one). User
 * names, file locations and mechanisms are not credentials. */
gboolean    ctl_kafka_prop_secret(const char *key);
gboolean    ctl_kafka_props_have_secret(const char *const *props);

/* Each property on a scratch conf, as the clients will get them: FALSE +
 * ERROR "[kafka] KEY: REASON" for the first that is reserved, unknown to
 * librdkafka or has an invalid value. A credential's value never appears in
 * the message. */
gboolean    ctl_kafka_props_check(const char *const *props, GError **error);

/* What only a client can tell: a client made with PROPS (no broker named,
 * so it connects nowhere) and destroyed at once. librdkafka loads the CA,
 * certificate and key files then and checks combinations of properties:
 * FALSE + ERROR "[kafka] REASON" (credentials masked) when it refuses.
 * Starts and joins librdkafka's threads: not before a fork. */
gboolean    ctl_kafka_props_try_client(const char *const *props, GError **error);

/* Sets PROPS on CONF (after ctlfs's own defaults, so that they win over
 * those). FALSE + ERROR (credentials masked) when librdkafka refuses one. */
gboolean    ctl_kafka_props_apply(rd_kafka_conf_t *conf, const char *const *props, GError **error);

/* TEXT with every occurrence of a credential's value in PROPS replaced by
 * CTL_KAFKA_MASK. Newly allocated. */
char       *ctl_kafka_props_mask(const char *text, const char *const *props);
/* Masks ERROR's message in place (ERROR may be NULL or unset). */
void        ctl_kafka_props_mask_error(GError *error, const char *const *props);

/* "key=value key=*** ..." for a log line, credentials masked; "-" when none. */
char       *ctl_kafka_props_describe(const char *const *props);

/* Who besides the owner may read a file of MODE owned by OWNER that holds
 * credentials, when that is too many: "others" when others may read it,
 * "its group" when its group may and the owner is not root (a root-owned
 * file may be shared with one group, 0640, as PostgreSQL allows for its
 * key file). NULL when the mode is tight enough. */
const char *ctl_kafka_secret_file_readers(mode_t mode, uid_t owner);
