//! Hot reload of the routes file.
//!
//! The file's directory is watched (editors and deploy tools replace files by rename), changes
//! are debounced, and each settled change goes through [`Gateway::reload_file`]: a bad file is
//! refused with its file, line and key, and the routes in use stay. Listeners and connections are
//! never touched by a reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Gateway;

/// Keeps a routes file watched; dropping it stops the watching.
#[derive(Debug)]
pub struct RoutesWatcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for RoutesWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches `file` and reloads the gateway's routes when it changes and has been quiet for
/// `debounce`. Outcomes are visible through [`Gateway::reload_status`]. Must be called inside a
/// tokio runtime.
pub fn watch_routes_file(
    gateway: Gateway,
    file: impl AsRef<Path>,
    debounce: Duration,
) -> Result<RoutesWatcher, notify::Error> {
    let file = std::path::absolute(file.as_ref()).map_err(notify::Error::io)?;
    let dir = file
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let name = file.file_name().map(|n| n.to_owned());
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
            && ev.paths.iter().any(|p| p.file_name() == name.as_deref())
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Settle: wait until no event came for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = gateway.reload_file(&file);
        }
    });
    Ok(RoutesWatcher {
        _watcher: watcher,
        task,
    })
}
