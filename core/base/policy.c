#include "policy.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>

/* Ids are kept in GArrays of guint32 and compared as such. */
G_STATIC_ASSERT(sizeof(uid_t) == sizeof(guint32) && sizeof(gid_t) == sizeof(guint32));

/* One rule: who may do one thing. Unset rules fall back (see effective()). */
typedef struct {
  gboolean   set;
  gboolean   anyone;
  GArray    *uids;      /* uid_t */
  GArray    *gids;      /* gid_t */
  GPtrArray *written;   /* the principals as the config wrote them */
} Rule;

typedef struct {
  Rule rules[CTL_ACCESS_COUNT];
} RuleSet;

struct CtlPolicy {
  uid_t       owner;
  RuleSet     global;
  GHashTable *runtimes;   /* runtime name -> RuleSet* */
};

static const char *const access_names[CTL_ACCESS_COUNT] = {
  [CTL_ACCESS_READ] = "read", [CTL_ACCESS_COMMAND] = "command", [CTL_ACCESS_DECLARE] = "declare",
};

const char *
ctl_access_name(CtlAccess a)
{
  return a < CTL_ACCESS_COUNT ? access_names[a] : "?";
}

gboolean
ctl_access_from_name(const char *name, CtlAccess *out)
{
  for (int a = 0; a < CTL_ACCESS_COUNT; a++) {
    if (strcmp(name, access_names[a]) == 0) {
      *out = a;
      return TRUE;
    }
  }
  return FALSE;
}

static void
rule_reset(Rule *r)
{
  if (r->uids)
    g_array_unref(r->uids);
  if (r->gids)
    g_array_unref(r->gids);
  if (r->written)
    g_ptr_array_unref(r->written);
  memset(r, 0, sizeof *r);
}

static void
rule_init(Rule *r)
{
  rule_reset(r);
  r->set = TRUE;
  r->uids = g_array_new(FALSE, FALSE, sizeof(uid_t));
  r->gids = g_array_new(FALSE, FALSE, sizeof(gid_t));
  r->written = g_ptr_array_new_with_free_func(g_free);
}

static void
ruleset_free(gpointer p)
{
  RuleSet *rs = p;
  for (int a = 0; a < CTL_ACCESS_COUNT; a++)
    rule_reset(&rs->rules[a]);
  g_free(rs);
}

static void
policy_clear(gpointer p)
{
  CtlPolicy *pol = p;
  for (int a = 0; a < CTL_ACCESS_COUNT; a++)
    rule_reset(&pol->global.rules[a]);
  g_hash_table_unref(pol->runtimes);
}

CtlPolicy *
ctl_policy_new(uid_t owner)
{
  CtlPolicy *p = g_rc_box_new0(CtlPolicy);
  p->owner = owner;
  p->runtimes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, ruleset_free);
  return p;
}

CtlPolicy *
ctl_policy_ref(CtlPolicy *p)
{
  return p ? g_rc_box_acquire(p) : NULL;
}

void
ctl_policy_unref(CtlPolicy *p)
{
  if (p)
    g_rc_box_release_full(p, policy_clear);
}

/* A number is taken as an id even without a passwd entry (containers, NFS);
 * a name must resolve now, at start, so that a typo is an error. */
static gboolean
parse_id(const char *s, guint32 *out)
{
  guint64 n;
  /* (uid_t) -1 means "no id" to the kernel: never a principal. */
  if (!g_ascii_string_to_unsigned(s, 10, 0, G_MAXUINT32 - 1, &n, NULL))
    return FALSE;
  *out = (guint32) n;
  return TRUE;
}

static gboolean
resolve_principal(Rule *r, const char *text, GError **error)
{
  char buf[4096];
  guint32 id;
  if (strcmp(text, "*") == 0) {
    r->anyone = TRUE;
  } else if (text[0] == '@') {
    struct group gr, *found = NULL;
    if (parse_id(text + 1, &id)) {
      gid_t gid = id;
      g_array_append_val(r->gids, gid);
    } else if (text[1] && getgrnam_r(text + 1, &gr, buf, sizeof buf, &found) == 0 && found) {
      g_array_append_val(r->gids, found->gr_gid);
    } else {
      g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "no group '%s'", text + 1);
      return FALSE;
    }
  } else {
    struct passwd pw, *found = NULL;
    if (parse_id(text, &id)) {
      uid_t uid = id;
      g_array_append_val(r->uids, uid);
    } else if (*text && getpwnam_r(text, &pw, buf, sizeof buf, &found) == 0 && found) {
      g_array_append_val(r->uids, found->pw_uid);
    } else {
      g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                  "no user '%s' (groups are written @group)", text);
      return FALSE;
    }
  }
  g_ptr_array_add(r->written, g_strdup(text));
  return TRUE;
}

gboolean
ctl_policy_set(CtlPolicy *p, const char *runtime, CtlAccess access,
               const char *const *principals, gsize n, GError **error)
{
  Rule fresh = { 0 };
  rule_init(&fresh);
  for (gsize i = 0; i < n; i++) {
    char *t = g_strstrip(g_strdup(principals[i]));
    gboolean ok = !*t || resolve_principal(&fresh, t, error);
    g_free(t);
    if (!ok) {
      rule_reset(&fresh);
      return FALSE;
    }
  }
  RuleSet *rs = &p->global;
  if (runtime) {
    rs = g_hash_table_lookup(p->runtimes, runtime);
    if (!rs) {
      rs = g_new0(RuleSet, 1);
      g_hash_table_insert(p->runtimes, g_strdup(runtime), rs);
    }
  }
  rule_reset(&rs->rules[access]);
  rs->rules[access] = fresh;
  return TRUE;
}

void
ctl_policy_add_group(CtlPolicy *p, CtlAccess access, gid_t gid, const char *name)
{
  Rule *r = &p->global.rules[access];
  if (!r->set)
    rule_init(r);
  for (guint i = 0; i < r->gids->len; i++)
    if (g_array_index(r->gids, gid_t, i) == gid)
      return;
  g_array_append_val(r->gids, gid);
  g_ptr_array_add(r->written, g_strdup_printf("@%s", name));
}

/* The rule in force: the runtime's own, else the global one; declare that
 * nobody set follows command. NULL: unset everywhere (see unset_admits). */
static const Rule *
effective(const CtlPolicy *p, CtlAccess a, const char *runtime)
{
  const RuleSet *rs = runtime ? g_hash_table_lookup(p->runtimes, runtime) : NULL;
  if (rs && rs->rules[a].set)
    return &rs->rules[a];
  if (p->global.rules[a].set)
    return &p->global.rules[a];
  if (a == CTL_ACCESS_DECLARE)
    return effective(p, CTL_ACCESS_COMMAND, runtime);
  return NULL;
}

/* With no rule at all, reading is open and commands are not. */
static gboolean
unset_admits(CtlAccess a)
{
  return a == CTL_ACCESS_READ;
}

static gboolean
has_id(GArray *ids, guint32 id)
{
  for (guint i = 0; i < ids->len; i++)
    if (g_array_index(ids, guint32, i) == id)
      return TRUE;
  return FALSE;
}

gboolean
ctl_policy_allows(const CtlPolicy *p, CtlAccess access, const char *runtime, const CtlCaller *who)
{
  if (who->uid == 0 || who->uid == p->owner)
    return TRUE;
  const Rule *r = effective(p, access, runtime);
  if (!r)
    return unset_admits(access);
  if (r->anyone || has_id(r->uids, who->uid) || has_id(r->gids, who->gid))
    return TRUE;
  for (int i = 0; i < who->ngroups; i++)
    if (has_id(r->gids, who->groups[i]))
      return TRUE;
  return FALSE;
}

static gboolean
ruleset_uses_groups(const RuleSet *rs)
{
  for (int a = 0; a < CTL_ACCESS_COUNT; a++)
    if (rs->rules[a].set && rs->rules[a].gids->len > 0)
      return TRUE;
  return FALSE;
}

gboolean
ctl_policy_uses_groups(const CtlPolicy *p)
{
  if (ruleset_uses_groups(&p->global))
    return TRUE;
  GHashTableIter it;
  gpointer rs;
  g_hash_table_iter_init(&it, p->runtimes);
  while (g_hash_table_iter_next(&it, NULL, &rs))
    if (ruleset_uses_groups(rs))
      return TRUE;
  return FALSE;
}

/* ---- file modes ---- */

typedef enum { SHAPE_NOBODY, SHAPE_ONE_GROUP, SHAPE_CHECKED } Shape;

/* How a rule can be shown in mode bits. Root and the owner are covered by the
 * owner bits, so naming them changes nothing. */
static Shape
rule_shape(const CtlPolicy *p, const Rule *r, CtlAccess a, gid_t *gid)
{
  if (!r)
    return unset_admits(a) ? SHAPE_CHECKED : SHAPE_NOBODY;
  if (r->anyone || r->gids->len > 1)
    return SHAPE_CHECKED;
  for (guint i = 0; i < r->uids->len; i++) {
    uid_t u = g_array_index(r->uids, uid_t, i);
    if (u != 0 && u != p->owner)
      return SHAPE_CHECKED;
  }
  if (r->gids->len == 1) {
    *gid = g_array_index(r->gids, gid_t, 0);
    return SHAPE_ONE_GROUP;
  }
  return SHAPE_NOBODY;
}

static mode_t
shape_bits(Shape s, gid_t g, gid_t shown, mode_t bits)
{
  switch (s) {
  case SHAPE_NOBODY:    return 0;
  case SHAPE_ONE_GROUP: return g == shown ? bits << 3 : (bits << 3) | bits;
  case SHAPE_CHECKED:   return (bits << 3) | bits;
  }
  return 0;
}

mode_t
ctl_policy_mode(const CtlPolicy *p, const char *runtime, CtlAccess read, CtlAccess write,
                gboolean dir, gid_t *gid)
{
  gid_t gr = 0, gw = 0, shown = *gid;
  Shape sr = rule_shape(p, effective(p, read, runtime), read, &gr);
  Shape sw = write < CTL_ACCESS_COUNT ? rule_shape(p, effective(p, write, runtime), write, &gw)
                                      : SHAPE_NOBODY;
  if (sw == SHAPE_ONE_GROUP)
    shown = gw;
  else if (sr == SHAPE_ONE_GROUP)
    shown = gr;
  mode_t m = 0400 | (write < CTL_ACCESS_COUNT ? 0200 : 0);
  m |= shape_bits(sr, gr, shown, 04);
  if (write < CTL_ACCESS_COUNT)
    m |= shape_bits(sw, gw, shown, 02);
  /* Directories can always be traversed: who may write a file below one
   * must reach it, even without the right to list what is there. */
  if (dir)
    m |= 0111;
  *gid = shown;
  return m;
}

/* Root and the owner are always allowed (ctl_policy_allows): said, so that
 * a rule admitting no one else does not read as "nobody" ("-" did). */
static void
describe_rule(GString *out, const CtlPolicy *p, CtlAccess a, const char *runtime)
{
  const Rule *r = effective(p, a, runtime);
  g_string_append_printf(out, "%s%s=", out->len ? " " : "", access_names[a]);
  gboolean anyone = !r && unset_admits(a);
  for (guint i = 0; r && i < r->written->len; i++)
    anyone = anyone || strcmp(r->written->pdata[i], "*") == 0;
  if (anyone) {
    g_string_append_c(out, '*');
    return;
  }
  g_string_append(out, "root,owner");
  for (guint i = 0; r && i < r->written->len; i++)
    g_string_append_printf(out, ",%s", (char *) r->written->pdata[i]);
}

char *
ctl_policy_describe(const CtlPolicy *p, const char *runtime)
{
  GString *out = g_string_new(NULL);
  for (int a = 0; a < CTL_ACCESS_COUNT; a++)
    describe_rule(out, p, a, runtime);
  return g_string_free(out, FALSE);
}
