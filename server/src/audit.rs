//! Audit records, written off the request path: every token issued, and every gated `.commit`
//! object or static delta superblock served (with the ref that allowed it and the token's id
//! and subject).
//!
//! Requests hand records to the [`AuditWriter`], which queues them for one task that writes
//! them to the database in batches (one transaction per batch) and retries a failed write.
//! Closing the writer waits until everything queued is written, so a clean shutdown loses
//! nothing. A record that cannot be queued or written goes to the log instead of vanishing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::{DownloadRow, IssuedToken, Store, now};

/// Records waiting to be written; beyond this, a gated download is logged instead.
const QUEUE: usize = 65_536;
/// Records written in one transaction at most.
const BATCH: usize = 512;
/// How long a batch waits for more records after its first.
const LINGER: Duration = Duration::from_millis(50);

/// One gated download, as the gate reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DownloadRecord {
    pub repo: String,
    pub ref_name: String,
    pub commit: String,
    /// The token's `jti`, when it has one.
    pub token_id: Option<String>,
    pub subject: String,
    pub user_agent: String,
}

#[derive(Debug)]
enum Entry {
    Download(DownloadRow),
    Issued(IssuedToken),
    /// Write what came before, then stop.
    Close,
}

#[derive(Debug)]
pub(crate) struct AuditWriter {
    queue: mpsc::Sender<Entry>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AuditWriter {
    /// Starts the writing task on the current runtime.
    pub(crate) fn start(store: Store) -> AuditWriter {
        let (queue, entries) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_all(store, entries));
        AuditWriter {
            queue,
            task: Mutex::new(Some(task)),
        }
    }

    /// Records a gated download; never blocks the request.
    pub(crate) fn gated_download(&self, r: DownloadRecord) {
        tracing::info!(
            target: "tollgate::audit",
            repo = %r.repo,
            r#ref = %r.ref_name,
            commit = %r.commit,
            token = r.token_id.as_deref().unwrap_or("-"),
            subject = %r.subject,
            user_agent = ?r.user_agent,
            "gated download"
        );
        let row = DownloadRow {
            seq: 0,
            at: now(),
            repo: r.repo,
            ref_name: r.ref_name,
            commit: r.commit,
            token_id: r.token_id,
            subject: r.subject,
            user_agent: r.user_agent,
        };
        if let Err(e) = self.queue.try_send(Entry::Download(row)) {
            tracing::warn!(
                "the audit queue is full or closed; this download is only in the log: {e}"
            );
        }
    }

    /// Records an issued token, waiting for room in the queue if it is full.
    pub(crate) async fn issued(&self, token: IssuedToken) {
        if let Err(e) = self.queue.send(Entry::Issued(token)).await {
            tracing::error!(
                "the audit writer has stopped; an issued token was not recorded: {:?}",
                e.0
            );
        }
    }

    /// Writes everything queued and stops.
    pub(crate) async fn close(&self) {
        let _ = self.queue.send(Entry::Close).await;
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!("the audit writer failed: {e}");
        }
    }
}

async fn write_all(store: Store, mut entries: mpsc::Receiver<Entry>) {
    let mut downloads = Vec::new();
    let mut issued = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Everything waiting, up to a batch; at least one record, or none when closed.
        if entries.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // A small batch lingers for more. It sleeps rather than waits on the queue, which
        // would wake this task (on another thread than the requests') for every record: at
        // tens of thousands of tokens a second, that wake-up cost more than the writing.
        if batch.len() < BATCH && !batch.iter().any(|e| matches!(e, Entry::Close)) {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match entries.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        let mut closing = false;
        for entry in batch.drain(..) {
            closing |= sort(entry, &mut downloads, &mut issued);
        }
        if closing {
            // Nothing more gets in (a late request's record goes to the log instead), and
            // everything already in, also what came after the close request, is written.
            entries.close();
            while let Some(entry) = entries.recv().await {
                sort(entry, &mut downloads, &mut issued);
            }
        }
        write_batch(&store, &mut downloads, &mut issued).await;
        if closing {
            return;
        }
    }
}

/// Puts an entry in its batch; returns whether it asks to close.
fn sort(entry: Entry, downloads: &mut Vec<DownloadRow>, issued: &mut Vec<IssuedToken>) -> bool {
    match entry {
        Entry::Download(d) => downloads.push(d),
        Entry::Issued(t) => issued.push(t),
        Entry::Close => return true,
    }
    false
}

/// Writes the batch, retrying a few times; what still fails goes to the log.
async fn write_batch(
    store: &Store,
    downloads: &mut Vec<DownloadRow>,
    issued: &mut Vec<IssuedToken>,
) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        let result = match store.record_downloads(downloads).await {
            Ok(()) => {
                downloads.clear();
                store.record_issued(issued).await.map(|()| issued.clear())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) if attempt < 5 => {
                tracing::warn!("writing audit records failed ({e}); trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(
                    "writing audit records failed ({e}); they are only in this log: \
                     downloads {downloads:?}, tokens {issued:?}"
                );
                downloads.clear();
                issued.clear();
            }
        }
    }
}
