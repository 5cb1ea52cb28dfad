//! Article bodies are minijinja templates filled in for the conversation's contact.
//!
//! Only a fixed set of variables exists ([`VARIABLES`]); a body naming anything else, or with a syntax
//! error, is refused when it is saved, with the line. Missing values render empty, so fallbacks work:
//! `{{ contact.first_name | default("there") }}`. Rendering is bounded (fuel), since bodies are written by
//! people who are not programmers and a loop typo must not stall a suggestion.

use minijinja::{Environment, UndefinedBehavior, Value, context};

/// The variables a body may use.
pub const VARIABLES: &[&str] =
    &["contact.name", "contact.first_name", "client.name", "assistant.name", "conversation.id"];

/// Instruction budget of one render: generous for real answers, a stop for runaway loops.
const FUEL: u64 = 20_000;

/// Longest rendered text kept, in characters.
const MAX_RENDERED_CHARS: usize = 20_000;

/// A template problem, with the 1-based line in the body where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|line| format!("line {line}: ")).unwrap_or_default())]
pub struct TemplateError {
    /// Line of the body, from 1.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// What a body is filled in with. Every field is optional: an ad hoc query has no contact.
#[derive(Debug, Clone, Default)]
pub struct Fill {
    /// The contact's display name.
    pub contact_name: Option<String>,
    /// The client's name.
    pub client_name: Option<String>,
    /// The assistant's name.
    pub assistant_name: Option<String>,
    /// The conversation id.
    pub conversation_id: Option<String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks a body: syntax, only known variables, and that it renders with and without values.
pub fn validate(body: &str) -> Result<(), TemplateError> {
    let env = environment();
    let template =
        env.template_from_str(body).map_err(|error| TemplateError { line: error.line(), message: describe(&error) })?;
    let mut unknown: Vec<String> =
        template.undeclared_variables(true).into_iter().filter(|name| !VARIABLES.contains(&name.as_str())).collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        return Err(TemplateError {
            line: line_of(body, name),
            message: format!("unknown variable `{name}`; the variables are {}", VARIABLES.join(", ")),
        });
    }
    for fill in [sample(), Fill::default()] {
        template
            .render(context_of(&fill))
            .map_err(|error| TemplateError { line: error.line(), message: describe(&error) })?;
    }
    Ok(())
}

/// Fills a body in. A body that fails here (it was valid when saved, so only limits can fail it) is
/// returned as it is, so a suggestion is still shown.
pub fn render(body: &str, fill: &Fill) -> String {
    let env = environment();
    let rendered = env.template_from_str(body).and_then(|template| template.render(context_of(fill)));
    match rendered {
        Ok(text) => text.chars().take(MAX_RENDERED_CHARS).collect(),
        Err(error) => {
            tracing::warn!(%error, "rendering a saved template failed; showing it unfilled");
            body.to_owned()
        }
    }
}

fn context_of(fill: &Fill) -> Value {
    let first_name = fill.contact_name.as_deref().and_then(|name| name.split_whitespace().next()).map(str::to_owned);
    let contact = fill.contact_name.as_ref().map(|name| context! { name => name, first_name => first_name });
    context! {
        contact => contact,
        client => fill.client_name.as_ref().map(|name| context! { name => name }),
        assistant => fill.assistant_name.as_ref().map(|name| context! { name => name }),
        conversation => fill.conversation_id.as_ref().map(|id| context! { id => id }),
    }
}

fn sample() -> Fill {
    Fill {
        contact_name: Some("Núria Vila".into()),
        client_name: Some("Example Client".into()),
        assistant_name: Some("Ana".into()),
        conversation_id: Some("cnv_example".into()),
    }
}

/// The error's own words, without minijinja's template-name decoration.
fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// The first line mentioning `name` (or its last segment).
fn line_of(body: &str, name: &str) -> Option<usize> {
    let last = name.rsplit('.').next().unwrap_or(name);
    body.lines()
        .position(|line| line.contains(name))
        .or_else(|| body.lines().position(|line| line.contains(last)))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_filled_in_with_fallbacks() {
        let body = "Hola {{ contact.first_name | default(\"!\") }}, sóc {{ assistant.name }} de {{ client.name }}.";
        validate(body).expect("valid");
        let fill = Fill {
            contact_name: Some("Núria Vila".into()),
            assistant_name: Some("Ana".into()),
            client_name: Some("Dental Gràcia".into()),
            ..Fill::default()
        };
        assert_eq!(render(body, &fill), "Hola Núria, sóc Ana de Dental Gràcia.");
        assert_eq!(render(body, &Fill::default()), "Hola !, sóc  de .");
        assert_eq!(
            render("Ref {{ conversation.id }}", &Fill { conversation_id: Some("cnv_1".into()), ..Fill::default() }),
            "Ref cnv_1"
        );
    }

    #[test]
    fn unknown_variables_are_refused_with_their_line() {
        let error = validate("Hola,\n\nel teu telèfon és {{ contact.phone }}.").expect_err("unknown");
        assert_eq!(error.line, Some(3));
        assert!(error.message.contains("contact.phone"), "{error}");
        assert!(validate("{{ contact }}").is_err(), "whole objects are not variables");
        assert!(validate("{{ secrets.api_key }}").is_err());
    }

    #[test]
    fn syntax_errors_and_unknown_filters_are_refused_with_their_line() {
        let error = validate("Hola\n{{ contact.name\nadéu").expect_err("syntax");
        assert!(error.line.is_some_and(|line| line >= 2), "{error:?}");
        assert!(error.to_string().starts_with("line "), "{error}");
        let error = validate("Hola\n{{ contact.name | shout }}").expect_err("unknown filter");
        assert_eq!(error.line, Some(2), "{error:?}");
    }

    #[test]
    fn runaway_loops_stop_on_fuel() {
        assert!(validate("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}").is_err());
    }
}
