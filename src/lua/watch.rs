//! Reload on change: watches the scripts and hooks directories (directories, not files: editors
//! save by writing a new file and renaming it over the old one), waits for a quiet period
//! (`scripts.reload_debounce_ms`) after the last event, then reloads. SIGHUP reloads at once.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{ScriptError, ScriptHost};

/// Keeps the watch alive; dropping it stops the watching task.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Debounce: returns once no event came for `debounce` (false when the watcher is gone).
async fn quiet(rx: &mut mpsc::UnboundedReceiver<()>, debounce: Duration) -> bool {
    loop {
        tokio::select! {
            more = rx.recv() => if more.is_none() { return false },
            _ = tokio::time::sleep(debounce) => return true,
        }
    }
}

/// Starts watching the configured directories (those that exist) and SIGHUP.
pub fn watch(host: Arc<ScriptHost>) -> Result<WatchHandle, ScriptError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if is_lua_change(&ev) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "file watch error"),
    })
    .map_err(|e| ScriptError::Watch { path: "-".into(), message: e.to_string() })?;
    let cfg = host.config();
    for (dir, mode) in
        [(&cfg.paths.scripts_dir, RecursiveMode::Recursive), (&cfg.paths.hooks_dir, RecursiveMode::NonRecursive)]
    {
        if dir.is_dir() {
            watcher
                .watch(dir, mode)
                .map_err(|e| ScriptError::Watch { path: dir.display().to_string(), message: e.to_string() })?;
        }
    }
    let debounce = Duration::from_millis(cfg.scripts.reload_debounce_ms);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ScriptError::Watch { path: "SIGHUP".into(), message: e.to_string() })?;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = rx.recv() => {
                    if changed.is_none() {
                        return;
                    }
                    if !quiet(&mut rx, debounce).await {
                        return;
                    }
                    debug!("scripts changed on disk");
                    let _ = host.reload().await;
                }
                _ = hup.recv() => {
                    debug!("SIGHUP: reloading scripts");
                    let _ = host.reload().await;
                }
            }
        }
    });
    Ok(WatchHandle { _watcher: watcher, task })
}

/// A create/modify/remove/rename of a `.lua` file (not an access, not an editor's swap file).
fn is_lua_change(ev: &notify::Event) -> bool {
    use notify::EventKind::*;
    matches!(ev.kind, Create(_) | Modify(_) | Remove(_))
        && ev.paths.iter().any(|p| {
            p.extension().is_some_and(|e| e == "lua")
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the clock paused: a burst of events reloads once, `debounce` after the last one.
    #[tokio::test(start_paused = true)]
    async fn a_burst_reloads_once_after_the_last_event() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        let waiter = tokio::spawn(async move {
            let quiet_at = quiet(&mut rx, Duration::from_millis(200)).await.then(tokio::time::Instant::now);
            (quiet_at, rx)
        });
        for _ in 0..3 {
            tx.send(()).unwrap();
            tokio::task::yield_now().await; // the watcher sees the event now
            tokio::time::advance(Duration::from_millis(150)).await;
        }
        let (quiet_at, _rx) = waiter.await.unwrap();
        // Events at 0, 150 and 300 ms: quiet from 300 + 200 ms.
        assert_eq!(quiet_at.unwrap() - start, Duration::from_millis(500));
        // A closed watcher ends the wait at once.
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        drop(tx);
        assert!(!quiet(&mut rx, Duration::from_secs(3600)).await);
    }
}
