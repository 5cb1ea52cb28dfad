//! How the decisions of a client's plugin chain combine into the one that is applied.
//!
//! The rules, in chain order: the first acknowledgement wins (a customer gets one automatic reply, from the
//! earliest rule that wants to send one); routing (queue, assignee, priority) is overridden by later plugins,
//! so a specific rule placed after a general one refines it; tags are the union, in first-seen order;
//! the escalation is the highest level asked for (the first one at that level, with its reason), and the
//! owner is notified if any plugin asking for that level wants it. Reasons are kept, each prefixed with who
//! gave it.

use super::{Decision, Escalation};

/// Merges `(source, decision)` pairs given in chain order. An empty chain gives the empty decision.
pub fn merge_chain<'a>(decisions: impl IntoIterator<Item = (&'a str, &'a Decision)>) -> Decision {
    let mut merged = Decision::default();
    let mut reasons = Vec::new();
    for (source, decision) in decisions {
        if merged.acknowledge.is_none() {
            merged.acknowledge.clone_from(&decision.acknowledge);
        }
        if decision.queue.is_some() {
            merged.queue.clone_from(&decision.queue);
        }
        if decision.assignee.is_some() {
            merged.assignee.clone_from(&decision.assignee);
        }
        if decision.priority.is_some() {
            merged.priority = decision.priority;
        }
        for tag in &decision.tags {
            if !merged.tags.contains(tag) {
                merged.tags.push(tag.clone());
            }
        }
        merged.escalate = match (merged.escalate.take(), &decision.escalate) {
            (None, next) => next.clone(),
            (Some(current), Some(next)) if next.level > current.level => Some(next.clone()),
            (Some(current), Some(next)) if next.level == current.level => {
                Some(Escalation { notify_owner: current.notify_owner || next.notify_owner, ..current })
            }
            (current, _) => current,
        };
        if !decision.reason.is_empty() {
            reasons.push(format!("{source}: {}", decision.reason));
        }
    }
    merged.reason = reasons.join("; ");
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Priority;

    fn escalation(level: u8, notify_owner: bool) -> Option<Escalation> {
        Some(Escalation { level, reason: format!("level {level}"), notify_owner })
    }

    #[test]
    fn first_acknowledgement_wins_later_routing_overrides_tags_union_highest_escalation() {
        let first = Decision {
            acknowledge: Some("Hola".into()),
            queue: Some("general".into()),
            tags: vec!["a".into(), "b".into()],
            priority: Some(Priority::High),
            escalate: escalation(1, false),
            reason: "greets".into(),
            ..Decision::default()
        };
        let second = Decision {
            acknowledge: Some("Hello".into()),
            queue: Some("billing".into()),
            assignee: Some("marta".into()),
            tags: vec!["b".into(), "c".into()],
            escalate: escalation(2, false),
            reason: "routes".into(),
            ..Decision::default()
        };
        let third = Decision { escalate: escalation(2, true), ..Decision::default() };
        let merged = merge_chain([("ack", &first), ("router", &second), ("escalation", &third)]);
        assert_eq!(merged.acknowledge.as_deref(), Some("Hola"));
        assert_eq!(merged.queue.as_deref(), Some("billing"));
        assert_eq!(merged.assignee.as_deref(), Some("marta"));
        assert_eq!(merged.priority, Some(Priority::High), "a later plugin that says nothing keeps it");
        assert_eq!(merged.tags, ["a", "b", "c"]);
        let escalate = merged.escalate.expect("escalates");
        assert_eq!((escalate.level, escalate.reason.as_str(), escalate.notify_owner), (2, "level 2", true));
        assert_eq!(merged.reason, "ack: greets; router: routes");
    }

    #[test]
    fn a_lower_escalation_never_lowers_the_level() {
        let high = Decision { escalate: escalation(3, false), ..Decision::default() };
        let low = Decision { escalate: escalation(1, true), ..Decision::default() };
        let merged = merge_chain([("a", &high), ("b", &low)]);
        assert_eq!(merged.escalate, escalation(3, false));
        assert_eq!(merge_chain([]), Decision::default());
    }
}
