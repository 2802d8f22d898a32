//! Template syntax errors: a kind, the byte offset where it was found, and detail.

use std::fmt;

/// What is wrong with a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateErrorKind {
    /// `{{` without its closing `}}`.
    UnclosedExpression,
    /// `{{ }}` with nothing inside.
    EmptyExpression,
    /// A character that cannot start or continue the expression here.
    UnexpectedCharacter,
    /// A filter this subset does not have.
    UnknownFilter,
    /// `default` without its value.
    MissingArgument,
    /// A value given to a filter that takes none.
    UnexpectedArgument,
    /// A quoted string without its closing quote.
    UnterminatedString,
    /// A Liquid tag (`{% ... %}`): only output expressions are supported.
    UnsupportedTag,
}

impl TemplateErrorKind {
    /// A stable snake_case code for UIs.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnclosedExpression => "unclosed_expression",
            Self::EmptyExpression => "empty_expression",
            Self::UnexpectedCharacter => "unexpected_character",
            Self::UnknownFilter => "unknown_filter",
            Self::MissingArgument => "missing_argument",
            Self::UnexpectedArgument => "unexpected_argument",
            Self::UnterminatedString => "unterminated_string",
            Self::UnsupportedTag => "unsupported_tag",
        }
    }
}

/// A template syntax error at a byte offset of the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// What is wrong.
    pub kind: TemplateErrorKind,
    /// Byte offset in the template source where it was found.
    pub offset: usize,
    /// Human-readable explanation, e.g. "unexpected `%`, expected a field name".
    pub detail: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.detail, self.offset)
    }
}

impl std::error::Error for TemplateError {}
