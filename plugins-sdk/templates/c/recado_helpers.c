/* See recado_helpers.h. Everything works on whole strings in one pass: a 16,000-character message must fit
 * in the call's instruction budget with room to spare. */
#include "recado_helpers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void text_add(text_t *text, const char *bytes, size_t length) {
    if (text->len + length + 1 > text->cap) {
        size_t cap = (text->cap ? text->cap * 2 : 64) + length;
        char *grown = realloc(text->ptr, cap);
        if (!grown) abort();
        text->ptr = grown;
        text->cap = cap;
    }
    memcpy(text->ptr + text->len, bytes, length);
    text->len += length;
    text->ptr[text->len] = '\0';
}

void text_addf(text_t *text, const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (n > 0) text_add(text, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* The next code point of UTF-8 `s` (of `end`), advancing `*at`; U+FFFD for a bad byte. */
static unsigned next_point(const unsigned char *s, size_t end, size_t *at) {
    unsigned c = s[*at];
    size_t need = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (c >= 0x80 && need == 0) { (*at)++; return 0xFFFD; }
    if (*at + need >= end + (need ? 0 : 1)) { *at = end; return 0xFFFD; }
    unsigned point = need == 0 ? c : need == 1 ? c & 0x1F : need == 2 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i <= need; i++) point = point << 6 | (s[*at + i] & 0x3F);
    *at += need + 1;
    return point;
}

static void add_point(text_t *out, unsigned code) {
    char bytes[4];
    size_t n;
    if (code < 0x80) { bytes[0] = (char)code; n = 1; }
    else if (code < 0x800) { bytes[0] = (char)(0xC0 | code >> 6); bytes[1] = (char)(0x80 | (code & 0x3F)); n = 2; }
    else if (code < 0x10000) {
        bytes[0] = (char)(0xE0 | code >> 12); bytes[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        bytes[2] = (char)(0x80 | (code & 0x3F)); n = 3;
    } else {
        bytes[0] = (char)(0xF0 | code >> 18); bytes[1] = (char)(0x80 | ((code >> 12) & 0x3F));
        bytes[2] = (char)(0x80 | ((code >> 6) & 0x3F)); bytes[3] = (char)(0x80 | (code & 0x3F)); n = 4;
    }
    text_add(out, bytes, n);
}

static unsigned lower(unsigned c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;   /* Latin-1 capitals */
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32; /* Greek */
    if (c >= 0x410 && c <= 0x42F) return c + 32;               /* Cyrillic А-Я */
    if (c >= 0x400 && c <= 0x40F) return c + 80;               /* Cyrillic Ѐ-Џ */
    return c;
}

static unsigned unaccent(unsigned c) {
    if (c >= 0xE0 && c <= 0xE5) return 'a';
    if (c >= 0xE8 && c <= 0xEB) return 'e';
    if (c >= 0xEC && c <= 0xEF) return 'i';
    if ((c >= 0xF2 && c <= 0xF6)) return 'o';
    if (c >= 0xF9 && c <= 0xFC) return 'u';
    if (c == 0xE7) return 'c';
    if (c == 0xF1) return 'n';
    if (c == 0x451) return 0x435; /* ё -> е */
    return c;
}

text_t fold(const char *text, size_t length) {
    text_t out = {0};
    text_add(&out, "", 0);
    size_t at = 0;
    while (at < length) add_point(&out, unaccent(lower(next_point((const unsigned char *)text, length, &at))));
    return out;
}

/* Whether a code point is part of a word: letters and digits. Beyond ASCII, everything but punctuation,
 * symbols, spaces and emoji counts as a letter, which is right for the scripts customers write in. */
static bool in_word(unsigned c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c < 0xC0 || c == 0xD7 || c == 0xF7) return false;                    /* Latin-1 punctuation */
    if (c >= 0x2000 && c <= 0x2BFF) return false;                             /* punctuation, arrows, symbols */
    if (c >= 0x3000 && c <= 0x303F) return false;                             /* CJK punctuation */
    if (c >= 0xFE00 && c <= 0xFE0F) return false;                             /* variation selectors */
    if (c >= 0xFF00 && c <= 0xFF0F) return false;                             /* full-width punctuation */
    if (c >= 0x1F000 && c <= 0x1FAFF) return false;                           /* emoji */
    return c != 0xFFFD;
}

/* The words of folded text, each as an offset and length, as one space-separated text: " a b c ". */
static text_t joined_words(const char *text, size_t length) {
    text_t folded = fold(text, length);
    text_t out = {0};
    text_add(&out, " ", 1);
    size_t at = 0;
    bool inside = false;
    while (at < folded.len) {
        size_t start = at;
        bool word = in_word(next_point((const unsigned char *)folded.ptr, folded.len, &at));
        if (word) text_add(&out, folded.ptr + start, at - start);
        else if (inside) text_add(&out, " ", 1);
        inside = word;
    }
    if (inside) text_add(&out, " ", 1);
    free(folded.ptr);
    return out;
}

bool contains_any(const char *text, size_t length, const json *keywords) {
    if (!keywords || keywords->kind != JSON_ARRAY) return false;
    text_t words = joined_words(text, length);
    bool found = false;
    for (size_t i = 0; i < keywords->count && !found; i++) {
        const json *keyword = keywords->items[i];
        if (keyword->kind != JSON_STRING) continue;
        /* Both sides as " word word ": a phrase is then a substring search on whole words. */
        text_t wanted = joined_words(keyword->string, keyword->length);
        found = wanted.len > 1 && strstr(words.ptr, wanted.ptr) != NULL;
        free(wanted.ptr);
    }
    free(words.ptr);
    return found;
}

bool acknowledged_within(const rules_context_t *ctx, long long minutes) {
    return ctx->last_acknowledged_at.is_some && ctx->now - ctx->last_acknowledged_at.val < minutes * 60000;
}

static const json *member(const json *texts, const rules_string_t *key) {
    if (!texts || texts->kind != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < texts->count; i++) {
        if (strlen(texts->keys[i]) == key->len && memcmp(texts->keys[i], key->ptr, key->len) == 0) {
            return texts->items[i];
        }
    }
    return NULL;
}

const json *pick_text(const json *texts, const rules_option_string_t *language, const rules_list_string_t *languages) {
    const json *found = NULL;
    if (language && language->is_some) found = member(texts, &language->val);
    if (!found && languages->len > 0) found = member(texts, &languages->ptr[0]);
    if (!found && texts && texts->kind == JSON_OBJECT && texts->count > 0) found = texts->items[0];
    return found;
}

void decision_init(rules_decision_t *decision) {
    memset(decision, 0, sizeof *decision);
}

void decision_tag(rules_decision_t *decision, const char *tag) {
    rules_string_t *tags = realloc(decision->tags.ptr, (decision->tags.len + 1) * sizeof(rules_string_t));
    if (!tags) abort();
    decision->tags.ptr = tags;
    rules_string_dup(&decision->tags.ptr[decision->tags.len++], tag);
}

void option_set(rules_option_string_t *option, const char *text, size_t length) {
    option->is_some = true;
    rules_string_dup_n(&option->val, text, length);
}

bool refuse(rules_string_t *err, const char *reason, const char *detail) {
    text_t text = {0};
    text_addf(&text, "%s%s%s", reason, detail ? ": " : "", detail ? detail : "");
    rules_string_dup_n(err, text.ptr, text.len);
    free(text.ptr);
    return false;
}
