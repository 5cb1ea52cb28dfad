//! The versioned plugin contracts. Each `since_vX_Y_Z` module holds the bindings of one `recado:plugin`
//! version (generated from `plugins-sdk/wit/since_vX.Y.Z`), its host functions (forwarding to `host`) and
//! the conversions between its records and ours. Every version stays served: the engine loads a component
//! as the newest version whose world it exports, and [`Version`] runs it.
//!
//! What the versions share (the host interface, the decision record and its checks, the message and contact
//! records, and how a call runs) is written once, in [`contract!`], and expanded in each version's module;
//! a module writes by hand only what its version changed.

use wasmtime::Store;

use super::host::CallState;
use super::{Failure, MessageCall, PluginContext};
use crate::domain::Decision;

pub(super) mod since_v0_1_0;
pub(super) mod since_v0_2_0;

/// The newest contract: what new plugins are built against.
pub(super) const NEWEST: &str = since_v0_2_0::CONTRACT;

/// Which hook a call runs, with its inputs.
#[derive(Clone, Copy)]
pub(super) enum Call<'a> {
    /// `on-message`.
    Message(&'a MessageCall),
    /// `on-overdue` after this many seconds.
    Overdue(&'a PluginContext, u64),
}

/// Why a call gave no answer from the guest: it could not start, or it stopped (trap, budget).
pub(super) enum Stopped {
    /// Instantiation failed.
    Instantiate(wasmtime::Error),
    /// The hook trapped or ran out of a budget.
    Call(wasmtime::Error),
}

/// A component prepared for one contract version.
#[derive(Clone)]
pub(super) enum Version {
    /// `recado:plugin@0.1.0`.
    V0_1(since_v0_1_0::RulesPre<CallState>),
    /// `recado:plugin@0.2.0`.
    V0_2(since_v0_2_0::RulesPre<CallState>),
}

/// An instance of a component, of its version.
pub(super) enum Instance {
    /// `recado:plugin@0.1.0`.
    V0_1(since_v0_1_0::Rules),
    /// `recado:plugin@0.2.0`.
    V0_2(since_v0_2_0::Rules),
}

impl Version {
    /// Prepares `pre` as the newest version whose `rules` world the component exports.
    ///
    /// # Errors
    /// It exports no served version's world; the message is the newest version's complaint.
    pub(super) fn of(pre: &wasmtime::component::InstancePre<CallState>) -> Result<Self, String> {
        let newest = match since_v0_2_0::RulesPre::new(pre.clone()) {
            Ok(pre) => return Ok(Self::V0_2(pre)),
            Err(error) => error,
        };
        match since_v0_1_0::RulesPre::new(pre.clone()) {
            Ok(pre) => Ok(Self::V0_1(pre)),
            Err(_) => Err(format!("does not export the {NEWEST} rules world (nor an older one's): {newest:#}")),
        }
    }

    /// The contract it was built against.
    pub(super) fn contract(&self) -> &'static str {
        match self {
            Self::V0_1(_) => since_v0_1_0::CONTRACT,
            Self::V0_2(_) => since_v0_2_0::CONTRACT,
        }
    }

    /// A fresh instance in `store`.
    pub(super) fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Self::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }
}

impl Instance {
    /// Runs `call`: the decision checked against the contract's bounds, the guest's error, or why it stopped.
    pub(super) fn call(
        &self,
        store: &mut Store<CallState>,
        call: Call<'_>,
    ) -> Result<Result<Decision, Failure>, Stopped> {
        match self {
            Self::V0_1(instance) => since_v0_1_0::call(instance, store, call),
            Self::V0_2(instance) => since_v0_2_0::call(instance, store, call),
        }
        .map_err(Stopped::Call)
    }
}

/// Adds every version's host functions to `linker` (their interfaces have distinct versioned names).
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    since_v0_1_0::add_to_linker(linker)?;
    since_v0_2_0::add_to_linker(linker)
}

/// The parts every contract version shares, expanded in each version's module after its `bindings`, with
/// `wit` naming its types interface. The module itself provides `wit_context`.
macro_rules! contract {
    () => {
        use wasmtime::component::HasSelf;

        use super::super::host::CallState;
        use super::super::{Failure, MessageCall, truncate};
        use super::Call;
        use crate::domain::{Decision, Escalation, LogLevel, Priority, parse_label};

        pub(in crate::plugins) use bindings::{Rules, RulesPre};

        /// Adds this version's host functions to `linker`.
        pub(in crate::plugins) fn add_to_linker(
            linker: &mut wasmtime::component::Linker<CallState>,
        ) -> wasmtime::Result<()> {
            Rules::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
        }

        impl wit::Host for CallState {}

        impl bindings::recado::plugin::host::Host for CallState {
            fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    wit::LogLevel::Trace => LogLevel::Trace,
                    wit::LogLevel::Debug => LogLevel::Debug,
                    wit::LogLevel::Info => LogLevel::Info,
                    wit::LogLevel::Warn => LogLevel::Warn,
                    wit::LogLevel::Error => LogLevel::Error,
                };
                CallState::log(self, level, message)
            }

            fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                CallState::kv_get(self, &key)
            }

            fn kv_set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
                CallState::kv_set(self, key, value)
            }

            fn kb_search(&mut self, query: String, limit: u32) -> wasmtime::Result<Vec<wit::KbHit>> {
                Ok(CallState::kb_search(self, &query, limit)?
                    .into_iter()
                    .map(|hit| wit::KbHit { article_id: hit.article_id, title: hit.title, score: hit.score })
                    .collect())
            }
        }

        /// Runs `call` on `instance`: the checked decision, the guest's error, or the trap.
        pub(in crate::plugins) fn call(
            instance: &Rules,
            store: &mut wasmtime::Store<CallState>,
            call: Call<'_>,
        ) -> wasmtime::Result<Result<Decision, Failure>> {
            let returned = match call {
                Call::Message(call) => {
                    let (message, contact) = wit_message(call);
                    instance.call_on_message(store, &message, &contact, &wit_context(&call.context))?
                }
                Call::Overdue(context, waited_seconds) => {
                    instance.call_on_overdue(store, &wit_context(context), waited_seconds)?
                }
            };
            Ok(match returned {
                Ok(decision) => validate(decision),
                Err(error) => Err(Failure::Error(truncate(&error, 500))),
            })
        }

        /// The contract's message and contact records for an `on-message` call.
        fn wit_message(call: &MessageCall) -> (wit::Message, wit::Contact) {
            let message = wit::Message {
                id: call.message.id.clone(),
                channel: call.message.channel.clone(),
                text: call.message.text.clone(),
                language: call.message.language.clone(),
                received_at: call.message.received_at,
            };
            let contact = wit::Contact {
                id: call.contact.id.clone(),
                handle: call.contact.handle.clone(),
                name: call.contact.name.clone(),
                tags: call.contact.tags.clone(),
                is_new: call.contact.is_new,
            };
            (message, contact)
        }

        /// Checks a plugin's decision against the contract's bounds and turns it into the domain's.
        fn validate(decision: wit::Decision) -> Result<Decision, Failure> {
            let invalid = |message: String| Err(Failure::InvalidOutput(message));
            if decision.acknowledge.as_ref().is_some_and(|text| text.trim().is_empty() || text.chars().count() > 1_000)
            {
                return invalid("acknowledge must be 1 to 1000 characters".into());
            }
            if decision.tags.len() > 16 {
                return invalid(format!("at most 16 tags, got {}", decision.tags.len()));
            }
            for tag in &decision.tags {
                if let Err(error) = parse_label("tags", tag, 64) {
                    return invalid(error.to_string());
                }
            }
            if let Some(Err(error)) = decision.queue.as_ref().map(|queue| parse_label("queue", queue, 64)) {
                return invalid(error.to_string());
            }
            if decision.assignee.as_ref().is_some_and(|a| a.trim().is_empty() || a.chars().count() > 200) {
                return invalid("assignee must be 1 to 200 characters".into());
            }
            if decision.reason.chars().count() > 500 {
                return invalid("reason must be at most 500 characters".into());
            }
            let escalate = match decision.escalate {
                Some(escalation) if !(1..=3).contains(&escalation.level) => {
                    return invalid("escalation level must be 1 to 3".into());
                }
                Some(escalation) if escalation.reason.chars().count() > 500 => {
                    return invalid("escalation reason must be at most 500 characters".into());
                }
                Some(escalation) => Some(Escalation {
                    level: escalation.level,
                    reason: escalation.reason,
                    notify_owner: escalation.notify_owner,
                }),
                None => None,
            };
            Ok(Decision {
                acknowledge: decision.acknowledge,
                queue: decision.queue,
                assignee: decision.assignee,
                tags: decision.tags,
                priority: decision.priority.map(|priority| match priority {
                    wit::Priority::Low => Priority::Low,
                    wit::Priority::Normal => Priority::Normal,
                    wit::Priority::High => Priority::High,
                    wit::Priority::Urgent => Priority::Urgent,
                }),
                escalate,
                reason: decision.reason,
            })
        }
    };
}

use contract;
