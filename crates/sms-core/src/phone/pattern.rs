//! A tiny backtracking matcher for the regular-expression subset of libphonenumber's
//! metadata: digits, `\d`, `[...]` digit classes, `(...)`, `(?:...)`, `|`, `?`, `*`,
//! `+`, `{n}`, `{n,}`, `{n,m}` and `$`. Patterns apply to ASCII digit strings of at
//! most a few dozen characters, so backtracking costs nothing, and it saves the
//! module a general regex engine (~28 KB of WASM). Matching follows Perl/JS
//! priority (greedy, first alternative first), so captures equal what
//! libphonenumber's own engines produce; `tests` checks it against `regex-lite`.

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    seq: Vec<Node>,
    groups: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    /// One digit from the set (bit `d` set for digit `d`).
    Digits(u16),
    /// End of input.
    End,
    /// Alternatives, capturing into group `cap` when it is `Some`.
    Group {
        cap: Option<usize>,
        alts: Vec<Vec<Self>>,
    },
    /// Greedy repetition.
    Repeat {
        node: Box<Self>,
        min: u32,
        max: Option<u32>,
    },
}

/// Capture spans by group number (0 is the whole match).
pub(crate) type Captures = Vec<Option<(usize, usize)>>;

type Cont<'k> = &'k mut dyn FnMut(usize, &mut Captures) -> bool;

/// The pattern text is not in the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsupported;

struct Parser<'a> {
    src: &'a [u8],
    at: usize,
    groups: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.at += usize::from(hit);
        hit
    }

    fn alts(&mut self) -> Result<Vec<Vec<Node>>, Unsupported> {
        let mut alts = vec![self.seq()?];
        while self.eat(b'|') {
            alts.push(self.seq()?);
        }
        Ok(alts)
    }

    fn seq(&mut self) -> Result<Vec<Node>, Unsupported> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let atom = self.atom()?;
            seq.push(self.quantified(atom)?);
        }
        Ok(seq)
    }

    fn atom(&mut self) -> Result<Node, Unsupported> {
        let c = self.peek().ok_or(Unsupported)?;
        self.at += 1;
        match c {
            b'0'..=b'9' => Ok(Node::Digits(1 << (c - b'0'))),
            b'\\' if self.eat(b'd') => Ok(Node::Digits(0x3FF)),
            b'$' => Ok(Node::End),
            b'[' => self.class(),
            b'(' => {
                let cap = if self.eat(b'?') {
                    if !self.eat(b':') {
                        return Err(Unsupported);
                    }
                    None
                } else {
                    self.groups += 1;
                    Some(self.groups)
                };
                let alts = self.alts()?;
                if !self.eat(b')') {
                    return Err(Unsupported);
                }
                Ok(Node::Group { cap, alts })
            }
            _ => Err(Unsupported),
        }
    }

    fn class(&mut self) -> Result<Node, Unsupported> {
        let mut mask = 0u16;
        loop {
            let c = self.peek().ok_or(Unsupported)?;
            self.at += 1;
            match c {
                b']' => return Ok(Node::Digits(mask)),
                b'\\' if self.eat(b'd') => mask |= 0x3FF,
                b'0'..=b'9' => {
                    let hi =
                        if self.peek() == Some(b'-') && self.src.get(self.at + 1) != Some(&b']') {
                            self.at += 1;
                            match self.peek() {
                                Some(h @ b'0'..=b'9') => {
                                    self.at += 1;
                                    h
                                }
                                _ => return Err(Unsupported),
                            }
                        } else {
                            c
                        };
                    for d in c..=hi {
                        mask |= 1 << (d - b'0');
                    }
                }
                _ => return Err(Unsupported),
            }
        }
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.src[start..self.at])
            .ok()?
            .parse()
            .ok()
    }

    fn quantified(&mut self, node: Node) -> Result<Node, Unsupported> {
        let (min, max) = match self.peek() {
            Some(b'?') => (0, Some(1)),
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'{') => {
                self.at += 1;
                let min = self.number().ok_or(Unsupported)?;
                let max = if self.eat(b',') {
                    self.number()
                } else {
                    Some(min)
                };
                if self.peek() != Some(b'}') {
                    return Err(Unsupported);
                }
                (min, max)
            }
            _ => return Ok(node),
        };
        self.at += 1;
        Ok(Node::Repeat {
            node: Box::new(node),
            min,
            max,
        })
    }
}

impl Pattern {
    /// Compiles `src`, or says it is outside the supported subset.
    pub(crate) fn new(src: &str) -> Result<Self, Unsupported> {
        let mut p = Parser {
            src: src.as_bytes(),
            at: 0,
            groups: 0,
        };
        let alts = p.alts()?;
        if p.at != p.src.len() {
            return Err(Unsupported);
        }
        Ok(Self {
            seq: vec![Node::Group { cap: Some(0), alts }],
            groups: p.groups,
        })
    }

    /// Whether the whole of `s` matches.
    pub(crate) fn is_full_match(&self, s: &str) -> bool {
        let mut caps = vec![None; self.groups + 1];
        let len = s.len();
        run(&self.seq, s.as_bytes(), 0, &mut caps, &mut |end, _| {
            end == len
        })
    }

    /// The captures of the match at the start of `s` (group 0 spans the match).
    pub(crate) fn match_prefix(&self, s: &str) -> Option<Captures> {
        let mut caps = vec![None; self.groups + 1];
        let mut found = None;
        run(&self.seq, s.as_bytes(), 0, &mut caps, &mut |_, caps| {
            found = Some(caps.clone());
            true
        });
        found
    }
}

fn run(seq: &[Node], s: &[u8], pos: usize, caps: &mut Captures, k: Cont<'_>) -> bool {
    let Some((first, rest)) = seq.split_first() else {
        return k(pos, caps);
    };
    match first {
        Node::Digits(mask) => {
            let hit = s
                .get(pos)
                .is_some_and(|&b| b.is_ascii_digit() && mask & (1 << (b - b'0')) != 0);
            hit && run(rest, s, pos + 1, caps, k)
        }
        Node::End => pos == s.len() && run(rest, s, pos, caps, k),
        Node::Group { cap, alts } => alts.iter().any(|alt| {
            let saved = caps.clone();
            let ok = run(alt, s, pos, caps, &mut |end, caps| {
                let old = cap.map(|i| caps[i]);
                if let Some(i) = *cap {
                    caps[i] = Some((pos, end));
                }
                run(rest, s, end, caps, k) || {
                    if let (Some(i), Some(old)) = (*cap, old) {
                        caps[i] = old;
                    }
                    false
                }
            });
            if !ok {
                *caps = saved;
            }
            ok
        }),
        Node::Repeat { node, min, max } => repeat(node, *min, *max, 0, rest, s, pos, caps, k),
    }
}

#[allow(clippy::too_many_arguments)]
fn repeat(
    node: &Node,
    min: u32,
    max: Option<u32>,
    count: u32,
    rest: &[Node],
    s: &[u8],
    pos: usize,
    caps: &mut Captures,
    k: Cont<'_>,
) -> bool {
    if max.is_none_or(|m| count < m) {
        let more = run(
            std::slice::from_ref(node),
            s,
            pos,
            caps,
            &mut |end, caps| {
                // An empty iteration past the minimum would loop forever.
                (end != pos || count < min)
                    && repeat(node, min, max, count + 1, rest, s, end, caps, k)
            },
        );
        if more {
            return true;
        }
    }
    count >= min && run(rest, s, pos, caps, k)
}

/// Expands `${n}` references in `template` with the captures of `s`.
pub(crate) fn expand(template: &str, s: &str, caps: &Captures) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        if let Some(Some((a, b))) = after[..close]
            .parse::<usize>()
            .ok()
            .and_then(|i| caps.get(i))
        {
            out.push_str(&s[*a..*b]);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let p = Pattern::new("[2-9]\\d{9}|3\\d{6}").unwrap();
        assert!(p.is_full_match("4155552671"));
        assert!(p.is_full_match("3123456"));
        assert!(!p.is_full_match("1155552671"));
        assert!(!p.is_full_match("41555526711"));
        let p =
            Pattern::new("(?:0|90)(?:(1[245]|2[1-35]|31|4[13]|[56]5|99)(\\d{10,11}))?").unwrap();
        let caps = p.match_prefix("02111912345678").unwrap();
        assert_eq!(caps[0], Some((0, 14)));
        assert_eq!(expand("${2}", "02111912345678", &caps), "11912345678");
        let caps = p.match_prefix("011912345678").unwrap();
        assert_eq!(caps[0], Some((0, 1)));
        assert_eq!(caps[2], None);
        let p = Pattern::new("([457]\\d{6})$|1").unwrap();
        let caps = p.match_prefix("4601234").unwrap();
        assert_eq!(expand("268${1}", "4601234", &caps), "2684601234");
        assert_eq!(p.match_prefix("14601234").unwrap()[0], Some((0, 1)));
        assert_eq!(p.match_prefix("24601234"), None);
        assert!(Pattern::new("a").is_err());
        assert!(Pattern::new("(1").is_err());
    }
}
