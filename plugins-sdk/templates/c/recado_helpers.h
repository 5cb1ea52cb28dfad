/* Helpers for recado rules, as the Rust SDK has them: keyword matching that ignores case and accents, the
 * acknowledgement window, picking a text by language, and filling in a decision. */
#ifndef RULES_RECADO_HELPERS_H
#define RULES_RECADO_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "json.h"
#include "rules.h"

/* A growable text. */
typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
} text_t;

void text_add(text_t *text, const char *bytes, size_t length);
void text_addf(text_t *text, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Lower-cases UTF-8 `text` and removes accents of Latin letters, so "Urgència", "URGENCIA" and "urgencia"
 * compare equal. Other scripts (Cyrillic, Greek) are only lower-cased. */
text_t fold(const char *text, size_t length);

/* True if `text` contains one of `keywords` (a JSON array of strings: words or phrases) as whole words,
 * ignoring case and accents: "Es URGENTE" contains "urgente", "urgentemente" does not. */
bool contains_any(const char *text, size_t length, const json *keywords);

/* True if the conversation got an automatic acknowledgement within the last `minutes`. */
bool acknowledged_within(const rules_context_t *ctx, long long minutes);

/* From a JSON object keyed by language: the value for `language` (may be NULL), else for the client's first
 * language, else any; NULL when there is none. */
const json *pick_text(const json *texts, const rules_option_string_t *language, const rules_list_string_t *languages);

/* An empty decision (no opinion on anything). */
void decision_init(rules_decision_t *decision);

/* Adds a tag to a decision. */
void decision_tag(rules_decision_t *decision, const char *tag);

/* Sets an optional string of a decision. */
void option_set(rules_option_string_t *option, const char *text, size_t length);

/* Refuses the call with a reason: recado records it and the business's defaults apply. Returns false, what
 * an export returns to refuse. */
bool refuse(rules_string_t *err, const char *reason, const char *detail);

#endif
