//! Source text → parts: literal text and `{{ path | filter: arg }}` expressions.

use super::error::{TemplateError, TemplateErrorKind as Kind};
use super::{Arg, Expr, Filter, FilterKind, Part};

/// Parses a whole template.
pub(super) fn parse(src: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut at = 0;
    while at < src.len() {
        let rest = &src[at..];
        if rest.starts_with("\\{{") {
            text.push_str("{{");
            at += 3;
        } else if rest.starts_with("{%") {
            return Err(err(
                Kind::UnsupportedTag,
                at,
                "tags ({% ... %}) are not supported; use {{ field }} placeholders",
            ));
        } else if rest.starts_with("{{") {
            let close = rest
                .find("}}")
                .ok_or_else(|| err(Kind::UnclosedExpression, at, "`{{` is never closed by `}}`"))?;
            let mut inner_start = at + 2;
            let mut inner_end = at + close;
            if src[inner_start..inner_end].starts_with('-') {
                trim_end_in_place(&mut text);
                inner_start += 1;
            }
            let trim_after = inner_end > inner_start && src[..inner_end].ends_with('-');
            if trim_after {
                inner_end -= 1;
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Expr(Cursor::new(src, inner_start, inner_end).expr()?));
            at += close + 2;
            if trim_after {
                at += src[at..].len() - src[at..].trim_start().len();
            }
        } else {
            let c = rest.chars().next().unwrap_or_default();
            text.push(c);
            at += c.len_utf8();
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn trim_end_in_place(s: &mut String) {
    let len = s.trim_end().len();
    s.truncate(len);
}

fn err(kind: Kind, offset: usize, detail: impl Into<String>) -> TemplateError {
    TemplateError {
        kind,
        offset,
        detail: detail.into(),
    }
}

/// A position inside one expression's text.
struct Cursor<'a> {
    src: &'a str,
    at: usize,
    end: usize,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str, start: usize, end: usize) -> Self {
        Self {
            src,
            at: start,
            end,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.at..self.end].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += self.peek().map_or(1, char::len_utf8);
        }
    }

    fn unexpected(&self, expected: &str) -> TemplateError {
        match self.peek() {
            Some(c) => err(
                Kind::UnexpectedCharacter,
                self.at,
                format!("unexpected `{c}`, expected {expected}"),
            ),
            None => err(
                Kind::UnexpectedCharacter,
                self.at,
                format!("unexpected `}}}}`, expected {expected}"),
            ),
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(is_ident_char) {
            self.at += self.peek().map_or(1, char::len_utf8);
        }
        (self.at > start).then(|| &self.src[start..self.at])
    }

    fn path(&mut self) -> Result<Vec<String>, TemplateError> {
        let mut path = Vec::new();
        loop {
            match self.ident() {
                Some(seg) => path.push(seg.to_owned()),
                None => return Err(self.unexpected("a field name")),
            }
            if self.peek() == Some('.') {
                self.at += 1;
            } else {
                return Ok(path);
            }
        }
    }

    fn expr(mut self) -> Result<Expr, TemplateError> {
        self.skip_ws();
        let offset = self.at;
        if self.peek().is_none() {
            return Err(err(
                Kind::EmptyExpression,
                offset,
                "empty `{{ }}`: name a field",
            ));
        }
        let path = self.path()?;
        let mut filters = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => break,
                Some('|') => {
                    self.at += 1;
                    self.skip_ws();
                    filters.push(self.filter()?);
                }
                Some(_) => return Err(self.unexpected("`|` or `}}`")),
            }
        }
        Ok(Expr {
            path,
            filters,
            offset,
        })
    }

    fn filter(&mut self) -> Result<Filter, TemplateError> {
        let offset = self.at;
        let name = self
            .ident()
            .ok_or_else(|| self.unexpected("a filter name"))?;
        let kind = match name {
            "default" => FilterKind::Default,
            "upcase" => FilterKind::Upcase,
            "downcase" => FilterKind::Downcase,
            "capitalize" => FilterKind::Capitalize,
            other => {
                return Err(err(
                    Kind::UnknownFilter,
                    offset,
                    format!(
                    "unknown filter `{other}`, expected default, upcase, downcase or capitalize"
                ),
                ))
            }
        };
        self.skip_ws();
        let arg = if self.peek() == Some(':') {
            self.at += 1;
            self.skip_ws();
            Some(self.arg()?)
        } else {
            None
        };
        match (kind, &arg) {
            (FilterKind::Default, None) => Err(err(
                Kind::MissingArgument,
                offset,
                "`default` needs a value, e.g. default: \"there\"",
            )),
            (FilterKind::Default, Some(_)) | (_, None) => Ok(Filter { kind, arg }),
            (_, Some(_)) => Err(err(
                Kind::UnexpectedArgument,
                offset,
                format!("`{name}` takes no value"),
            )),
        }
    }

    fn arg(&mut self) -> Result<Arg, TemplateError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                let start = self.at;
                let body = &self.src[start + 1..self.end];
                let len = body.find(q).ok_or_else(|| {
                    err(Kind::UnterminatedString, start, "string is never closed")
                })?;
                self.at = start + 1 + len + 1;
                Ok(Arg::Text(body[..len].to_owned()))
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.at;
                self.at += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let text = &self.src[start..self.at];
                let digits = text.trim_start_matches('-');
                let well_formed = !digits.is_empty()
                    && digits.split('.').count() <= 2
                    && digits.split('.').all(|part| !part.is_empty());
                if well_formed {
                    Ok(Arg::Text(text.to_owned()))
                } else {
                    Err(err(Kind::UnexpectedCharacter, start, "not a number"))
                }
            }
            Some(c) if is_ident_char(c) => Ok(Arg::Path(self.path()?)),
            _ => Err(self.unexpected("a quoted text, a number or a field")),
        }
    }
}
