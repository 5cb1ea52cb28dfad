/* The template's rules: acknowledge in the customer's language, route by keywords, escalate urgent messages
 * and conversations left waiting. Edit freely; config.json holds the texts and words, so one build serves
 * many businesses.
 *
 * recado calls exports_rules_on_message for each customer message and exports_rules_on_overdue when a
 * conversation waits past its first-response target (both declared in gen/rules.h, which build.sh generates
 * from wit/plugin.wit). Everything a rule needs arrives as arguments: time is ctx->now, never a clock, so the
 * same message always gets the same decision (that is what lets recado replay a new version over past
 * messages). Return true with *ret filled in to decide; false with *err to refuse (recorded; the business's
 * defaults apply). */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "recado_helpers.h"
#include "rules.h"

static json *config_of(const rules_context_t *ctx, rules_string_t *err) {
    const char *problem = NULL;
    json *config = json_parse((const char *)ctx->config.ptr, ctx->config.len, &problem);
    if (!config) refuse(err, "invalid plugin configuration", problem);
    return config;
}

/* Sets the acknowledgement: `open`, `closed_until` with the next opening filled in (on the client's clock:
 * ctx->local is worked out by recado, no time-zone database needed), or `closed`. Returns which, or NULL. */
static const char *acknowledge(const json *config, const rules_option_string_t *language, const rules_context_t *ctx,
                               rules_decision_t *ret) {
    const json *texts = json_get(config, "acknowledge");
    const rules_list_string_t *languages = &ctx->languages;
    const json *text;
    if (ctx->local.open) {
        text = pick_text(json_get(texts, "open"), language, languages);
        if (!text || text->kind != JSON_STRING) return NULL;
        option_set(&ret->acknowledge, text->string, text->length);
        return "open";
    }
    const json *until = pick_text(json_get(texts, "closed_until"), language, languages);
    if (ctx->local.next_opening.is_some && until && until->kind == JSON_STRING) {
        const recado_plugin_types_local_time_t *opening = &ctx->local.next_opening.val;
        const json *days = pick_text(json_get(config, "weekdays"), language, languages);
        text_t day = {0}, time = {0}, out = {0};
        if (days && days->kind == JSON_ARRAY && days->count == 7 && days->items[opening->weekday - 1]->kind == JSON_STRING) {
            text_addf(&day, "%s", days->items[opening->weekday - 1]->string);
        } else {
            text_addf(&day, "%u", (unsigned)opening->weekday);
        }
        text_addf(&time, "%02u:%02u", opening->minute_of_day / 60u, opening->minute_of_day % 60u);
        /* Fills in {day} and {time}. */
        for (const char *at = until->string; *at;) {
            if (strncmp(at, "{day}", 5) == 0) { text_add(&out, day.ptr, day.len); at += 5; }
            else if (strncmp(at, "{time}", 6) == 0) { text_add(&out, time.ptr, time.len); at += 6; }
            else { text_add(&out, at, 1); at++; }
        }
        option_set(&ret->acknowledge, out.ptr, out.len);
        free(day.ptr);
        free(time.ptr);
        free(out.ptr);
        return "closed_until";
    }
    text = pick_text(json_get(texts, "closed"), language, languages);
    if (!text) text = pick_text(json_get(texts, "open"), language, languages);
    if (!text || text->kind != JSON_STRING) return NULL;
    option_set(&ret->acknowledge, text->string, text->length);
    return "closed";
}

bool exports_rules_on_message(rules_message_t *msg, rules_contact_t *contact, rules_context_t *ctx,
                              rules_decision_t *ret, rules_string_t *err) {
    (void)contact;
    json *config = config_of(ctx, err);
    if (!config) return false;
    decision_init(ret);
    text_t reasons = {0};
    const char *text = (const char *)msg->text.ptr;
    size_t length = msg->text.len;

    long long repeat = (long long)json_get_number(config, "repeat_after_minutes", 120);
    if (acknowledged_within(ctx, repeat)) {
        text_addf(&reasons, "acknowledged less than %lld minutes ago", repeat);
    } else {
        const char *which = acknowledge(config, &msg->language, ctx, ret);
        if (which) text_addf(&reasons, "%s: acknowledge", which);
    }

    const json *routes = json_get(config, "routes");
    for (size_t i = 0; routes && routes->kind == JSON_ARRAY && i < routes->count; i++) {
        const char *queue = json_get_string(routes->items[i], "queue");
        if (queue && contains_any(text, length, json_get(routes->items[i], "keywords"))) {
            option_set(&ret->queue, queue, strlen(queue));
            text_addf(&reasons, "%skeywords of %s", reasons.len ? "; " : "", queue);
            break;
        }
    }

    if (contains_any(text, length, json_get(config, "urgent_keywords"))) {
        unsigned level = (unsigned)json_get_number(config, "urgent_level", 2);
        ret->priority.is_some = true;
        ret->priority.val = RECADO_PLUGIN_TYPES_PRIORITY_URGENT;
        decision_tag(ret, "urgent");
        ret->escalate.is_some = true;
        ret->escalate.val.level = (uint8_t)level;
        rules_string_dup(&ret->escalate.val.reason, "urgent words in the message");
        ret->escalate.val.notify_owner = level >= 2;
        text_addf(&reasons, "%surgent words", reasons.len ? "; " : "");
    }

    if (reasons.len == 0) text_addf(&reasons, "nothing to do");
    rules_string_dup_n(&ret->reason, reasons.ptr, reasons.len);
    recado_plugin_host_log(RECADO_PLUGIN_TYPES_LOG_LEVEL_DEBUG, &ret->reason);
    free(reasons.ptr);
    json_free(config);
    return true;
}

bool exports_rules_on_overdue(rules_context_t *ctx, uint64_t waited_seconds, rules_decision_t *ret,
                              rules_string_t *err) {
    json *config = config_of(ctx, err);
    if (!config) return false;
    unsigned long long minutes = waited_seconds / 60;
    text_t reason = {0}, why = {0};
    decision_init(ret);
    text_addf(&reason, "waited %llu business minutes for a first reply", minutes);
    rules_string_dup_n(&ret->reason, reason.ptr, reason.len);
    decision_tag(ret, "overdue");
    ret->escalate.is_some = true;
    ret->escalate.val.level = (uint8_t)json_get_number(config, "overdue_level", 1);
    text_addf(&why, "no reply after %llu minutes", minutes);
    rules_string_dup_n(&ret->escalate.val.reason, why.ptr, why.len);
    ret->escalate.val.notify_owner = false;
    free(reason.ptr);
    free(why.ptr);
    json_free(config);
    return true;
}
