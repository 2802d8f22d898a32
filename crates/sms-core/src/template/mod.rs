//! Message templates: a small Liquid subset (C3, B6).
//!
//! `{{ contact.first_name | default: "there" | capitalize }}`: dotted field paths,
//! whitespace inside the braces, the filters `default`, `upcase`, `downcase` and
//! `capitalize` with Liquid's meaning, `{{-`/`-}}` whitespace control, and `\{{` for
//! literal braces. Compile once ([`Template::compile`]), render many times; rendering
//! reports the placeholders that had no value and no default, so the seller sees
//! them before sending instead of a blank. Tags (`{% %}`) are refused.

mod error;
mod parser;

pub use error::{TemplateError, TemplateErrorKind};

use serde::Serialize;

use crate::value::Value;

/// A compiled template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
struct Expr {
    path: Vec<String>,
    filters: Vec<Filter>,
    /// Byte offset of the path in the source.
    offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    kind: FilterKind,
    arg: Option<Arg>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum FilterKind {
    Default,
    Upcase,
    Downcase,
    Capitalize,
}

#[derive(Clone, Debug, PartialEq)]
enum Arg {
    Text(String),
    Path(Vec<String>),
}

/// The text a template produced and what it could not fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// The message text (unfilled placeholders render as nothing).
    pub text: String,
    /// Paths of placeholders with no value and no default, in order, without repeats.
    pub missing: Vec<String>,
}

/// The value flowing through a filter chain.
enum Flow {
    /// Nothing to show: absent, null, blank text, or not a printable value.
    Missing,
    Text(String),
    /// `false`: printed, but `default` replaces it.
    False,
    /// An empty array: `default` replaces it.
    Empty,
}

fn to_flow(v: Option<&Value>) -> Flow {
    match v {
        None | Some(Value::Null | Value::Object(_)) => Flow::Missing,
        Some(Value::String(s)) if s.trim().is_empty() => Flow::Missing,
        Some(Value::String(s)) => Flow::Text(s.clone()),
        Some(Value::Bool(false)) => Flow::False,
        Some(Value::Bool(true)) => Flow::Text("true".into()),
        Some(Value::Number(n)) => Flow::Text(crate::value::format_number(*n)),
        Some(Value::Array(items)) if items.is_empty() => Flow::Empty,
        Some(Value::Array(items)) => Flow::Text(
            items
                .iter()
                .filter_map(|v| match to_flow(Some(v)) {
                    Flow::Text(t) => Some(t),
                    Flow::False => Some("false".into()),
                    _ => None,
                })
                .collect(),
        ),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |first| {
        first
            .to_uppercase()
            .chain(chars.as_str().to_lowercase().chars())
            .collect()
    })
}

impl Template {
    /// Parses `src`; a syntax error carries its kind and byte offset.
    pub fn compile(src: &str) -> Result<Self, TemplateError> {
        parser::parse(src).map(|parts| Self { parts })
    }

    /// The distinct field paths the template reads (placeholders and `default` fields).
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |p: &[String]| {
            let p = p.join(".");
            if !out.contains(&p) {
                out.push(p);
            }
        };
        for part in &self.parts {
            if let Part::Expr(e) = part {
                add(&e.path);
                for f in &e.filters {
                    if let Some(Arg::Path(p)) = &f.arg {
                        add(p);
                    }
                }
            }
        }
        out
    }

    /// Renders with `data` (an object whose fields the paths name).
    pub fn render(&self, data: &Value) -> Rendered {
        let mut text = String::new();
        let mut missing: Vec<String> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Expr(e) => {
                    let mut flow = to_flow(data.lookup(&e.path));
                    let mut defaulted = false;
                    for f in &e.filters {
                        flow = match (f.kind, flow) {
                            (FilterKind::Default, Flow::Missing | Flow::False | Flow::Empty) => {
                                defaulted = true;
                                match &f.arg {
                                    Some(Arg::Text(t)) => Flow::Text(t.clone()),
                                    Some(Arg::Path(p)) => to_flow(data.lookup(p)),
                                    None => Flow::Missing,
                                }
                            }
                            (FilterKind::Upcase, Flow::Text(t)) => Flow::Text(t.to_uppercase()),
                            (FilterKind::Downcase, Flow::Text(t)) => Flow::Text(t.to_lowercase()),
                            (FilterKind::Capitalize, Flow::Text(t)) => Flow::Text(capitalize(&t)),
                            // String filters stringify their input, as LiquidJS and
                            // Shopify Liquid do: `false` becomes text, which `default` keeps.
                            (FilterKind::Upcase, Flow::False) => Flow::Text("FALSE".into()),
                            (FilterKind::Downcase, Flow::False) => Flow::Text("false".into()),
                            (FilterKind::Capitalize, Flow::False) => Flow::Text("False".into()),
                            (_, other) => other,
                        };
                    }
                    match flow {
                        Flow::Text(t) => text.push_str(&t),
                        Flow::False => text.push_str("false"),
                        Flow::Empty => {}
                        Flow::Missing if defaulted => {}
                        Flow::Missing => {
                            let p = e.path.join(".");
                            if !missing.contains(&p) {
                                missing.push(p);
                            }
                        }
                    }
                }
            }
        }
        Rendered { text, missing }
    }
}

/// Compiles and renders in one step.
pub fn render(src: &str, data: &Value) -> Result<Rendered, TemplateError> {
    Template::compile(src).map(|t| t.render(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Value {
        Value::object([
            (
                "contact",
                Value::object([
                    ("first_name", Value::from("priya")),
                    ("last_name", Value::from("")),
                    ("vip", Value::Bool(false)),
                    ("score", Value::Number(42.0)),
                ]),
            ),
            (
                "seller",
                Value::object([("name", Value::from("Ravi Kumar"))]),
            ),
        ])
    }

    fn r(src: &str) -> Rendered {
        render(src, &data()).unwrap()
    }

    #[test]
    fn fills_fields_and_filters() {
        assert_eq!(r("Hi {{contact.first_name|capitalize}}!").text, "Hi Priya!");
        assert_eq!(r("{{  seller.name  | upcase }}").text, "RAVI KUMAR");
        assert_eq!(r("{{ seller.name | downcase }}").text, "ravi kumar");
        assert_eq!(r("{{ contact.score }}").text, "42");
        assert_eq!(r("{{ contact.vip }}").text, "false");
        assert_eq!(r("{{ contact.vip | default: 'yes' }}").text, "yes");
        assert_eq!(capitalize("hELLO wORLD"), "Hello world");
    }

    #[test]
    fn missing_fields_are_reported_unless_defaulted() {
        let out = r("Hi {{ contact.nickname }} {{ contact.last_name }}, {{ contact.nickname }}");
        assert_eq!(out.text, "Hi  , ");
        assert_eq!(out.missing, ["contact.nickname", "contact.last_name"]);
        let out = r("Hi {{ contact.nickname | default: \"there\" | upcase }}");
        assert_eq!(out.text, "Hi THERE");
        assert!(out.missing.is_empty());
        let out = r("{{ contact.nickname | default: contact.first_name }}");
        assert_eq!(out.text, "priya");
    }

    #[test]
    fn escapes_and_whitespace_control() {
        assert_eq!(
            r("\\{{ contact.first_name }}").text,
            "{{ contact.first_name }}"
        );
        assert_eq!(r("a }} b").text, "a }} b");
        assert_eq!(r("Hi   {{- contact.first_name -}}   !").text, "Hipriya!");
    }

    #[test]
    fn syntax_errors_have_kind_and_offset() {
        let e = |src: &str| Template::compile(src).unwrap_err();
        assert_eq!(e("Hi {{ name").kind, TemplateErrorKind::UnclosedExpression);
        assert_eq!(e("Hi {{ name").offset, 3);
        assert_eq!(e("{{ }}").kind, TemplateErrorKind::EmptyExpression);
        assert_eq!(e("{{ a | shout }}").kind, TemplateErrorKind::UnknownFilter);
        assert_eq!(e("{{ a | shout }}").offset, 7);
        assert_eq!(
            e("{{ a | default }}").kind,
            TemplateErrorKind::MissingArgument
        );
        assert_eq!(
            e("{{ a | upcase: 1 }}").kind,
            TemplateErrorKind::UnexpectedArgument
        );
        assert_eq!(
            e("{{ a | default: 'x }}").kind,
            TemplateErrorKind::UnterminatedString
        );
        assert_eq!(e("{{ a b }}").kind, TemplateErrorKind::UnexpectedCharacter);
        assert_eq!(e("{{ a b }}").offset, 5);
        assert_eq!(e("{% if a %}").kind, TemplateErrorKind::UnsupportedTag);
        assert_eq!(e("{{ a. }}").kind, TemplateErrorKind::UnexpectedCharacter);
    }

    #[test]
    fn lists_fields() {
        let t = Template::compile("{{a.b}} {{c|default: d.e}} {{a.b}}").unwrap();
        assert_eq!(t.fields(), ["a.b", "c", "d.e"]);
    }
}
