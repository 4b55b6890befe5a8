/* Shared by backend-rama.c (commands, the outbox), rama-cli.c (running the
 * CLI) and rama-status.c (moduleStatus) only; not installed. */
#pragma once
#include "backend-rama.h"
#include "engine-private.h"

struct CtlRama {
  CtlEngine  *e;
  GHashTable *checks;       /* gint64* module key -> its last moduleStatus (rama-status.c) */
  GHashTable *runs;         /* CtlRamaRun* running (rama-cli.c) */
  guint       refresh;      /* the moduleStatus timer (rama-status.c) */
  gboolean    stopping;
};

/* backend-rama.c: logs EVENT on OBJ in a transaction of its own; a failure
 * is only warned of (what was done stands). */
void ctl_rama_log(CtlEngine *e, CtlObject *obj, const char *event, const char *details);

/* rama-status.c: each module's last `rama moduleStatus MOD`. Made before the
 * outbox runs (a command's end checks its module), started after it (the
 * modules not checked yet at once, then all every [rama] refresh-ms); stopped
 * with the daemon, freed once no CLI call is left (their ends look it up). */
void ctl_rama_status_init(CtlRama *r);
void ctl_rama_status_start(CtlRama *r);
void ctl_rama_status_stop(CtlRama *r);
void ctl_rama_status_free(CtlRama *r);
/* Runs `rama moduleStatus MOD` unless one is running (then once more after it). */
void ctl_rama_check_module(CtlRama *r, CtlObject *module);
