//! The git backend: a bare local clone fetched from the remote, files read straight from the
//! commit's tree (no working copy, so concurrent labels never race and nothing on disk can be
//! reached through a path).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use git2::{FetchOptions, FetchPrune, Repository};

use crate::backend::{Backend, BackendError, Files, Request, check_relative_path};

/// Serves files from a git repository: label = branch, tag or commit; version = commit sha.
///
/// The URI may hold `{application}` and `{profile}` placeholders (one repository per
/// application, as Spring allows); each resolved repository gets its own clone under the local
/// directory.
pub struct GitBackend {
    uri: String,
    local: PathBuf,
    default_label: String,
    refresh_rate: Duration,
    repos: Mutex<HashMap<String, Arc<Mutex<State>>>>,
}

impl std::fmt::Debug for GitBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitBackend")
            .field("uri", &self.uri)
            .field("local", &self.local)
            .field("default_label", &self.default_label)
            .field("refresh_rate", &self.refresh_rate)
            .finish_non_exhaustive()
    }
}

struct State {
    repo: Option<Repository>,
    last_fetch: Option<Instant>,
}

impl GitBackend {
    /// A backend cloning `uri` (a path or a `file://`, `git://` URL that libgit2 reads without
    /// TLS) into `local`, with `main` as the default label and a fetch on every request.
    pub fn new(uri: impl Into<String>, local: impl Into<PathBuf>) -> Self {
        GitBackend {
            uri: uri.into(),
            local: local.into(),
            default_label: "main".into(),
            refresh_rate: Duration::ZERO,
            repos: Mutex::new(HashMap::new()),
        }
    }

    fn templated(&self) -> bool {
        self.uri.contains("{application}") || self.uri.contains("{profile}")
    }

    /// The repository URI for a request, and where its clone lives.
    fn resolve(&self, request: &Request<'_>) -> (String, PathBuf) {
        if !self.templated() {
            return (self.uri.clone(), self.local.clone());
        }
        let uri = self
            .uri
            .replace("{application}", request.application)
            .replace("{profile}", &request.profiles.join(","));
        // FNV-1a: a stable, collision-unlikely folder name for each resolved URI.
        let hash = uri.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let local = self
            .local
            .join(format!("{}-{hash:016x}", request.application));
        (uri, local)
    }

    /// The label used when a request names none (Spring's `default-label`).
    pub fn default_label(mut self, label: impl Into<String>) -> Self {
        self.default_label = label.into();
        self
    }

    /// Fetch at most once per `rate` (Spring's `refresh-rate`; zero fetches on every request).
    pub fn refresh_rate(mut self, rate: Duration) -> Self {
        self.refresh_rate = rate;
        self
    }

    fn open(&self, state: &mut State, uri: &str, local: &Path) -> Result<(), BackendError> {
        if state.repo.is_none() {
            let repo = if local.join("HEAD").exists() {
                Repository::open_bare(local)
            } else {
                std::fs::create_dir_all(local).map_err(|e| {
                    BackendError::Unavailable(format!("cannot create the local clone: {e}"))
                })?;
                Repository::init_bare(local)
            }
            .map_err(|e| BackendError::Unavailable(format!("local clone: {}", e.message())))?;
            state.repo = Some(repo);
        }
        let due = state
            .last_fetch
            .is_none_or(|t| t.elapsed() >= self.refresh_rate);
        if due {
            let repo = state.repo.as_ref().expect("opened above");
            let fetched = repo.remote_anonymous(uri).and_then(|mut remote| {
                let mut opts = FetchOptions::new();
                opts.prune(FetchPrune::On);
                remote.fetch(
                    &[
                        "+refs/heads/*:refs/remotes/origin/*",
                        "+refs/tags/*:refs/tags/*",
                    ],
                    Some(&mut opts),
                    None,
                )
            });
            match fetched {
                Ok(()) => state.last_fetch = Some(Instant::now()),
                // Serve the last fetched state during a remote outage, as Spring does.
                Err(e) if state.last_fetch.is_some() => {
                    tracing::warn!(
                        error = e.message(),
                        "git fetch failed, serving the last fetched state"
                    );
                }
                Err(e) => {
                    return Err(BackendError::Unavailable(format!(
                        "fetch failed: {}",
                        e.message()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn resolve<'r>(repo: &'r Repository, label: &str) -> Result<git2::Commit<'r>, BackendError> {
    let as_ref = format!("refs/heads/{label}");
    if !git2::Reference::is_valid_name(&as_ref) || label.starts_with('-') {
        return Err(BackendError::Rejected(format!("invalid label {label:?}")));
    }
    for name in [
        format!("refs/remotes/origin/{label}"),
        format!("refs/tags/{label}"),
    ] {
        if let Ok(r) = repo.find_reference(&name) {
            return r
                .peel_to_commit()
                .map_err(|e| BackendError::Unavailable(e.message().to_owned()));
        }
    }
    if (7..=40).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(c) = repo.revparse_single(label).and_then(|o| o.peel_to_commit())
    {
        return Ok(c);
    }
    Err(BackendError::NoSuchLabel(label.to_owned()))
}

impl Backend for GitBackend {
    fn read(&self, request: &Request<'_>, paths: &[String]) -> Result<Files, BackendError> {
        let label = request.label.unwrap_or(&self.default_label);
        let (uri, local) = self.resolve(request);
        let slot = self
            .repos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(uri.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(State {
                    repo: None,
                    last_fetch: None,
                }))
            })
            .clone();
        let mut state = slot.lock().unwrap_or_else(PoisonError::into_inner);
        self.open(&mut state, &uri, &local)?;
        let repo = state.repo.as_ref().expect("opened");
        let commit = resolve(repo, label)?;
        let tree = commit
            .tree()
            .map_err(|e| BackendError::Unavailable(e.message().to_owned()))?;
        let mut contents = Vec::with_capacity(paths.len());
        for p in paths {
            check_relative_path("path", p)?;
            let blob = tree
                .get_path(Path::new(p))
                .ok()
                .and_then(|entry| entry.to_object(repo).ok())
                .and_then(|obj| obj.into_blob().ok())
                .map(|b| b.content().to_vec());
            contents.push(blob);
        }
        Ok(Files {
            version: Some(commit.id().to_string()),
            label: Some(label.to_owned()),
            contents,
        })
    }

    fn origin(&self, request: &Request<'_>) -> String {
        format!("{}/", self.resolve(request).0.trim_end_matches('/'))
    }

    fn healthy(&self) -> Result<(), BackendError> {
        if self.templated() {
            // There is no one repository to check before a request names an application.
            return Ok(());
        }
        let request = Request {
            application: "application",
            profiles: &[],
            label: None,
        };
        self.read(&request, &[]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn labels_are_branches_tags_and_commits() {
        let upstream = tempfile::tempdir().unwrap();
        let u = upstream.path();
        git(u, &["init", "-q"]);
        std::fs::write(u.join("a.yml"), "v: 1\n").unwrap();
        git(u, &["add", "."]);
        git(u, &["commit", "-qm", "one"]);
        let first = git(u, &["rev-parse", "HEAD"]);
        git(u, &["tag", "v1"]);
        git(u, &["checkout", "-qb", "feature/x"]);
        std::fs::write(u.join("a.yml"), "v: 2\n").unwrap();
        git(u, &["commit", "-qam", "two"]);
        git(u, &["checkout", "-q", "main"]);

        let local = tempfile::tempdir().unwrap();
        let b = GitBackend::new(u.display().to_string(), local.path().join("clone"));
        let paths = vec!["a.yml".to_owned(), "none.yml".to_owned()];
        let at = |label| Request {
            application: "a",
            profiles: &[],
            label,
        };
        let f = b.read(&at(None), &paths).unwrap();
        assert_eq!(f.contents[0].as_deref(), Some(&b"v: 1\n"[..]));
        assert_eq!(f.contents[1], None);
        assert_eq!(f.version.as_deref(), Some(first.as_str()));
        assert_eq!(f.label.as_deref(), Some("main"));
        let f = b.read(&at(Some("feature/x")), &paths).unwrap();
        assert_eq!(f.contents[0].as_deref(), Some(&b"v: 2\n"[..]));
        assert_eq!(
            b.read(&at(Some("v1")), &paths).unwrap().version,
            Some(first.clone())
        );
        assert_eq!(
            b.read(&at(Some(&first[..10])), &paths).unwrap().version,
            Some(first.clone())
        );
        assert!(matches!(
            b.read(&at(Some("nope")), &paths),
            Err(BackendError::NoSuchLabel(_))
        ));
        assert!(matches!(
            b.read(&at(Some("../x")), &paths),
            Err(BackendError::Rejected(_))
        ));
        assert!(matches!(
            b.read(&at(None), &["../a.yml".into()]),
            Err(BackendError::Rejected(_))
        ));

        // A new commit is seen on the next request (refresh rate zero).
        std::fs::write(u.join("a.yml"), "v: 3\n").unwrap();
        git(u, &["commit", "-qam", "three"]);
        let f = b.read(&at(None), &paths).unwrap();
        assert_eq!(f.contents[0].as_deref(), Some(&b"v: 3\n"[..]));
        assert_ne!(f.version.as_deref(), Some(first.as_str()));
    }

    #[test]
    fn an_application_placeholder_picks_a_repository_per_application() {
        let root = tempfile::tempdir().unwrap();
        for app in ["orders", "billing"] {
            let d = root.path().join(format!("{app}-config"));
            std::fs::create_dir_all(&d).unwrap();
            git(&d, &["init", "-q"]);
            std::fs::write(d.join("application.yml"), format!("owner: {app}\n")).unwrap();
            git(&d, &["add", "."]);
            git(&d, &["commit", "-qm", "one"]);
        }
        let local = tempfile::tempdir().unwrap();
        let template = format!("{}/{{application}}-config", root.path().display());
        let b = GitBackend::new(template, local.path());
        let paths = vec!["application.yml".to_owned()];
        for app in ["orders", "billing"] {
            let r = Request {
                application: app,
                profiles: &[],
                label: None,
            };
            let f = b.read(&r, &paths).unwrap();
            assert_eq!(
                f.contents[0].as_deref(),
                Some(format!("owner: {app}\n").as_bytes())
            );
            assert!(b.origin(&r).contains(&format!("{app}-config")));
        }
        let r = Request {
            application: "missing",
            profiles: &[],
            label: None,
        };
        assert!(matches!(
            b.read(&r, &paths),
            Err(BackendError::Unavailable(_))
        ));
        assert!(b.healthy().is_ok());
    }
}
