//! Watching the files of a [`Config`] with `notify`, debounced.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Config, ConfigError};

/// Keeps the files of a [`Config`] watched; dropping it stops the watching.
#[derive(Debug)]
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Config {
    /// Watches every file source and re-reads a file once it has been quiet for `debounce`
    /// (editors and `git checkout` write in several steps). The directory of each file is watched,
    /// so a file replaced by a rename, or created after start (an optional file), is seen. Each
    /// changed file is one update through the usual validation; callbacks run on the watcher's
    /// task. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the operating system's watcher cannot be set up.
    pub fn watch_files(&self, debounce: Duration) -> Result<FileWatcher, ConfigError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && !ev.kind.is_access()
            {
                let _ = tx.send(ev.paths);
            }
        })
        .map_err(|e| ConfigError::setup(format!("cannot start the file watcher: {e}")))?;
        let dirs: BTreeSet<PathBuf> = self
            .inner
            .files
            .iter()
            .filter_map(|f| f.path.parent().map(PathBuf::from))
            .collect();
        for d in &dirs {
            watcher
                .watch(d, RecursiveMode::NonRecursive)
                .map_err(|e| ConfigError::setup(format!("cannot watch {}: {e}", d.display())))?;
        }
        let files: Vec<PathBuf> = self.inner.files.iter().map(|f| f.path.clone()).collect();
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            loop {
                let Some(paths) = rx.recv().await else { return };
                let mut changed = BTreeSet::new();
                mark(&files, &paths, &mut changed);
                // Trailing debounce: wait until no event came for `debounce`.
                loop {
                    tokio::select! {
                        more = rx.recv() => match more {
                            Some(p) => mark(&files, &p, &mut changed),
                            None => return,
                        },
                        () = tokio::time::sleep(debounce) => break,
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let config = Config { inner };
                for i in changed {
                    // Rejections are logged and broadcast by the update path.
                    let _ = config.reload_file(i);
                }
            }
        });
        Ok(FileWatcher {
            _watcher: watcher,
            task,
        })
    }
}

fn mark(files: &[PathBuf], paths: &[PathBuf], changed: &mut BTreeSet<usize>) {
    for p in paths {
        for (i, f) in files.iter().enumerate() {
            if p == f {
                changed.insert(i);
            }
        }
    }
}
