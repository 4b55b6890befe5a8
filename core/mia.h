/* What the engine does differently for a runtime whose dialect is mia
 * (Mia-Platform Fast Data, seed 000); the message shapes are dialect-mia.c's.
 * Shared between command.c and feedback.c only. */
#pragma once
#include "engine-private.h"
#include "message.h"

/* Whether RT (a runtime) speaks the mia dialect. */
gboolean ctl_engine_mia(CtlEngine *e, CtlObject *rt);
/* The Kafka key of a command on OBJ's runtime (g_free). */
char    *ctl_engine_command_key(CtlEngine *e, CtlObject *obj);
/* The state message for MSG on OBJ: the runtime's whole desired state as it
 * stands once MSG is applied (g_free). */
char    *ctl_engine_mia_encode(CtlEngine *e, CtlObject *obj, const CtlCommandMsg *msg);
/* Decodes a message read from RT's command topic, in either shape. */
gboolean ctl_engine_mia_command_decode(const char *value, gsize len, CtlCommandMsg *msg,
                                       GError **error);
/* Mia feedback names no command: RES's pending command counts as applied
 * once the runtime reports STATE, the state that command asked for. */
void     ctl_engine_mia_settle(CtlEngine *e, CtlObject *res, const char *state);
