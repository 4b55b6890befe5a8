/* The two Kafka message formats of the contract (SPEC.md, "Messages"):
 * commands (ctlfs -> runtime) and feedback (runtime -> ctlfs). JSON objects,
 * UTF-8, encoded and decoded with jansson. Unknown fields are ignored. */
#pragma once
#include <glib.h>

#define CTL_MSG_HEADER_NAME    "ctlfs-version"
#define CTL_MSG_HEADER_VALUE   "1"
/* A command's id, resource and verb as headers too (both dialects), so that
 * the daemon recognises its own commands read back from the topic without
 * parsing them (command.c), and tools can filter on them. Never trusted: a
 * message is taken as ours only if its bytes are the ones we produced. */
#define CTL_MSG_HEADER_ID       "ctlfs-id"
#define CTL_MSG_HEADER_RESOURCE "ctlfs-resource"
#define CTL_MSG_HEADER_VERB     "ctlfs-verb"
#define CTL_MSG_ID_MAX          64   /* a longer ctlfs-id header is ignored */
#define CTL_MSG_MAX_BYTES      (1024 * 1024)   /* larger feedback is rejected */

#define CTL_MESSAGE_ERROR (ctl_message_error_quark())
GQuark ctl_message_error_quark(void);
typedef enum {
  CTL_MESSAGE_ERROR_JSON,      /* not a JSON object, or invalid UTF-8, or too big */
  CTL_MESSAGE_ERROR_FIELD,     /* a required field missing or of the wrong type */
  CTL_MESSAGE_ERROR_VALUE,     /* a field has a value outside the contract */
} CtlMessageError;

/* A command. Strings are owned (g_free) by the struct; clear with
 * ctl_command_msg_clear(). */
typedef struct {
  char  *id;             /* UUID (v7), required */
  char  *runtime;        /* valid name, required */
  char  *resource;       /* valid name; NULL in a runtime-wide command ("scope":
                            "runtime"), which sets the runtime's own state */
  char  *verb;           /* pause|resume|start|stop, or inherit (a resource
                            follows its runtime again); runtime-wide: pause|resume */
  gint64 issued_at_ms;   /* "issued_at", RFC 3339 UTC ms, required */
  gint64 expires_at_ms;  /* "expires_at", optional (0 = absent): an agent must not
                            apply a command received after this time (durable mode
                            sets it to issued_at + ack timeout) */
  /* "issued_by" object, all optional on decode (uid -1 / NULL when absent) */
  gint64 uid;
  char  *user;
  gint64 pid;
  char  *comm;
  char  *host;
  char  *mode;           /* "mode", optional: a lifecycle flow's ordinary|realtime,
                            NULL when absent (seed 001) */
} CtlCommandMsg;

/* A feedback message. */
typedef struct {
  char  *resource;       /* valid name, required */
  char  *state;          /* one of ctl_observed_state_valid(), required */
  char  *command_id;     /* optional, NULL when absent or null */
  gint64 ts_ms;          /* "ts", optional on decode (0 when absent) */
  char  *message;        /* optional text */
  char  *metrics_json;   /* optional: the "metrics" object re-serialised compactly */
} CtlFeedbackMsg;

/* TRUE for pause, resume, start, stop. */
gboolean ctl_verb_valid(const char *verb);
/* TRUE for the states a runtime may report: running paused pausing resuming
 * starting stopping stopped sleeping shutting-down unknown ("stale" is ctlfs's own
 * and is rejected in feedback). */
gboolean ctl_observed_state_valid(const char *state);

/* Encode to a compact JSON string (g_free). Never fails for a filled struct. */
char    *ctl_command_msg_encode(const CtlCommandMsg *msg);
char    *ctl_feedback_msg_encode(const CtlFeedbackMsg *msg);

/* Decode BUF (LEN bytes, not NUL-terminated). On failure returns FALSE, sets
 * ERROR with a one-line reason naming the field, and leaves OUT cleared. */
gboolean ctl_command_msg_decode(const void *buf, gsize len, CtlCommandMsg *out, GError **error);
gboolean ctl_feedback_msg_decode(const void *buf, gsize len, CtlFeedbackMsg *out, GError **error);

void     ctl_command_msg_clear(CtlCommandMsg *msg);
void     ctl_feedback_msg_clear(CtlFeedbackMsg *msg);

/* Topic names: PREFIX.RT.commands and PREFIX.RT.feedback (g_free). */
char    *ctl_topic_commands(const char *prefix, const char *runtime);
char    *ctl_topic_feedback(const char *prefix, const char *runtime);

/* A new UUID version 7 (time-ordered) as 36 lowercase chars + NUL into BUF. */
void     ctl_uuid7(char buf[37]);
