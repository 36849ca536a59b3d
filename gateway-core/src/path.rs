//! Path normalisation and route path patterns.
//!
//! Matching runs on the normalised path only, and the normalised path is what the upstream
//! receives, so the route that matched is the route whose rules apply: `/admin/%2e%2e/public`,
//! `//admin` or `/public/../admin` cannot slip past a rule written for `/admin`.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused (the gateway answers `400 Bad Request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (only origin-form paths are proxied).
    NotAbsolute,
    /// `..` climbs above the root.
    EscapesRoot,
    /// An encoded `/`, `\`, `%` or control byte, or a raw `\` or control byte: ambiguous between
    /// the gateway and the upstream, so refused.
    AmbiguousByte,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path is not absolute",
            PathError::EscapesRoot => "path climbs above the root",
            PathError::AmbiguousByte => "path holds an encoded separator or control byte",
            PathError::BadEscape => "path holds a malformed percent escape",
        })
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn needs_work(p: &[u8]) -> bool {
    let contains = |needle: &[u8]| p.windows(needle.len()).any(|w| w == needle);
    p.iter()
        .any(|&b| b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f)
        || contains(b"//")
        || contains(b"/./")
        || contains(b"/../")
        || p.ends_with(b"/.")
        || p.ends_with(b"/..")
}

/// Normalises a request path (no query): percent-decodes unreserved bytes, collapses `//`,
/// resolves `.` and `..`, and refuses encoded separators and control bytes.
///
/// Returns the input borrowed when it is already normal (the common case costs one scan).
///
/// ```
/// use palisade_gateway::path::normalize;
/// assert_eq!(normalize("/a/b").unwrap(), "/a/b");
/// assert_eq!(normalize("/a//b/./c/../d").unwrap(), "/a/b/d");
/// assert_eq!(normalize("/%61dmin/").unwrap(), "/admin/");
/// assert!(normalize("/public/%2e%2e/%2e%2e/etc").is_err());
/// assert!(normalize("/a%2Fb").is_err());
/// ```
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // Decode unreserved escapes first so "%2e%2e" is seen as "..".
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = h * 16 + l;
            if v == b'/' || v == b'\\' || v == b'%' || v < 0x20 || v == 0x7f {
                return Err(PathError::AmbiguousByte);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                // Keep reserved and non-ASCII bytes encoded, in canonical upper case.
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::AmbiguousByte);
        }
        decoded.push(b);
        i += 1;
    }
    let trailing = decoded.ends_with(b"/");
    let mut out: Vec<&[u8]> = Vec::new();
    let mut last_was_dot = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        last_was_dot = false;
        match seg {
            b"" => {}
            b"." => last_was_dot = true,
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                last_was_dot = true;
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        // Only ASCII was produced above (non-ASCII stays escaped), except raw UTF-8 already in
        // the input, which came from a &str.
        s.push_str(std::str::from_utf8(seg).map_err(|_| PathError::AmbiguousByte)?);
    }
    if s.is_empty() || ((trailing || last_was_dot) && !s.ends_with('/')) {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

/// Whether `path` is `prefix` or lies under it on a segment boundary (`/api` matches `/api`,
/// `/api/` and `/api/x`, not `/apix`).
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
    CatchAll(String),
}

/// Most captures a pattern may declare.
pub const MAX_CAPTURES: usize = 8;

/// A path pattern with named captures: `/users/{id}/orders/{*rest}`.
///
/// `{name}` matches one non-empty segment; `{*name}` (last only) matches the rest of the path,
/// possibly empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
}

/// Captured ranges of one match, indexed like [`PathPattern::capture_names`]. Lives on the stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct Captures {
    ranges: [(u32, u32); MAX_CAPTURES],
    len: usize,
}

impl Captures {
    /// The text of capture `i` in `path` (the path that was matched).
    pub fn get<'p>(&self, path: &'p str, i: usize) -> Option<&'p str> {
        if i >= self.len {
            return None;
        }
        let (s, e) = self.ranges[i];
        path.get(s as usize..e as usize)
    }
    fn push(&mut self, s: usize, e: usize) {
        self.ranges[self.len] = (s as u32, e as u32);
        self.len += 1;
    }
}

impl PathPattern {
    /// Parses a pattern.
    ///
    /// ```
    /// use palisade_gateway::path::PathPattern;
    /// let p = PathPattern::parse("/users/{id}/files/{*rest}").unwrap();
    /// let caps = p.matches("/users/42/files/a/b.txt").unwrap();
    /// assert_eq!(caps.get("/users/42/files/a/b.txt", 0), Some("42"));
    /// assert_eq!(caps.get("/users/42/files/a/b.txt", 1), Some("a/b.txt"));
    /// assert!(p.matches("/users/42").is_none());
    /// ```
    pub fn parse(source: &str) -> Result<Self, String> {
        if !source.starts_with('/') {
            return Err(format!("pattern `{source}` must start with `/`"));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = source[1..].split('/').collect();
        let n = parts.len();
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!("bad capture name `{inner}` in pattern `{source}`"));
                }
                if names.contains(&name) {
                    return Err(format!("capture `{name}` appears twice in `{source}`"));
                }
                if catch_all && i + 1 != n {
                    return Err(format!(
                        "`{{*{name}}}` must be the last segment of `{source}`"
                    ));
                }
                names.push(name);
                segments.push(if catch_all {
                    Segment::CatchAll(name.to_owned())
                } else {
                    Segment::Capture(name.to_owned())
                });
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "segment `{part}` of `{source}` mixes text and a capture"
                ));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        if names.len() > MAX_CAPTURES {
            return Err(format!(
                "pattern `{source}` has more than {MAX_CAPTURES} captures"
            ));
        }
        Ok(PathPattern {
            source: source.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The capture names, in order.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Capture(n) | Segment::CatchAll(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches a normalised path; returns the captures on success.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let mut caps = Captures::default();
        let mut pos = 1usize; // after the leading '/'
        let bytes = path.as_bytes();
        if bytes.first() != Some(&b'/') {
            return None;
        }
        let n = self.segments.len();
        for (i, seg) in self.segments.iter().enumerate() {
            if let Segment::CatchAll(_) = seg {
                caps.push(pos.min(path.len()), path.len());
                return Some(caps);
            }
            if pos > path.len() {
                return None;
            }
            let end = path[pos..].find('/').map_or(path.len(), |e| pos + e);
            let text = &path[pos..end];
            match seg {
                Segment::Literal(l) => {
                    if text != l {
                        return None;
                    }
                }
                Segment::Capture(_) => {
                    if text.is_empty() {
                        return None;
                    }
                    caps.push(pos, end);
                }
                Segment::CatchAll(_) => unreachable!("handled above"),
            }
            pos = end + 1;
            if i + 1 == n {
                return (end == path.len()).then_some(caps);
            }
        }
        None
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("//").unwrap(), "/");
        assert_eq!(normalize("/a/").unwrap(), "/a/");
        assert_eq!(normalize("/a/.").unwrap(), "/a/");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a/%2E%2e/b").unwrap(), "/b");
        assert_eq!(normalize("/a%20b").unwrap(), "/a%20b");
        assert_eq!(normalize("/a%c3%a9").unwrap(), "/a%C3%A9");
        assert_eq!(normalize("/..").unwrap_err(), PathError::EscapesRoot);
        assert_eq!(
            normalize("/a/%2e%2e/%2e%2e").unwrap_err(),
            PathError::EscapesRoot
        );
        assert_eq!(normalize("/a%5cb").unwrap_err(), PathError::AmbiguousByte);
        assert_eq!(normalize("/a\\b").unwrap_err(), PathError::AmbiguousByte);
        assert_eq!(normalize("/a%00").unwrap_err(), PathError::AmbiguousByte);
        assert_eq!(normalize("/a%252e").unwrap_err(), PathError::AmbiguousByte);
        assert_eq!(normalize("/a%zz").unwrap_err(), PathError::BadEscape);
        assert_eq!(normalize("a").unwrap_err(), PathError::NotAbsolute);
        assert!(matches!(normalize("/a/b.c/d").unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn prefix_on_segment_boundary() {
        assert!(has_prefix("/api", "/api"));
        assert!(has_prefix("/api/x", "/api"));
        assert!(has_prefix("/api/x", "/api/"));
        assert!(!has_prefix("/apix", "/api"));
        assert!(has_prefix("/anything", "/"));
    }

    #[test]
    fn patterns() {
        let p = PathPattern::parse("/a/{x}").unwrap();
        assert!(p.matches("/a/1").is_some());
        assert!(p.matches("/a/").is_none());
        assert!(p.matches("/a/1/2").is_none());
        let p = PathPattern::parse("/a/{*rest}").unwrap();
        let c = p.matches("/a/").unwrap();
        assert_eq!(c.get("/a/", 0), Some(""));
        assert!(p.matches("/a").is_some());
        assert!(p.matches("/b/c").is_none());
        assert!(PathPattern::parse("/a/{*r}/b").is_err());
        assert!(PathPattern::parse("/a/x{y}").is_err());
        assert!(PathPattern::parse("/{a}/{a}").is_err());
    }
}
