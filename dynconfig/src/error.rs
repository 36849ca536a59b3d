//! The one error type of the crate.

use std::fmt;

/// Why a configuration could not be loaded or an update was rejected. It names the source (a
/// file path, `env`, `override`, a remote URL), the 1-based line and the key when they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: Kind,
    source: Option<String>,
    line: Option<usize>,
    key: Option<String>,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Io,
    Syntax,
    Invalid,
    Placeholder,
    Remote,
    Setup,
}

impl ConfigError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            source: None,
            line: None,
            key: None,
            message: message.into(),
        }
    }
    pub(crate) fn io(source: &str, err: &std::io::Error) -> Self {
        Self::new(Kind::Io, err.to_string()).with_source(source)
    }
    pub(crate) fn syntax(source: &str, err: crate::format::SyntaxError) -> Self {
        let mut e = Self::new(Kind::Syntax, err.message).with_source(source);
        e.line = err.line;
        e
    }
    pub(crate) fn invalid(key: String, message: String) -> Self {
        let mut e = Self::new(Kind::Invalid, message);
        e.key = Some(key);
        e
    }
    pub(crate) fn placeholder(key: String, message: String) -> Self {
        let mut e = Self::new(Kind::Placeholder, message);
        e.key = Some(key);
        e
    }
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn remote(source: &str, message: impl Into<String>) -> Self {
        Self::new(Kind::Remote, message).with_source(source)
    }
    pub(crate) fn setup(message: impl Into<String>) -> Self {
        Self::new(Kind::Setup, message)
    }
    pub(crate) fn with_source(mut self, source: &str) -> Self {
        self.source = Some(source.to_owned());
        self
    }
    pub(crate) fn with_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    /// The source that holds the bad input: a file path, `env`, `override`, `defaults` or the
    /// remote server's URL.
    pub fn source_name(&self) -> Option<&str> {
        self.source.as_deref()
    }
    /// The 1-based line in the file, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
    /// The dotted key whose value is bad, when known.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// What went wrong, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// A file or the server could not be read.
    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }
    /// A file does not parse.
    pub fn is_syntax(&self) -> bool {
        self.kind == Kind::Syntax
    }
    /// A value does not decode to the type a property or binding wants, or fails its validation.
    pub fn is_invalid(&self) -> bool {
        self.kind == Kind::Invalid
    }
    /// A `${...}` placeholder refers to a missing key or loops.
    pub fn is_placeholder(&self) -> bool {
        self.kind == Kind::Placeholder
    }
    /// The config server answered with an error or an unreadable body.
    pub fn is_remote(&self) -> bool {
        self.kind == Kind::Remote
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Io => "cannot read",
            Kind::Syntax => "syntax error",
            Kind::Invalid => "invalid value",
            Kind::Placeholder => "unresolvable placeholder",
            Kind::Remote => "config server error",
            Kind::Setup => "configuration setup error",
        })?;
        if let Some(s) = &self.source {
            write!(f, " in {s}")?;
        }
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, " key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}
