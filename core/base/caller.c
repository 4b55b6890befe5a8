#include "caller.h"

#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"

/* getpwuid_r() reads /etc/passwd (or asks NSS) each time: five system calls
 * per command. Names are kept for a minute, which a renamed user outlives. */
#define USER_CACHE_US (60 * G_USEC_PER_SEC)

typedef struct {
  char  *name;
  gint64 at;
} CachedUser;

static void
cached_user_free(gpointer p)
{
  CachedUser *c = p;
  g_free(c->name);
  g_free(c);
}

static char *
user_name(uid_t uid)
{
  static GHashTable *cache;   /* main thread only */
  if (!cache)
    cache = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, cached_user_free);
  gint64 now = g_get_monotonic_time();
  CachedUser *c = g_hash_table_lookup(cache, GUINT_TO_POINTER(uid));
  if (c && now - c->at < USER_CACHE_US)
    return g_strdup(c->name);
  struct passwd pw, *res = NULL;
  char buf[1024];
  c = g_new(CachedUser, 1);
  c->at = now;
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res)
    c->name = g_strdup(res->pw_name);
  else
    c->name = g_strdup_printf("%u", (unsigned) uid);
  g_hash_table_replace(cache, GUINT_TO_POINTER(uid), c);
  return g_strdup(c->name);
}

/* /proc/PID/comm; the process may already be gone, which is not an error.
 * Three system calls (open, read, close: the file is at most 16 bytes). */
static char *
comm_read(pid_t pid)
{
  char path[64], buf[64];
  g_snprintf(path, sizeof path, "/proc/%d/comm", (int) pid);
  int fd = pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0)
    close(fd);
  if (n <= 0)
    return g_strdup("?");
  buf[n] = '\0';
  return g_strchomp(g_strdup(buf));
}

/* A script issuing commands in a loop is one pid writing hundreds of times a
 * second: its comm is read at most once per COMM_CACHE_US. What that costs:
 * a process that exec()s and writes again within that time is recorded
 * under the name it had before (the pid is the same, and the audit keeps it
 * too). The table is emptied whenever it is older than that. */
#define COMM_CACHE_US (100 * 1000)

static char *
comm_of(pid_t pid)
{
  static GHashTable *cache;   /* main thread only; pid -> comm */
  static gint64 filled_at;
  gint64 now = g_get_monotonic_time();
  if (!cache)
    cache = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
  if (now - filled_at >= COMM_CACHE_US) {
    g_hash_table_remove_all(cache);
    filled_at = now;
  }
  const char *known = g_hash_table_lookup(cache, GINT_TO_POINTER(pid));
  if (known)
    return g_strdup(known);
  char *comm = comm_read(pid);
  if (pid > 0 && strcmp(comm, "?") != 0)
    g_hash_table_insert(cache, GINT_TO_POINTER(pid), g_strdup(comm));
  return comm;
}

void
ctl_caller_resolve(CtlCaller *who)
{
  if (!who->user)
    who->user = user_name(who->uid);
  if (!who->comm)
    who->comm = comm_of(who->pid);
  who->host = g_get_host_name();
}

void
ctl_caller_clear(CtlCaller *who)
{
  g_clear_pointer(&who->user, g_free);
  g_clear_pointer(&who->comm, g_free);
  g_clear_pointer(&who->groups, g_free);
}

char *
ctl_caller_describe(const CtlCaller *who)
{
  if (who->describe_as)
    return g_strdup(who->describe_as);
  GString *out = g_string_new(NULL);
  char *by = g_strdup_printf("uid:%u(%s)", (unsigned) who->uid, who->user ? who->user : "?");
  ctl_kv_append(out, "by", by);
  g_free(by);
  g_string_append_printf(out, " pid=%d", (int) who->pid);
  ctl_kv_append(out, "comm", who->comm);
  ctl_kv_append(out, "host", who->host);
  return g_string_free(out, FALSE);
}
