/* A small JSON reader for a plugin's configuration: parses a whole document into a tree (from malloc; give it
 * back with json_free). */
#ifndef RULES_JSON_H
#define RULES_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json {
    json_kind kind;
    bool boolean;
    double number;
    /* A string's text (UTF-8, escapes resolved, NUL-terminated) and its length in bytes. */
    char *string;
    size_t length;
    /* An array's items, or an object's values with their keys, in document order. */
    struct json **items;
    char **keys;
    size_t count;
} json;

/* Parses `text`; on failure returns NULL and points `error` at what went wrong. */
json *json_parse(const char *text, size_t length, const char **error);

/* Frees a tree json_parse returned (NULL is fine). */
void json_free(json *value);

/* The member `key` of an object, or NULL (absent, or not an object). */
const json *json_get(const json *object, const char *key);

/* The string `key` of an object, or NULL. */
const char *json_get_string(const json *object, const char *key);

/* The number `key` of an object, or `fallback`. */
double json_get_number(const json *object, const char *key, double fallback);

#endif
