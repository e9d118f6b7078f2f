//! Ctrl-C during a run, the same for every operation: the first one cancels the run (every host
//! stops at its next step boundary, and waits such as health gates end at once), the second one
//! exits the process at once. Both say what is left undone and which command finishes the run.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// What the first and the second interrupt print.
pub fn messages(rerun: &str) -> (String, String) {
    (
        format!(
            "\nCtrl-C: stopping at the next step boundary (waits end at once); steps not started \
             are left undone and listed at the end. Run `{rerun}` again to finish. Ctrl-C again \
             to exit now."
        ),
        format!(
            "\nCtrl-C again: exiting now. The step running on each host may be half done and \
             every later step is left undone; run `{rerun}` again to finish: it resumes from what \
             the hosts show."
        ),
    )
}

/// Waits for interrupts (`next` resolves once per Ctrl-C, `false` when no more can come):
/// cancels `cancel` at the first and returns at the second (the caller then exits).
pub async fn watch<F, Fut>(mut next: F, cancel: CancellationToken, rerun: &str) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let (first, second) = messages(rerun);
    if !next().await {
        return false;
    }
    eprintln!("{first}");
    cancel.cancel();
    if !next().await {
        return false;
    }
    eprintln!("{second}");
    true
}

/// Installs the Ctrl-C handling for a run: cancels `cancel` on the first Ctrl-C and exits the
/// process with status 130 on the second.
pub fn install(cancel: CancellationToken, rerun: String) {
    tokio::spawn(async move {
        if watch(|| async { tokio::signal::ctrl_c().await.is_ok() }, cancel, &rerun).await {
            std::process::exit(130);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_interrupt_cancels_and_the_second_ends_the_watch() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let cancel = CancellationToken::new();
        let next = {
            let rx = rx.clone();
            move || {
                let rx = rx.clone();
                async move { rx.lock().await.recv().await.is_some() }
            }
        };
        let watcher = tokio::spawn(watch(next, cancel.clone(), "kubeforge apply"));
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(2), cancel.cancelled())
            .await
            .expect("the first Ctrl-C cancels the run");
        assert!(!watcher.is_finished(), "one Ctrl-C does not exit");
        tx.send(()).unwrap();
        let exits = tokio::time::timeout(std::time::Duration::from_secs(2), watcher)
            .await
            .expect("the second Ctrl-C ends the watch at once")
            .unwrap();
        assert!(exits, "the caller exits after the second Ctrl-C");
        let (first, second) = messages("kubeforge apply");
        assert!(first.contains("left undone") && first.contains("`kubeforge apply`"));
        assert!(second.contains("half done") && second.contains("`kubeforge apply`"));
    }
}
