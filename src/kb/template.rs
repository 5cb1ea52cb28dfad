//! Article bodies are minijinja templates filled in for the conversation's contact.
//!
//! Only a fixed set of variables exists ([`VARIABLES`]); a body naming anything else, or with a syntax
//! error, is refused when it is saved, with the line. Missing values render empty, so fallbacks work:
//! `{{ contact.first_name | default("there") }}`.
//!
//! A body is a canned answer, not a program, and it is rendered inside the server for every suggestion: one
//! template that allocates without bound would abort the whole process (minijinja has fuel for work, but
//! nothing stops `{{ contact.name|indent(1000000000000) }}` or a string doubled thirty times). So bodies
//! are a small language whose output is bounded by construction ([`check_subset`]):
//! - statements: `if`/`elif`/`else`/`endif`, `raw`/`endraw` and comments; no `set`, `for`, `macro`,
//!   `call`, `include` or `filter` blocks;
//! - no `*`, `+` or `~` operator (the ways to repeat or grow a string), no functions;
//! - only the filters `default` (`d`), `upper`, `lower`, `title`, `capitalize`, `trim`, `truncate`,
//!   `replace` and `length`, each with bounded output (see `environment`).
//!
//! Rendering is also bounded by fuel and its output capped; the save-time check renders the body for a
//! worst-case contact (every name at its longest) and refuses it if the text would be cut.

use std::borrow::Cow;

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value, context};

/// The variables a body may use.
pub(crate) const VARIABLES: &[&str] =
    &["contact.name", "contact.first_name", "client.name", "assistant.name", "conversation.id"];

/// Instruction budget of one render: generous for real answers, a stop for runaway loops.
const FUEL: u64 = 20_000;

/// Longest rendered text kept, in characters.
const MAX_RENDERED_CHARS: usize = 20_000;

/// Bytes a render may write before it is stopped (the longest kept text in four-byte characters).
const MAX_RENDERED_BYTES: usize = 4 * MAX_RENDERED_CHARS;

/// Longest name a contact, client or assistant can have (the ingest and profile limits).
const MAX_NAME_CHARS: usize = 200;

/// The statements a body may use.
const STATEMENTS: &[&str] = &["if", "elif", "else", "endif", "raw"];

/// A template problem, with the 1-based line in the body where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|line| format!("line {line}: ")).unwrap_or_default())]
pub(crate) struct TemplateError {
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

/// An environment with nothing in it but the filters and tests of the body language.
fn environment() -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("default", minijinja::filters::default);
    env.add_filter("d", minijinja::filters::default);
    env.add_filter("upper", minijinja::filters::upper);
    env.add_filter("lower", minijinja::filters::lower);
    env.add_filter("title", minijinja::filters::title);
    env.add_filter("capitalize", minijinja::filters::capitalize);
    env.add_filter("trim", minijinja::filters::trim);
    env.add_filter("length", minijinja::filters::length);
    env.add_filter("truncate", truncate);
    env.add_filter("replace", replace);
    env.add_test("defined", minijinja::tests::is_defined);
    env.add_test("undefined", minijinja::tests::is_undefined);
    env.add_test("none", minijinja::tests::is_none);
    env
}

/// `truncate(length, end="...")`: at most `length` characters (and never more than the input).
fn truncate(value: Cow<'_, str>, length: Option<usize>, end: Option<Cow<'_, str>>) -> String {
    let length = length.unwrap_or(255);
    if value.chars().count() <= length {
        return value.into_owned();
    }
    let end = end.unwrap_or(Cow::Borrowed("..."));
    let kept = length.saturating_sub(end.chars().count());
    value.chars().take(kept).chain(end.chars()).collect()
}

/// `replace(from, to)`, refusing a result longer than a render may write (an empty `from` matches between
/// every two characters, so the growth is multiplicative).
fn replace(value: Cow<'_, str>, from: Cow<'_, str>, to: Cow<'_, str>) -> Result<String, Error> {
    let matches = if from.is_empty() { value.chars().count() + 1 } else { value.matches(from.as_ref()).count() };
    let longest = value.len().saturating_add(matches.saturating_mul(to.len()));
    if longest > MAX_RENDERED_BYTES {
        return Err(Error::new(ErrorKind::InvalidOperation, "replace would make the text too long"));
    }
    Ok(value.replace(from.as_ref(), &to))
}

/// Checks a body: syntax, the body language, only known variables, and that it renders with and without
/// values and, whole, for the longest names.
pub(crate) fn validate(body: &str) -> Result<(), TemplateError> {
    let env = environment();
    let template =
        env.template_from_str(body).map_err(|error| TemplateError { line: error.line(), message: describe(&error) })?;
    check_subset(body)?;
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
        render_bounded(&env, body, &fill)
            .map_err(|error| TemplateError { line: error.line(), message: describe(&error) })?;
    }
    let too_long = TemplateError {
        line: None,
        message: format!("for a contact with the longest name it renders to more than {MAX_RENDERED_CHARS} characters"),
    };
    match render_bounded(&env, body, &worst_case()) {
        Ok(longest) if longest.chars().count() > MAX_RENDERED_CHARS => Err(too_long),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == ErrorKind::WriteFailure => Err(too_long),
        Err(error) => Err(TemplateError { line: error.line(), message: describe(&error) }),
    }
}

/// Fills a body in. A body that fails here (saved before the current rules, or stopped by a limit) is
/// returned as it is, so a suggestion is still shown.
pub(crate) fn render(body: &str, fill: &Fill) -> String {
    let env = environment();
    let rendered = check_subset(body)
        .map_err(|error| Error::new(ErrorKind::InvalidOperation, error.to_string()))
        .and_then(|()| render_bounded(&env, body, fill));
    match rendered {
        Ok(text) => text.chars().take(MAX_RENDERED_CHARS).collect(),
        Err(error) => {
            tracing::warn!(%error, "rendering a saved template failed; showing it unfilled");
            body.to_owned()
        }
    }
}

/// The editor's live preview: the body checked as a save checks it, then filled in for `fill`.
///
/// # Errors
/// The first problem a save would refuse, with its line.
pub(crate) fn preview(body: &str, fill: &Fill) -> Result<String, TemplateError> {
    validate(body)?;
    render_bounded(&environment(), body, fill)
        .map(|text| text.chars().take(MAX_RENDERED_CHARS).collect())
        .map_err(|error| TemplateError { line: error.line(), message: describe(&error) })
}

/// Renders into a buffer that refuses to grow past [`MAX_RENDERED_BYTES`].
fn render_bounded(env: &Environment<'_>, body: &str, fill: &Fill) -> Result<String, Error> {
    let template = env.template_from_str(body)?;
    let mut output = CappedBuffer(Vec::new());
    template.render_captured_to(context_of(fill), &mut output)?;
    String::from_utf8(output.0).map_err(|_| Error::new(ErrorKind::InvalidOperation, "rendered text is not UTF-8"))
}

struct CappedBuffer(Vec<u8>);

impl std::io::Write for CappedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("the rendered text is too long"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks that `body` keeps to the body language (see the module docs). `body` must already parse.
pub(crate) fn check_subset(body: &str) -> Result<(), TemplateError> {
    let refuse =
        |at: usize, message: String| TemplateError { line: Some(body[..at].matches('\n').count() + 1), message };
    let mut position = 0;
    let mut in_raw = false;
    while let Some(found) = body[position..].find('{') {
        let start = position + found;
        let (close, kind) = match body.as_bytes().get(start + 1) {
            Some(b'{') => ("}}", b'{'),
            Some(b'%') => ("%}", b'%'),
            Some(b'#') => ("#}", b'#'),
            _ => {
                position = start + 1;
                continue;
            }
        };
        let Some((inner, end)) = tag_contents(body, start + 2, close, kind != b'#') else {
            return Err(refuse(start, "a tag is not closed".into()));
        };
        position = end;
        let inner = inner.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let word = inner.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("");
        if in_raw {
            in_raw = !(kind == b'%' && word == "endraw");
            continue;
        }
        match kind {
            b'%' if !STATEMENTS.contains(&word) => {
                return Err(refuse(
                    start,
                    format!("`{{% {word} %}}` is not allowed in an answer; the statements are if, elif, else and raw"),
                ));
            }
            b'%' if word == "raw" => in_raw = true,
            b'%' | b'{' => check_expression(inner).map_err(|message| refuse(start, message))?,
            _ => {}
        }
    }
    Ok(())
}

/// The text between a tag's opening at `from` and `close`, skipping string literals when `strings`, and the
/// position after the tag.
fn tag_contents<'a>(body: &'a str, from: usize, close: &str, strings: bool) -> Option<(&'a str, usize)> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (offset, c) in body[from..].char_indices() {
        let at = from + offset;
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if strings && (c == '"' || c == '\'') => quote = Some(c),
            None if body[at..].starts_with(close) => return Some((&body[from..at], at + close.len())),
            None => {}
        }
    }
    None
}

/// Refuses the operators that repeat or grow a string, outside string literals.
fn check_expression(expression: &str) -> Result<(), String> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expression.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if matches!(c, '*' | '+' | '~') => {
                return Err(format!("the operator `{c}` is not allowed in an answer"));
            }
            None => {}
        }
    }
    Ok(())
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

/// Every name at its longest, in four-byte characters.
fn worst_case() -> Fill {
    let longest = "𝕎".repeat(MAX_NAME_CHARS);
    Fill {
        contact_name: Some(longest.clone()),
        client_name: Some(longest.clone()),
        assistant_name: Some(longest),
        conversation_id: Some("cnv_".repeat(16)),
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
    fn a_preview_fills_in_or_names_the_line() {
        let fill = Fill { contact_name: Some("Оксана Шевченко".into()), ..Fill::default() };
        assert_eq!(preview("Привіт, {{ contact.first_name }}!", &fill), Ok("Привіт, Оксана!".into()));
        let error = preview("Hola\n{{ contact.phone }}", &fill).expect_err("unknown variable");
        assert_eq!(error.line, Some(2), "{error}");
        let error = preview("Hola\n\n{% if contact.name %}", &fill).expect_err("not closed");
        assert!(error.line.is_some(), "{error}");
    }

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
    fn runaway_loops_are_not_part_of_the_language() {
        assert!(validate("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}").is_err());
    }

    #[test]
    fn templates_that_grow_without_bound_are_refused_with_the_reason() {
        // See: issue #8, finding 6.
        for (body, reason) in [
            ("{{ contact.name|indent(1000000000000) }}", "unknown filter"),
            ("{% set s = contact.name %}{% set s = s ~ s %}{{ s }}", "set"),
            ("{{ contact.name ~ contact.name }}", "`~`"),
            ("{{ 'x' * 100000000 }}", "`*`"),
            ("{{ contact.name + 'a' }}", "`+`"),
            ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "macro"),
            ("{{ range(10)|join }}", "unknown"),
        ] {
            let error = validate(body).expect_err(body);
            assert!(error.message.contains(reason), "{body}: {error}");
        }
        let grow = format!("replace('', '{}')", "a".repeat(100));
        let body = format!("{{{{ contact.name|{grow}|{grow} }}}}");
        let error = validate(&body).expect_err("replace multiplies");
        assert!(error.message.contains("too long"), "{error}");
    }

    #[test]
    fn the_language_keeps_what_answers_need() {
        for body in [
            "{% if contact.first_name %}Hola {{ contact.first_name|title }}{% else %}Hola{% endif %}, 2 * 3 = 6 ~ ok",
            "{{ contact.name|default('cliente')|upper }} {{ \"a + b ~ c * d\" }}",
            "{% raw %}{{ literally }} {% for %}{% endraw %} {{ contact.name|truncate(10) }}",
            "{# a comment with * and ~ #}{{ contact.name|replace('a', 'à') }} {% if contact.name is defined %}x{% endif %}",
        ] {
            validate(body).unwrap_or_else(|error| panic!("{body}: {error}"));
        }
        let fill = Fill { contact_name: Some("Maria Lluïsa de la Vall".into()), ..Fill::default() };
        assert_eq!(render("{{ contact.name|truncate(10) }}", &fill), "Maria L...");
    }

    #[test]
    fn a_saved_body_that_breaks_the_rules_is_shown_unfilled() {
        let body = "{{ contact.name|indent(1000000000000) }} {% set x = 1 %}";
        assert_eq!(render(body, &sample()), body);
    }

    #[test]
    fn a_body_too_long_for_the_longest_names_is_refused() {
        let body = "{{ contact.name }}".repeat(200);
        let error = validate(&body).expect_err("too long for a long name");
        assert!(error.message.contains("longest name"), "{error}");
    }
}
