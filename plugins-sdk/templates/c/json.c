/* See json.h. Recursive descent, nesting capped so a hostile document cannot exhaust the stack. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *at;
    const char *end;
    const char *error;
} reader;

static void skip_space(reader *r) {
    while (r->at < r->end && (*r->at == ' ' || *r->at == '\t' || *r->at == '\n' || *r->at == '\r')) r->at++;
}

static json *make(json_kind kind) {
    json *value = calloc(1, sizeof(json));
    if (value) value->kind = kind;
    return value;
}

static bool literal(reader *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->at) < n || memcmp(r->at, word, n) != 0) return false;
    r->at += n;
    return true;
}

static int hex4(const char *p) {
    int value = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        value <<= 4;
        if (c >= '0' && c <= '9') value |= c - '0';
        else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
        else return -1;
    }
    return value;
}

static size_t put_utf8(char *out, unsigned code) {
    if (code < 0x80) { out[0] = (char)code; return 1; }
    if (code < 0x800) { out[0] = (char)(0xC0 | code >> 6); out[1] = (char)(0x80 | (code & 0x3F)); return 2; }
    if (code < 0x10000) {
        out[0] = (char)(0xE0 | code >> 12); out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | code >> 18); out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3F)); out[3] = (char)(0x80 | (code & 0x3F)); return 4;
}

/* Reads a string after its opening quote; the text is at most as long as its escaped form. */
static char *read_string(reader *r, size_t *length) {
    char *out = malloc((size_t)(r->end - r->at) + 1);
    size_t n = 0;
    if (!out) { r->error = "out of memory"; return NULL; }
    while (r->at < r->end && *r->at != '"') {
        char c = *r->at++;
        if ((unsigned char)c < 0x20) { r->error = "a control character in a string"; goto fail; }
        if (c != '\\') { out[n++] = c; continue; }
        if (r->at >= r->end) break;
        char e = *r->at++;
        switch (e) {
        case '"': case '\\': case '/': out[n++] = e; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            int code = r->end - r->at >= 4 ? hex4(r->at) : -1;
            if (code < 0) { r->error = "a bad \\u escape"; goto fail; }
            r->at += 4;
            unsigned point = (unsigned)code;
            if (point >= 0xD800 && point < 0xDC00 && r->end - r->at >= 6 && r->at[0] == '\\' && r->at[1] == 'u') {
                int low = hex4(r->at + 2);
                if (low >= 0xDC00 && low < 0xE000) {
                    point = 0x10000 + ((point - 0xD800) << 10) + ((unsigned)low - 0xDC00);
                    r->at += 6;
                }
            }
            n += put_utf8(out + n, point);
            break;
        }
        default: r->error = "a bad escape"; goto fail;
        }
    }
    if (r->at >= r->end) { r->error = "an unterminated string"; goto fail; }
    r->at++;
    out[n] = '\0';
    *length = n;
    return out;
fail:
    free(out);
    return NULL;
}

static json *read_value(reader *r, int depth);

static bool push(json *parent, json *item, char *key) {
    json **items = realloc(parent->items, (parent->count + 1) * sizeof(json *));
    if (!items) return false;
    parent->items = items;
    if (parent->kind == JSON_OBJECT) {
        char **keys = realloc(parent->keys, (parent->count + 1) * sizeof(char *));
        if (!keys) return false;
        parent->keys = keys;
        parent->keys[parent->count] = key;
    }
    parent->items[parent->count++] = item;
    return true;
}

static json *read_container(reader *r, int depth, json_kind kind, char close) {
    json *value = make(kind);
    char *key = NULL;
    if (!value) { r->error = "out of memory"; return NULL; }
    skip_space(r);
    if (r->at < r->end && *r->at == close) { r->at++; return value; }
    for (;;) {
        if (kind == JSON_OBJECT) {
            skip_space(r);
            size_t ignored;
            if (r->at >= r->end || *r->at != '"') { r->error = "expected a key"; goto fail; }
            r->at++;
            if (!(key = read_string(r, &ignored))) goto fail;
            skip_space(r);
            if (r->at >= r->end || *r->at != ':') { r->error = "expected ':'"; goto fail; }
            r->at++;
        }
        json *item = read_value(r, depth + 1);
        if (!item) goto fail;
        if (!push(value, item, key)) { json_free(item); r->error = "out of memory"; goto fail; }
        key = NULL;
        skip_space(r);
        if (r->at < r->end && *r->at == ',') { r->at++; continue; }
        if (r->at < r->end && *r->at == close) { r->at++; return value; }
        r->error = kind == JSON_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'";
        goto fail;
    }
fail:
    free(key);
    json_free(value);
    return NULL;
}

static json *read_value(reader *r, int depth) {
    if (depth > MAX_DEPTH) { r->error = "nested too deeply"; return NULL; }
    skip_space(r);
    if (r->at >= r->end) { r->error = "unexpected end"; return NULL; }
    char c = *r->at;
    json *value;
    if (c == '{') { r->at++; return read_container(r, depth, JSON_OBJECT, '}'); }
    if (c == '[') { r->at++; return read_container(r, depth, JSON_ARRAY, ']'); }
    if (c == '"') {
        r->at++;
        if (!(value = make(JSON_STRING))) { r->error = "out of memory"; return NULL; }
        if ((value->string = read_string(r, &value->length))) return value;
        free(value);
        return NULL;
    }
    if (literal(r, "true") || literal(r, "false")) {
        if (!(value = make(JSON_BOOL))) { r->error = "out of memory"; return NULL; }
        value->boolean = c == 't';
        return value;
    }
    if (literal(r, "null")) return make(JSON_NULL);
    if (c == '-' || (c >= '0' && c <= '9')) {
        char digits[64];
        size_t n = 0;
        while (r->at < r->end && n < sizeof digits - 1 && strchr("+-0123456789.eE", *r->at)) digits[n++] = *r->at++;
        digits[n] = '\0';
        if (!(value = make(JSON_NUMBER))) { r->error = "out of memory"; return NULL; }
        value->number = strtod(digits, NULL);
        return value;
    }
    r->error = "unexpected character";
    return NULL;
}

void json_free(json *value) {
    if (!value) return;
    for (size_t i = 0; i < value->count; i++) {
        json_free(value->items[i]);
        if (value->keys) free(value->keys[i]);
    }
    free(value->items);
    free(value->keys);
    free(value->string);
    free(value);
}

json *json_parse(const char *text, size_t length, const char **error) {
    reader r = {text, text + length, NULL};
    json *value = read_value(&r, 0);
    if (value) {
        skip_space(&r);
        if (r.at != r.end) { r.error = "text after the value"; json_free(value); value = NULL; }
    }
    if (!value) *error = r.error ? r.error : "invalid JSON";
    return value;
}

const json *json_get(const json *object, const char *key) {
    if (!object || object->kind != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < object->count; i++) {
        if (strcmp(object->keys[i], key) == 0) return object->items[i];
    }
    return NULL;
}

const char *json_get_string(const json *object, const char *key) {
    const json *value = json_get(object, key);
    return value && value->kind == JSON_STRING ? value->string : NULL;
}

double json_get_number(const json *object, const char *key, double fallback) {
    const json *value = json_get(object, key);
    return value && value->kind == JSON_NUMBER ? value->number : fallback;
}
