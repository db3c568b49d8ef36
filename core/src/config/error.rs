//! Configuration errors: the file, the line and the key of what is wrong,
//! and the source text that turns a value's span into its line.

use std::fmt;

/// A configuration error: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Context for turning spans into lines while validating.
pub(super) struct Src<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Src<'_> {
    pub(super) fn line_of(&self, span: std::ops::Range<usize>) -> Option<usize> {
        if span.is_empty() && span.start == 0 {
            return None; // a default, not in the file
        }
        let at = span.start.min(self.text.len());
        Some(self.text[..at].bytes().filter(|&b| b == b'\n').count() + 1)
    }

    pub(super) fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: String,
        msg: String,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: span.and_then(|s| self.line_of(s)),
            key: Some(key),
            message: msg,
        }
    }
}
