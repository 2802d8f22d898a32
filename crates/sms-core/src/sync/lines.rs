//! Newline-delimited JSON read as it streams in (`GET /snapshot`): bytes arrive in
//! chunks whose boundaries fall anywhere, even inside a UTF-8 character.

/// Splits a byte stream into lines (`\n`, an optional `\r` before it dropped).
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    start: usize,
}

impl Lines {
    /// Adds a chunk.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole line, if one is in.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<String> {
        let rest = &self.buf[self.start..];
        let end = rest.iter().position(|b| *b == b'\n')?;
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        let line = String::from_utf8_lossy(line).into_owned();
        self.start += end + 1;
        Some(line)
    }

    /// Bytes after the last whole line (a stream that ends with some was cut).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_whole_whatever_the_chunks() {
        let text = "{\"a\":\"नमस्ते\"}\n{\"b\":2}\r\n{\"c\"";
        let bytes = text.as_bytes();
        for size in 1..=bytes.len() {
            let mut lines = Lines::default();
            let mut out = Vec::new();
            for chunk in bytes.chunks(size) {
                lines.push(chunk);
                while let Some(l) = lines.next() {
                    out.push(l);
                }
            }
            assert_eq!(out, ["{\"a\":\"नमस्ते\"}", "{\"b\":2}"], "chunks of {size}");
            assert_eq!(lines.pending(), 4);
        }
    }
}
