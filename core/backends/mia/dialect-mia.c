/* The Mia-Platform Fast Data dialect's codec (see dialect-mia.h). */
#include "dialect-mia.h"

#include <jansson.h>
#include <string.h>

#include "verb.h"
#include "name.h"

/* Nesting of "override": pipelines, their artifacts, the artifacts' exec
 * steps. Deeper levels are not in Mia's schema and are ignored. */
#define DEPTH_MAX 3

static gboolean
fail(GError **error, CtlMessageError code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean
fail(GError **error, CtlMessageError code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *text = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error_literal(error, CTL_MESSAGE_ERROR, code, text);
  g_free(text);
  return FALSE;
}

/* As message.c: the size first, duplicate keys refused, the parser's text
 * (attacker-chosen bytes) escaped into one line. */
static json_t *
load_object(const void *buf, gsize len, GError **error)
{
  if (len > CTL_MSG_MAX_BYTES) {
    fail(error, CTL_MESSAGE_ERROR_JSON, "message: %" G_GSIZE_FORMAT " bytes, over the limit of %d",
         len, CTL_MSG_MAX_BYTES);
    return NULL;
  }
  json_error_t jerr;
  json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    char *text = g_strescape(jerr.text, "\"");
    fail(error, CTL_MESSAGE_ERROR_JSON, "message: invalid JSON at line %d column %d: %s",
         jerr.line, jerr.column, text);
    g_free(text);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    fail(error, CTL_MESSAGE_ERROR_JSON, "message: not a JSON object");
    return NULL;
  }
  return root;
}

static char *
dump(json_t *obj)
{
  char *text = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  return text;   /* malloc()ed: g_free() is free() (see message.c) */
}

/* ---- commands: encoding ---------------------------------------------------- */

char *
ctl_mia_command_key(const char *runtime)
{
  return dump(json_pack("{s:s}", "id", runtime));
}

static json_t *
node(const char *name, gboolean pause)
{
  return json_pack("{s:s, s:s}", "state", pause ? "pause" : "resume", "name", name);
}

char *
ctl_mia_command_encode(const CtlCommandMsg *cmd, const char *pipeline_id, gboolean pause_all,
                       const CtlMiaDesired *desired, gsize n)
{
  json_t *artifacts = json_object();
  for (gsize i = 0; i < n; i++)
    json_object_set_new(artifacts, desired[i].id ? desired[i].id : desired[i].name,
                        node(desired[i].name, desired[i].pause));
  /* The runtime-wide state at the top and for the runtime's pipeline: what
   * ctlfs does not override (resources it never commanded, artifacts it
   * does not know) follows the runtime. */
  json_t *pipeline = node(cmd->runtime, pause_all);
  json_object_set_new(pipeline, "override", artifacts);
  json_t *pipelines = json_pack("{s:s, s:{s:o}}", "state", pause_all ? "pause" : "resume",
                                "override", pipeline_id ? pipeline_id : cmd->runtime, pipeline);
  char *own = ctl_command_msg_encode(cmd);
  json_t *value = json_pack("{s:o, s:o}", "pipelines", pipelines, "ctlfs",
                            json_loads(own, 0, NULL));
  g_free(own);
  return dump(value);
}

/* ---- commands: decoding ---------------------------------------------------- */

static void
node_free(gpointer p)
{
  CtlMiaNode *n = p;
  if (!n)
    return;
  g_free(n->name);
  if (n->override)
    g_hash_table_unref(n->override);
  g_free(n);
}

/* PATH names the node in errors ("pipelines", "pipelines.override.RT", ...). */
static CtlMiaNode *
node_decode(json_t *j, const char *path, int depth, GError **error)
{
  if (!json_is_object(j)) {
    fail(error, CTL_MESSAGE_ERROR_FIELD, "field \"%s\": expected an object", path);
    return NULL;
  }
  const char *state = json_string_value(json_object_get(j, "state"));
  if (g_strcmp0(state, "pause") != 0 && g_strcmp0(state, "resume") != 0) {
    fail(error, CTL_MESSAGE_ERROR_VALUE, "field \"%s.state\": expected \"pause\" or \"resume\"", path);
    return NULL;
  }
  json_t *name = json_object_get(j, "name");
  if (depth > 0 && !json_is_string(name)) {
    fail(error, CTL_MESSAGE_ERROR_FIELD, "field \"%s.name\": expected a string", path);
    return NULL;
  }
  CtlMiaNode *n = g_new0(CtlMiaNode, 1);
  n->name = g_strdup(json_string_value(name));
  n->pause = strcmp(state, "pause") == 0;
  json_t *over = json_object_get(j, "override");
  if (over == NULL || json_is_null(over) || depth >= DEPTH_MAX)
    return n;
  if (!json_is_object(over)) {
    fail(error, CTL_MESSAGE_ERROR_FIELD, "field \"%s.override\": expected an object", path);
    node_free(n);
    return NULL;
  }
  n->override = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, node_free);
  const char *id;
  json_t *child;
  json_object_foreach(over, id, child) {
    /* The key comes from the wire: escaped, so that a reason stays one line
     * (found by tests/fuzz/fuzz-mia.c). */
    char *shown = g_strescape(id, NULL);
    char *sub = g_strdup_printf("%s.override.%s", path, shown);
    g_free(shown);
    CtlMiaNode *c = node_decode(child, sub, depth + 1, error);
    g_free(sub);
    if (!c) {
      node_free(n);
      return NULL;
    }
    g_hash_table_insert(n->override, g_strdup(id), c);
  }
  return n;
}

/* The child of N with key or name NAME. */
static const CtlMiaNode *
child(const CtlMiaNode *n, const char *name)
{
  if (!n || !n->override)
    return NULL;
  const CtlMiaNode *c = g_hash_table_lookup(n->override, name);
  if (c)
    return c;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, n->override);
  while (g_hash_table_iter_next(&it, NULL, &v))
    if (g_strcmp0(((CtlMiaNode *) v)->name, name) == 0)
      return v;
  return NULL;
}

/* The child of N with key ID, else with key or name NAME. */
static const CtlMiaNode *
child_by_id(const CtlMiaNode *n, const char *id, const char *name)
{
  const CtlMiaNode *c = id && n && n->override ? g_hash_table_lookup(n->override, id) : NULL;
  return c ? c : name ? child(n, name) : NULL;
}

const CtlMiaNode *
ctl_mia_state_pipeline(const CtlMiaState *s, const char *id, const char *name)
{
  return child_by_id(s->pipelines, id, name);
}

gboolean
ctl_mia_state_pauses_by_id(const CtlMiaState *s, const char *pipeline_id, const char *pipeline,
                           const char *artifact_id, const char *artifact)
{
  const CtlMiaNode *top = s->pipelines;
  if (!top)
    return FALSE;
  const CtlMiaNode *p = child_by_id(top, pipeline_id, pipeline);
  const CtlMiaNode *a = child_by_id(p, artifact_id, artifact);
  return a ? a->pause : p ? p->pause : top->pause;
}

gboolean
ctl_mia_state_pauses(const CtlMiaState *s, const char *pipeline, const char *artifact)
{
  return ctl_mia_state_pauses_by_id(s, NULL, pipeline, NULL, artifact);
}

GPtrArray *
ctl_mia_state_artifacts(const CtlMiaState *s, const char *pipeline)
{
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  const CtlMiaNode *p = s->pipelines ? child(s->pipelines, pipeline) : NULL;
  if (!p || !p->override)
    return names;
  GHashTableIter it;
  gpointer id, v;
  g_hash_table_iter_init(&it, p->override);
  while (g_hash_table_iter_next(&it, &id, &v))
    g_ptr_array_add(names, g_strdup(((CtlMiaNode *) v)->name));
  return names;
}

/* The ctlfs command riding in the state message, decoded by ctlfs's own
 * decoder so that both shapes are held to one contract. */
static gboolean
ctlfs_member(json_t *root, CtlMiaState *out, GError **error)
{
  json_t *own = json_object_get(root, "ctlfs");
  if (own == NULL || json_is_null(own))
    return TRUE;
  if (!json_is_object(own))
    return fail(error, CTL_MESSAGE_ERROR_FIELD, "field \"ctlfs\": expected an object");
  char *text = json_dumps(own, JSON_COMPACT);
  GError *inner = NULL;
  gboolean ok = ctl_command_msg_decode(text, strlen(text), &out->ctlfs, &inner);
  free(text);
  if (!ok) {
    fail(error, inner->code, "ctlfs %s", inner->message);
    g_error_free(inner);
    return FALSE;
  }
  out->has_ctlfs = TRUE;
  return TRUE;
}

/* Two readers of one message must not disagree: the ctlfs agent applies the
 * override as a Mia runtime would, other hosts record the ctlfs command. */
static gboolean
agrees(const CtlMiaState *s, GError **error)
{
  const CtlCommandMsg *c = &s->ctlfs;
  if (g_strcmp0(c->verb, CTL_VERB_INHERIT) == 0)
    return TRUE;   /* the resource follows the pipeline: whatever it says */
  const char *target = ctl_verb_target(c->verb);
  gboolean pause = g_strcmp0(target, "paused") == 0;
  if (g_strcmp0(target, "paused") != 0 && g_strcmp0(target, "running") != 0)
    return fail(error, CTL_MESSAGE_ERROR_VALUE, "field \"ctlfs.verb\": %s has no Mia state", c->verb);
  /* a runtime-wide command (no resource) is the pipeline's own state */
  if (ctl_mia_state_pauses(s, c->runtime, c->resource) != pause)
    return fail(error, CTL_MESSAGE_ERROR_VALUE,
                "field \"pipelines\": the override does not %s %s as its ctlfs command does",
                c->verb, c->resource ? c->resource : "the pipeline");
  return TRUE;
}

gboolean
ctl_mia_state_decode(const void *buf, gsize len, gboolean require_ctlfs, CtlMiaState *out,
                     GError **error)
{
  memset(out, 0, sizeof *out);
  out->ctlfs.uid = out->ctlfs.pid = -1;
  json_t *root = load_object(buf, len, error);
  if (!root)
    return FALSE;
  gboolean ok;
  json_t *pipelines = json_object_get(root, "pipelines");
  if (pipelines == NULL) {
    /* ctlfs's own shape on a mia runtime's topic */
    ok = ctl_command_msg_decode(buf, len, &out->ctlfs, error);
    out->has_ctlfs = ok;
  } else {
    out->pipelines = node_decode(pipelines, "pipelines", 0, error);
    ok = out->pipelines && ctlfs_member(root, out, error);
    if (ok && require_ctlfs && !out->has_ctlfs)
      ok = fail(error, CTL_MESSAGE_ERROR_FIELD, "field \"ctlfs\": missing (a Mia state message"
                " that no ctlfs host sent)");
    if (ok && out->has_ctlfs)
      ok = agrees(out, error);
  }
  json_decref(root);
  if (!ok)
    ctl_mia_state_clear(out);
  return ok;
}

void
ctl_mia_state_clear(CtlMiaState *s)
{
  node_free(s->pipelines);
  ctl_command_msg_clear(&s->ctlfs);
  memset(s, 0, sizeof *s);
  s->ctlfs.uid = s->ctlfs.pid = -1;
}

/* ---- feedback -------------------------------------------------------------- */

char *
ctl_mia_feedback_key(const char *pipeline_id, const char *pipeline)
{
  return dump(json_pack("{s:{s:s, s:s}}", "pipeline", "id", pipeline_id, "name", pipeline));
}

gboolean
ctl_mia_feedback_key_decode(const void *key, gsize len, char **id, char **name)
{
  *id = *name = NULL;
  json_t *root = key ? load_object(key, len, NULL) : NULL;
  if (!root)
    return FALSE;
  json_t *p = json_object_get(root, "pipeline");
  *id = g_strdup(json_string_value(json_object_get(p, "id")));
  *name = g_strdup(json_string_value(json_object_get(p, "name")));
  json_decref(root);
  return TRUE;
}

char *
ctl_mia_feedback_encode(const char *const *names, const char *const *ids,
                        const char *const *states, gsize n, const char *exec)
{
  json_t *edges = json_array();
  for (gsize i = 0; i < n; i++)
    json_array_append_new(edges, json_pack("{s:{s:s, s:s}, s:{s:s, s:s}, s:s}",
                                           "artifact", "id", ids[i], "name", names[i],
                                           "exec", "id", exec, "name", exec,
                                           "state", states[i]));
  return dump(json_pack("{s:o}", "edges", edges));
}

/* An item ({"id","name"} in Mia's schema; a bare string is taken too): its
 * name. */
static const char *
item_name(json_t *item)
{
  if (json_is_string(item))
    return json_string_value(item);
  return json_string_value(json_object_get(item, "name"));
}

static void
feedback_free(gpointer p)
{
  CtlMiaEdge *edge = p;
  ctl_feedback_msg_clear(&edge->fb);
  g_free(edge->artifact_id);
  g_free(edge);
}

/* An artifact's id ({"id","name"}), when it is a non-empty string. */
static const char *
item_id(json_t *item)
{
  const char *id = json_string_value(json_object_get(item, "id"));
  return id && *id ? id : NULL;
}

/* Folds one more exec step (EXEC in STATE) into the report for its artifact:
 * the steps are named in the message, and an artifact whose steps disagree
 * still consumes somewhere, so it is running (a pause is not done yet). */
static void
fold(CtlFeedbackMsg *fb, const char *exec, const char *state, GHashTable *mixed)
{
  char *steps = g_strdup_printf("%s %s=%s", fb->message, exec ? exec : "-", state);
  g_free(fb->message);
  fb->message = steps;
  if (g_strcmp0(fb->state, state) != 0) {
    g_hash_table_add(mixed, fb->resource);
    if (strcmp(fb->state, "running") != 0) {
      g_free(fb->state);
      fb->state = g_strdup("running");
    }
  }
}

/* Why edge I (EDGE) cannot be used, or NULL; *NAME, *STATE, *EXEC set when
 * it can. */
static char *
edge_unusable(json_t *edge, size_t i, const char **name, const char **state, const char **exec)
{
  if (!json_is_object(edge))
    return g_strdup_printf("field \"edges[%zu]\": expected an object", i);
  *name = item_name(json_object_get(edge, "artifact"));
  *state = json_string_value(json_object_get(edge, "state"));
  *exec = item_name(json_object_get(edge, "exec"));
  if (!*name)
    return g_strdup_printf("field \"edges[%zu].artifact\": missing its name", i);
  if (!ctl_name_valid(*name))
    return g_strdup_printf("field \"edges[%zu].artifact\": not a valid name"
                           " (1-128 bytes of [A-Za-z0-9._-], not . or ..)", i);
  if (!ctl_observed_state_valid(*state))
    return g_strdup_printf("field \"edges[%zu].state\": not a state a runtime may report", i);
  return NULL;
}

/* One bad edge costs only itself: a runtime's report on its other artifacts
 * is as good as ever. */
static void
decode_edges(json_t *edges, GPtrArray *out, GPtrArray **skipped)
{
  GHashTable *by_name = g_hash_table_new(g_str_hash, g_str_equal);
  GHashTable *mixed = g_hash_table_new(g_str_hash, g_str_equal);
  size_t i;
  json_t *edge;
  json_array_foreach(edges, i, edge) {
    const char *name = NULL, *state = NULL, *exec = NULL;
    char *why = edge_unusable(edge, i, &name, &state, &exec);
    if (why) {
      if (!*skipped)
        *skipped = g_ptr_array_new_with_free_func(g_free);
      g_ptr_array_add(*skipped, why);
      continue;
    }
    CtlMiaEdge *e = g_hash_table_lookup(by_name, name);
    if (!e) {
      e = g_new0(CtlMiaEdge, 1);
      e->fb.resource = g_strdup(name);
      e->fb.state = g_strdup(state);
      e->artifact_id = g_strdup(item_id(json_object_get(edge, "artifact")));
      g_ptr_array_add(out, e);
      g_hash_table_insert(by_name, e->fb.resource, e);
      e->fb.message = g_strdup_printf("%s=%s", exec ? exec : "-", state);
    } else {
      fold(&e->fb, exec, state, mixed);
    }
  }
  /* The steps are worth a message only when they disagree. */
  for (guint k = 0; k < out->len; k++) {
    CtlMiaEdge *e = out->pdata[k];
    if (!g_hash_table_contains(mixed, e->fb.resource))
      g_clear_pointer(&e->fb.message, g_free);
  }
  g_hash_table_unref(mixed);
  g_hash_table_unref(by_name);
}

CtlMiaFeedbackResult
ctl_mia_feedback_decode(const void *buf, gsize len, GPtrArray **edges, GPtrArray **skipped,
                        GError **error)
{
  *edges = NULL;
  *skipped = NULL;
  json_t *root = load_object(buf, len, error);
  if (!root)
    return CTL_MIA_MALFORMED;
  json_t *list = json_object_get(root, "edges");
  CtlMiaFeedbackResult r = CTL_MIA_FEEDBACK;
  if (list == NULL) {
    r = CTL_MIA_NOT_MIA;
  } else if (!json_is_array(list)) {
    fail(error, CTL_MESSAGE_ERROR_FIELD, "field \"edges\": expected an array");
    r = CTL_MIA_MALFORMED;
  } else {
    *edges = g_ptr_array_new_with_free_func(feedback_free);
    decode_edges(list, *edges, skipped);
  }
  json_decref(root);
  return r;
}
