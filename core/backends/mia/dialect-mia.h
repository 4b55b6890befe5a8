/* The Mia-Platform Fast Data runtime management dialect (seed 000): the shape
 * of a mia runtime's Kafka messages. Codec only (jansson); what the engine
 * does with them is in mia.c. The formats are Mia-Platform's published JSON
 * schemas fast-data-control-plane-state.schema.json (commands: the desired
 * "FastDataState") and fast-data-control-plane-feedback.schema.json (the
 * "ServiceFeedback" heartbeat); docs/seeds/mia.md maps them to ctlfs.
 *
 * A state message is the runtime's whole desired state: a runtime-wide state
 * that nested overrides refine (pipeline, then artifact, then exec step):
 *
 *   key   {"id":"RT"}
 *   value {"pipelines":{"state":"resume","override":{
 *            "RT":{"state":"resume","name":"RT","override":{
 *              "svc":{"state":"pause","name":"svc"}}}}},
 *          "ctlfs":{ the ctlfs command object, SPEC.md }}
 *
 * ctlfs maps one runtime to one Mia pipeline and one resource to one
 * artifact. Override keys are Mia's ids (UUIDs) once known -- from the
 * runtime's feedback or the config file -- and the names until then; "name"
 * is always ctlfs's name (the runtime's, the resource's). The top "state" is
 * the runtime-wide state; only resources with a state of their own are
 * overridden (docs/seeds/mia.md). */
#pragma once
#include <glib.h>

#include "message.h"

/* A node of the state tree: the top ("pipelines"), a pipeline, an artifact or
 * an exec step. Children are keyed by the id Mia uses as the override key. */
typedef struct CtlMiaNode CtlMiaNode;
struct CtlMiaNode {
  char       *name;      /* NULL at the top */
  gboolean    pause;     /* its "state": TRUE "pause", FALSE "resume" */
  GHashTable *override;  /* id -> CtlMiaNode*, NULL when absent */
};

/* A decoded state (command) message. */
typedef struct {
  CtlMiaNode    *pipelines;
  gboolean       has_ctlfs;  /* the "ctlfs" member was there (and valid) */
  CtlCommandMsg  ctlfs;
} CtlMiaState;

/* One artifact override in a state message: keyed by ID (Mia's artifact id,
 * the resource's name until one is known), named NAME. */
typedef struct {
  const char *id, *name;
  gboolean    pause;
} CtlMiaDesired;

/* The command key: {"id":"RT"} (g_free). */
char    *ctl_mia_command_key(const char *runtime);
/* The state message for CMD: the runtime-wide state (PAUSE_ALL) at the top
 * and for pipeline PIPELINE_ID (named after CMD's runtime), refined by one
 * artifact override per entry of DESIRED (N of them; CMD's own resource must
 * be among them), with CMD itself as "ctlfs" (g_free). */
char    *ctl_mia_command_encode(const CtlCommandMsg *cmd, const char *pipeline_id,
                                gboolean pause_all, const CtlMiaDesired *desired, gsize n);
/* Decodes a state message. Without "pipelines" but with ctlfs's own fields
 * (an older or another host's plain ctlfs command on the same topic) it is
 * taken as that, with OUT->pipelines NULL. When REQUIRE_CTLFS, a state
 * message must carry a "ctlfs" command whose verb the override agrees with.
 * FALSE with a one-line ERROR (CTL_MESSAGE_ERROR) otherwise. */
gboolean ctl_mia_state_decode(const void *buf, gsize len, gboolean require_ctlfs,
                              CtlMiaState *out, GError **error);
void     ctl_mia_state_clear(CtlMiaState *s);
/* Whether artifact ARTIFACT of pipeline PIPELINE is to be paused: the
 * innermost state that names it (matched by override key or by name). */
gboolean ctl_mia_state_pauses(const CtlMiaState *s, const char *pipeline, const char *artifact);
/* The same with ids: the pipeline by key PIPELINE_ID or name PIPELINE, the
 * artifact by key ARTIFACT_ID or name ARTIFACT (either id may be NULL). */
gboolean ctl_mia_state_pauses_by_id(const CtlMiaState *s, const char *pipeline_id,
                                    const char *pipeline, const char *artifact_id,
                                    const char *artifact);
/* The pipeline node of S with key ID or name NAME (either may be NULL), or
 * NULL. Its artifacts: override key -> CtlMiaNode* (name, pause). */
const CtlMiaNode *ctl_mia_state_pipeline(const CtlMiaState *s, const char *id, const char *name);
/* Artifact names that the overrides of pipeline PIPELINE name. */
GPtrArray *ctl_mia_state_artifacts(const CtlMiaState *s, const char *pipeline);

/* Feedback: key {"pipeline":{"id":"RT","name":"RT"}}, value
 * {"edges":[{"artifact":{"id":"svc","name":"svc"},"exec":{...},"state":"paused"}]}. */
char    *ctl_mia_feedback_key(const char *pipeline_id, const char *pipeline);
/* The pipeline id and name of a feedback key (g_free each; NULL when absent
 * or not a string); FALSE when KEY is not a JSON object. */
gboolean ctl_mia_feedback_key_decode(const void *key, gsize len, char **id, char **name);
/* NAMES, their artifact IDS and STATES (N each) as one feedback value; EXEC
 * names the step. */
char    *ctl_mia_feedback_encode(const char *const *names, const char *const *ids,
                                 const char *const *states, gsize n, const char *exec);
/* A decoded edge: the report (first, so that an edge is also a
 * CtlFeedbackMsg*) and the artifact's id when the edge gave one. */
typedef struct {
  CtlFeedbackMsg fb;
  char          *artifact_id;
} CtlMiaEdge;

typedef enum {
  CTL_MIA_FEEDBACK,        /* decoded: *EDGES holds one CtlMiaEdge per artifact */
  CTL_MIA_NOT_MIA,         /* a JSON object without "edges": another shape */
  CTL_MIA_MALFORMED,       /* ERROR says why; nothing is to be applied */
} CtlMiaFeedbackResult;

/* Decodes a feedback value. An edge that cannot be used (not an object, no
 * or a bad artifact name, a bad state) is left out, with a one-line reason
 * naming its index added to *SKIPPED (a GPtrArray of strings, NULL when none
 * was); the others are decoded. Edges of one artifact (several exec steps) fold
 * into one report: their common state, or "running" with a message naming
 * each step's state when they differ (some step still consumes). *EDGES is a
 * GPtrArray of CtlMiaEdge* (freed with it); command_id is always NULL. */
CtlMiaFeedbackResult ctl_mia_feedback_decode(const void *buf, gsize len, GPtrArray **edges,
                                             GPtrArray **skipped, GError **error);
