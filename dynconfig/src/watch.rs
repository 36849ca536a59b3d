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
                let Some(paths) = next_batch(&mut rx, debounce).await else {
                    return;
                };
                let mut changed = BTreeSet::new();
                mark(&files, &paths, &mut changed);
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

/// Waits for an event, then collects events until none came for `debounce` (a trailing
/// debounce); `None` once the channel is closed.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Vec<PathBuf>>,
    debounce: Duration,
) -> Option<Vec<PathBuf>> {
    let mut batch = rx.recv().await?;
    loop {
        tokio::select! {
            more = rx.recv() => batch.extend(more?),
            () = tokio::time::sleep(debounce) => return Some(batch),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn events_are_coalesced_until_the_debounce_passes_quietly() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        tx.send(vec![PathBuf::from("a")]).unwrap();
        let batch = tokio::spawn(async move {
            let b = next_batch(&mut rx, Duration::from_millis(50)).await;
            (b, Instant::now(), rx)
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send(vec![PathBuf::from("b")]).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send(vec![PathBuf::from("c")]).unwrap();
        let (b, at, mut rx) = batch.await.unwrap();
        assert_eq!(
            b.unwrap(),
            [PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c")]
        );
        assert_eq!(
            at - start,
            Duration::from_millis(110),
            "50 ms after the last event"
        );

        // The next event starts a new batch; a closed channel ends the loop.
        tx.send(vec![PathBuf::from("d")]).unwrap();
        drop(tx);
        assert_eq!(next_batch(&mut rx, Duration::from_millis(50)).await, None);
    }
}
