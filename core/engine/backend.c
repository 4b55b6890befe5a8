/* Finding an object's backend, and what the configuration may name. The
 * backends themselves are listed in core/backends/registry.c. */
#include "backend.h"
#include "engine-private.h"

#include <errno.h>
#include <string.h>

#include "name.h"

const CtlBackend *
ctl_engine_runtime_backend(CtlEngine *e, const char *runtime)
{
  return ctl_backend_for(ctl_config_backend(&e->cfg, runtime),
                         ctl_config_dialect(&e->cfg, runtime));
}

const CtlBackend *
ctl_backend_for(const char *backend, const char *dialect)
{
  for (const CtlBackend *const *b = ctl_backends; *b; b++)
    if ((*b)->backend && strcmp((*b)->backend, backend) == 0
        && strcmp((*b)->dialect, dialect) == 0)
      return *b;
  return NULL;
}

const CtlBackend *
ctl_engine_backend(CtlEngine *e, CtlObject *obj)
{
  if (obj->kind == CTL_KIND_RESOURCE)
    return ctl_engine_runtime_backend(e, obj->parent->name);
  for (const CtlBackend *const *b = ctl_backends; *b; b++)
    if ((*b)->kinds & (1u << obj->kind))
      return *b;
  return NULL;
}

gboolean
ctl_backend_takes(const CtlBackend *b, const char *verb)
{
  return verb != NULL && b->verbs && g_strv_contains(b->verbs, verb);
}

char *
ctl_backend_verbs_text(const CtlBackend *b)
{
  return g_strjoinv(", ", (char **) b->verbs);
}

gboolean
ctl_backend_underway(const CtlBackend *b, const char *verb, const char *state)
{
  for (const CtlUnderway *u = b->underway; u && u->verb; u++)
    if (g_strcmp0(verb, u->verb) == 0 && g_strcmp0(state, u->state) == 0)
      return TRUE;
  return FALSE;
}

/* The values a runtime backend's configuration may take, for messages:
 * "kafka or lifecycle". */
static char *
known(gboolean dialects)
{
  GPtrArray *names = g_ptr_array_new();
  for (const CtlBackend *const *b = ctl_backends; *b; b++) {
    const char *name = dialects ? (*b)->dialect : (*b)->backend;
    gboolean seen = FALSE;
    for (guint i = 0; name && i < names->len; i++)
      seen = seen || strcmp(names->pdata[i], name) == 0;
    if (name && !seen)
      g_ptr_array_add(names, (gpointer) name);
  }
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < names->len; i++)
    g_string_append_printf(s, "%s%s", i == 0 ? "" : i + 1 == names->len ? " or " : ", ",
                           (char *) names->pdata[i]);
  g_ptr_array_free(names, TRUE);
  return g_string_free(s, FALSE);
}

static gboolean
check_one(const char *where, const char *backend, const char *dialect, GError **error)
{
  const char *bad_key = NULL, *bad = NULL;
  gboolean backend_known = FALSE, dialect_known = FALSE;
  for (const CtlBackend *const *b = ctl_backends; *b; b++) {
    backend_known = backend_known || ((*b)->backend && strcmp((*b)->backend, backend) == 0);
    dialect_known = dialect_known || ((*b)->dialect && strcmp((*b)->dialect, dialect) == 0);
  }
  if (!backend_known)
    bad_key = "backend", bad = backend;
  else if (!dialect_known)
    bad_key = "dialect", bad = dialect;
  if (bad_key) {
    char *expected = known(bad == dialect);
    char *shown = g_strescape(bad, NULL);
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%sinvalid value for %s: '%s' (expected %s)", where, bad_key, shown, expected);
    g_free(shown);
    g_free(expected);
    return FALSE;
  }
  if (!ctl_backend_for(backend, dialect)) {
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%sbackend %s does not speak dialect %s", where, backend, dialect);
    return FALSE;
  }
  return TRUE;
}

gboolean
ctl_backends_check(const CtlConfig *cfg, GError **error)
{
  if (!check_one("", ctl_config_backend(cfg, NULL), ctl_config_dialect(cfg, NULL), error))
    return FALSE;
  GHashTableIter it;
  gpointer name;
  g_hash_table_iter_init(&it, cfg->runtimes);
  while (g_hash_table_iter_next(&it, &name, NULL)) {
    char *where = g_strdup_printf("[runtime %s] ", (char *) name);
    gboolean ok = check_one(where, ctl_config_backend(cfg, name), ctl_config_dialect(cfg, name),
                            error);
    g_free(where);
    if (!ok)
      return FALSE;
  }
  return TRUE;
}

const char *
ctl_engine_desired(CtlEngine *e, CtlObject *obj)
{
  const CtlBackend *b = ctl_engine_backend(e, obj);
  if (b && b->desired)
    return b->desired(e, obj);
  return obj->desired;
}

int
ctl_engine_create(CtlEngine *e, CtlObject *dir, const char *name, CtlCaller *who,
                  CtlObject **out)
{
  *out = NULL;
  const CtlBackend *b = ctl_engine_backend(e, dir);
  if (ctl_engine_type(e, dir)->children != CTL_CHILDREN_CREATE || !b || !b->create) {
    if (ctl_model_child(dir, name) || ctl_engine_names_a_file(e, dir, name))
      return EEXIST;
    char *request = g_strdup_printf("create %s", name);
    ctl_engine_refuse_request(e, dir, CTL_ACCESS_COMMAND, EPERM, request,
                              "files are not declared here", who);
    g_free(request);
    return EPERM;
  }
  /* Declaring a file in a directory of settings is a command on its owner. */
  int err = ctl_engine_authorize_and_resolve(e, CTL_ACCESS_COMMAND, dir->parent, "create", name,
                                             who);
  if (err)
    return err;
  char *problem = ctl_model_name_problem(dir, name);
  if (problem) {
    char *request = g_strdup_printf("create %s", name);
    ctl_engine_refuse_request(e, dir->parent, CTL_ACCESS_COMMAND, EINVAL, request, problem, who);
    g_free(request);
    g_free(problem);
    return EINVAL;
  }
  int made = b->create(e, dir, name, who, out);
  GError *error = NULL;
  if (!made && ctl_engine_shared(e, *out)) {
    char *by = ctl_caller_describe(who);
    if (!ctl_engine_announce(e, *out, TRUE, by, &error)) {
      /* Other hosts could not be told: it must not exist only here. */
      g_warning("%s: cannot announce: %s", name, error->message);
      g_error_free(error);
      ctl_model_remove(ctl_engine_model(e), *out, by);
      *out = NULL;
      made = EIO;
    }
    g_free(by);
  }
  return made;
}

void
ctl_engine_backends_start(CtlEngine *e)
{
  for (const CtlBackend *const *b = ctl_backends; *b; b++)
    if ((*b)->start)
      (*b)->start(e);
}

void
ctl_engine_backends_stop(CtlEngine *e)
{
  for (const CtlBackend *const *b = ctl_backends; *b; b++)
    if ((*b)->stop)
      (*b)->stop(e);
}

gpointer
ctl_engine_backend_data(CtlEngine *e, const CtlBackend *b)
{
  return g_hash_table_lookup(e->backend_data, b);
}

void
ctl_engine_set_backend_data(CtlEngine *e, const CtlBackend *b, gpointer data)
{
  if (data)
    g_hash_table_insert(e->backend_data, (gpointer) b, data);
  else
    g_hash_table_remove(e->backend_data, b);
}
