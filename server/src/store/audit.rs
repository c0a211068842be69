//! Audit records: every token issued and every gated download, written in batches by the audit
//! writer (see `crate::audit`) and read back with filters and paging.

use serde::Serialize;

use tollgate_ostree_format::RefName;

use super::{BeginWrite, Result, Store, StoreError, on_pool};

/// One issued token, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct IssuedToken {
    /// Order of recording; pass the last one seen as `after` to page.
    pub seq: i64,
    pub jti: String,
    pub subject: String,
    pub license: Option<String>,
    pub account: Option<String>,
    pub repo: String,
    pub refs: Vec<String>,
    /// The client's address.
    pub client: String,
    pub issued: i64,
    pub expires: i64,
}

/// One gated download, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DownloadRow {
    pub seq: i64,
    pub at: i64,
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: String,
    pub token_id: Option<String>,
    pub subject: String,
    pub user_agent: String,
}

/// Which audit records to read: newest first, `limit` at most, older than `before` (a `seq`).
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    pub since: Option<i64>,
    pub license: Option<String>,
    pub ref_name: Option<String>,
    pub before: Option<i64>,
    pub limit: i64,
    /// Downloads only: by this subject (`license:ID`, `account:NAME`, a token's `sub`).
    pub subject: Option<String>,
}

impl AuditFilter {
    /// A ref filter must be a ref name (which is what makes matching it in `refs` exact).
    fn check(&self) -> Result<()> {
        match &self.ref_name {
            Some(r) if RefName::new(r).is_err() => Err(StoreError::Invalid(format!(
                "{r:?} is not a ref name (app/ID/ARCH/BRANCH, say)"
            ))),
            _ => Ok(()),
        }
    }
}

/// Rows written by one `INSERT` at most: one statement per round trip to the database, well
/// under both databases' limits on bound values.
const ROWS_PER_INSERT: usize = 64;

impl Store {
    /// Records issued tokens in one transaction.
    pub(crate) async fn record_issued(&self, tokens: &[IssuedToken]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        on_pool!(self, write, pool => {
            let mut tx = pool.begin_write().await?;
            for chunk in tokens.chunks(ROWS_PER_INSERT) {
                sqlx::QueryBuilder::new(
                    "INSERT INTO issued_tokens \
                     (jti, subject, license, account, repo, refs, client, issued, expires) ",
                )
                .push_values(chunk, |mut row, t| {
                    row.push_bind(&t.jti)
                        .push_bind(&t.subject)
                        .push_bind(&t.license)
                        .push_bind(&t.account)
                        .push_bind(&t.repo)
                        .push_bind(serde_json::to_string(&t.refs).unwrap_or_default())
                        .push_bind(&t.client)
                        .push_bind(t.issued)
                        .push_bind(t.expires);
                })
                .build()
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records gated downloads in one transaction.
    pub(crate) async fn record_downloads(&self, rows: &[DownloadRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        on_pool!(self, write, pool => {
            let mut tx = pool.begin_write().await?;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                sqlx::QueryBuilder::new(
                    "INSERT INTO downloads \
                     (at, repo, ref_name, commit_id, token_id, subject, user_agent) ",
                )
                .push_values(chunk, |mut row, d| {
                    row.push_bind(d.at)
                        .push_bind(&d.repo)
                        .push_bind(&d.ref_name)
                        .push_bind(&d.commit)
                        .push_bind(&d.token_id)
                        .push_bind(&d.subject)
                        .push_bind(&d.user_agent);
                })
                .build()
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Issued tokens, newest first. The ref filter matches a ref in the token exactly.
    pub(crate) async fn issued_tokens(&self, filter: &AuditFilter) -> Result<Vec<IssuedToken>> {
        filter.check()?;
        type Row = (
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
            String,
            i64,
            i64,
        );
        // `refs` holds a JSON array of ref names, and a ref name has no quotes or backslashes,
        // so `"REF"` appears in it exactly when REF is one of the refs.
        let ref_pattern = filter.ref_name.as_ref().map(|r| {
            let escaped = r
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%\"{escaped}\"%")
        });
        let rows: Vec<Row> = on_pool!(self, read, pool => {
            sqlx::query_as(
                "SELECT seq, jti, subject, license, account, repo, refs, client, issued, expires \
                 FROM issued_tokens \
                 WHERE ($1 IS NULL OR issued >= $1) AND ($2 IS NULL OR license = $2) \
                   AND ($3 IS NULL OR seq < $3) AND ($5 IS NULL OR refs LIKE $5 ESCAPE '\\') \
                 ORDER BY seq DESC LIMIT $4",
            )
            .bind(filter.since)
            .bind(&filter.license)
            .bind(filter.before)
            .bind(filter.limit)
            .bind(&ref_pattern)
            .fetch_all(pool)
            .await?
        });
        let out: Vec<IssuedToken> = rows
            .into_iter()
            .map(
                |(seq, jti, subject, license, account, repo, refs, client, issued, expires)| {
                    IssuedToken {
                        seq,
                        jti,
                        subject,
                        license,
                        account,
                        repo,
                        refs: serde_json::from_str(&refs).unwrap_or_default(),
                        client,
                        issued,
                        expires,
                    }
                },
            )
            .collect();
        Ok(out)
    }

    /// Gated downloads, newest first.
    pub(crate) async fn downloads(&self, filter: &AuditFilter) -> Result<Vec<DownloadRow>> {
        filter.check()?;
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<Row> = on_pool!(self, read, pool => {
            sqlx::query_as(
                "SELECT seq, at, repo, ref_name, commit_id, token_id, subject, user_agent \
                 FROM downloads \
                 WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR ref_name = $2) \
                   AND ($3 IS NULL OR seq < $3) AND ($5 IS NULL OR subject = $5) \
                 ORDER BY seq DESC LIMIT $4",
            )
            .bind(filter.since)
            .bind(&filter.ref_name)
            .bind(filter.before)
            .bind(filter.limit)
            .bind(&filter.subject)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(seq, at, repo, ref_name, commit, token_id, subject, user_agent)| DownloadRow {
                    seq,
                    at,
                    repo,
                    ref_name,
                    commit,
                    token_id,
                    subject,
                    user_agent,
                },
            )
            .collect())
    }
}
