/* Shared by rama.c (commands, the outbox), rama-cli.c (running the
 * CLI) and rama-status.c (moduleStatus) only; not installed. */
#pragma once
#include "rama.h"
#include "rama-cli.h"

typedef struct CtlRama CtlRama;

struct CtlRama {
  CtlEngine  *e;
  GHashTable *checks;       /* gint64* module key -> its last moduleStatus (rama-status.c) */
  GHashTable *groups;       /* gint64* module key -> its last taskGroupsStatus (rama-groups.c) */
  CtlRamaCli  cli;          /* running the CLI (rama-cli.c) */
  guint       refresh;      /* the moduleStatus timer (rama-status.c) */
  gboolean    stopping;
};

/* rama.c: this engine's Rama backend, NULL before start or after stop. */
CtlRama *ctl_rama_of(CtlEngine *e);

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
/* rama-status.c: a module's `status`, the last `rama moduleStatus MOD`,
 * never run on read. */
void ctl_rama_show_module(CtlEngine *e, CtlObject *module, GString *out);
/* rama-groups.c: each module's last `rama taskGroupsStatus MOD INSTANCE`.
 * check() takes the output of a moduleStatus just run (NULL: it failed, and
 * nothing is run), keeps the instance id it names and lists that instance's task groups
 * unless a listing runs (then once more after it). */
void  ctl_rama_groups_init(CtlRama *r);
void  ctl_rama_groups_free(CtlRama *r);
void  ctl_rama_groups_check(CtlRama *r, CtlObject *module, const char *status_output);
void  ctl_rama_groups_forget(CtlRama *r, CtlObject *module);
/* The instance id in a moduleStatus output, or NULL (g_free). */
char *ctl_rama_instance_id(const char *output);
/* A module's `task-groups` file, never run on read. */
void  ctl_rama_show_groups(CtlEngine *e, CtlObject *module, GString *out);
/* rama.c: the last scale applied (`workers=2 threads=4`), or NULL. */
const char *ctl_rama_scale_value(CtlObject *module);
