//! Audit records of gated downloads: every gated `.commit` object and static delta superblock
//! served, with the ref that allowed it and the token's id and subject.
//!
//! The gate hands records to an [`AuditSink`]; for now the sink writes them to the log (target
//! `tollgate::audit`). The entitlement service will persist them, in batches, off the request
//! path; a sink must therefore never block.

use std::fmt;

/// One gated download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRecord {
    pub repo: String,
    pub ref_name: String,
    pub commit: String,
    /// The token's `jti`, when it has one.
    pub token_id: Option<String>,
    pub subject: String,
    pub user_agent: String,
}

/// Where gated-download records go. Implementations must return at once.
pub trait AuditSink: Send + Sync + fmt::Debug {
    fn gated_download(&self, record: DownloadRecord);
}

/// Writes each record as one log line.
#[derive(Debug, Default)]
pub struct LogAudit;

impl AuditSink for LogAudit {
    fn gated_download(&self, r: DownloadRecord) {
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
    }
}
