//! Where configuration files come from: a trait, the plain-directory backend, and the name checks
//! every backend relies on.

use std::path::{Component, Path, PathBuf};

/// Why a backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The label is not a branch, tag or commit of the repository (HTTP 404).
    NoSuchLabel(String),
    /// A name, label or path is malformed or tries to leave the repository (HTTP 400).
    Rejected(String),
    /// The repository could not be read (HTTP 500).
    Unavailable(String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::NoSuchLabel(l) => write!(f, "no such label: {l}"),
            BackendError::Rejected(m) => write!(f, "rejected: {m}"),
            BackendError::Unavailable(m) => write!(f, "repository unavailable: {m}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// The files read at one label.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// The version of what was read (the commit sha for git; `None` for a directory).
    pub version: Option<String>,
    /// The label actually used (the default label when none was asked for).
    pub label: Option<String>,
    /// For each asked path, its bytes when the file exists.
    pub contents: Vec<Option<Vec<u8>>>,
}

/// What a request asks a backend for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The application name (already checked by [`check_name`]).
    pub application: &'a str,
    /// The profiles, as asked.
    pub profiles: &'a [String],
    /// The label, or `None` for the backend's default.
    pub label: Option<&'a str>,
}

/// A source of configuration files. Calls block (git fetches, disk reads): the server runs them
/// on tokio's blocking pool.
pub trait Backend: Send + Sync + 'static {
    /// Reads `paths` (relative, `/`-separated, already checked by [`check_relative_path`]) for
    /// the request, at its label or the default label.
    ///
    /// # Errors
    /// An unknown label, or a repository that cannot be read.
    fn read(&self, request: &Request<'_>, paths: &[String]) -> Result<Files, BackendError>;

    /// The prefix of property source names (`{prefix}{path}`), for example the repository URI.
    fn origin(&self, request: &Request<'_>) -> String;

    /// Whether the backend can serve right now (for `/health`).
    fn healthy(&self) -> Result<(), BackendError> {
        let request = Request {
            application: "application",
            profiles: &[],
            label: None,
        };
        self.read(&request, &[]).map(|_| ())
    }
}

/// Checks an application name, profile or label segment: no path separators, no `..`, no control
/// characters, not empty.
///
/// # Errors
/// A [`BackendError::Rejected`] naming what was wrong.
pub fn check_name(what: &str, name: &str) -> Result<(), BackendError> {
    if name.is_empty()
        || name == "."
        || name.contains("..")
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control)
    {
        return Err(BackendError::Rejected(format!("invalid {what} {name:?}")));
    }
    Ok(())
}

/// Checks a relative path inside the repository (a resource path or a label like `feature/x`):
/// only normal components, no `..`, no absolute path, no backslashes or control characters.
///
/// # Errors
/// A [`BackendError::Rejected`] naming the path.
pub fn check_relative_path(what: &str, path: &str) -> Result<(), BackendError> {
    let bad = path.is_empty()
        || path.contains(['\\', '\0'])
        || path.chars().any(char::is_control)
        || Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(BackendError::Rejected(format!("invalid {what} {path:?}")));
    }
    Ok(())
}

/// Serves the files of a plain directory (Spring's "native" backend). Labels are ignored, as
/// there is no history; the version is `None`.
#[derive(Debug, Clone)]
pub struct DirectoryBackend {
    root: PathBuf,
}

impl DirectoryBackend {
    /// A backend over `root`.
    ///
    /// # Errors
    /// When `root` is not a readable directory.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(DirectoryBackend { root })
    }
}

impl Backend for DirectoryBackend {
    fn read(&self, request: &Request<'_>, paths: &[String]) -> Result<Files, BackendError> {
        let mut contents = Vec::with_capacity(paths.len());
        for p in paths {
            check_relative_path("path", p)?;
            let full = self.root.join(p);
            // A symlink inside the directory must not lead out of it.
            let bytes = match full.canonicalize() {
                Ok(real) if real.starts_with(&self.root) && real.is_file() => Some(
                    std::fs::read(&real).map_err(|e| BackendError::Unavailable(e.to_string()))?,
                ),
                Ok(real) if !real.starts_with(&self.root) => {
                    return Err(BackendError::Rejected(format!(
                        "path {p:?} leaves the repository"
                    )));
                }
                _ => None,
            };
            contents.push(bytes);
        }
        Ok(Files {
            version: None,
            label: request.label.map(str::to_owned),
            contents,
        })
    }

    fn origin(&self, _request: &Request<'_>) -> String {
        format!("file:{}/", self.root.display())
    }

    fn healthy(&self) -> Result<(), BackendError> {
        if self.root.is_dir() {
            Ok(())
        } else {
            Err(BackendError::Unavailable(format!(
                "{} is gone",
                self.root.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_that_escape_are_rejected() {
        for bad in ["..", "a/b", "a\\b", "", ".", "x\0", "..foo"] {
            assert!(check_name("application", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("application", "orders-service").is_ok());
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\..\\b",
            "",
        ] {
            assert!(check_relative_path("path", bad).is_err(), "{bad:?}");
        }
        assert!(check_relative_path("path", "conf/nginx.conf").is_ok());
    }

    #[test]
    fn directory_backend_reads_files_and_refuses_symlinks_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), "x: 1").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let b = DirectoryBackend::new(dir.path()).unwrap();
        let r = Request {
            application: "a",
            profiles: &[],
            label: None,
        };
        let f = b.read(&r, &["a.yml".into(), "b.yml".into()]).unwrap();
        assert_eq!(f.contents, vec![Some(b"x: 1".to_vec()), None]);
        assert!(matches!(
            b.read(&r, &["link".into()]),
            Err(BackendError::Rejected(_))
        ));
        assert!(b.healthy().is_ok());
        assert!(matches!(
            b.read(&r, &["../x".into()]),
            Err(BackendError::Rejected(_))
        ));
    }
}
