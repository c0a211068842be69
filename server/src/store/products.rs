//! Products: what a vendor sells, as a set of ref patterns in one repository.

use serde::Serialize;

use super::{BeginWrite, Result, Store, StoreError, insert_rows, now, on_pool};
use crate::refpattern::RefPattern;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Product {
    pub slug: String,
    pub name: String,
    /// Ref patterns, sorted.
    pub refs: Vec<String>,
    /// An inactive product opens nothing, whoever holds it.
    pub active: bool,
    pub created: i64,
    /// The repository whose refs it covers, by its name in tokens (`""` for the one served at
    /// `/`); `None`: the only repository served, and none while several are served.
    pub repo: Option<String>,
    /// Where it is sold (the vendor's shop), if it is.
    #[serde(rename = "purchase-url")]
    pub purchase_url: Option<String>,
}

impl Product {
    /// Whether any of the product's patterns covers `ref_name`.
    pub(crate) fn covers(&self, ref_name: &str) -> bool {
        self.refs
            .iter()
            .filter_map(|p| RefPattern::new(p).ok())
            .any(|p| p.matches(ref_name))
    }

    /// Whether the product covers refs of the repository `repo` (its name in tokens), when
    /// `sole` says whether that is the only repository served.
    pub(crate) fn in_repo(&self, repo: &str, sole: bool) -> bool {
        match &self.repo {
            Some(own) => own == repo,
            None => sole,
        }
    }
}

/// A product's repository is a repository name, or `""` for the one served at `/`.
fn check_repo(repo: Option<&str>) -> Result<()> {
    match repo {
        Some(name) if !name.is_empty() && !crate::repos::is_valid_name(name) => {
            Err(StoreError::Invalid(format!(
                "{name:?} is not a repository name (as in --repo NAME=PATH: letters, digits, \
                 '-', '_', '.'; \"\" for the repository served at /)"
            )))
        }
        _ => Ok(()),
    }
}

/// Slugs are short identifiers: lowercase letters, digits and `-`, starting with a letter.
pub(super) fn check_slug(slug: &str) -> Result<()> {
    let ok = (1..=64).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{slug:?} is not a product slug (1 to 64 lowercase letters, digits and '-', starting \
             with a letter)"
        )))
    }
}

/// A shop's address: an absolute `https://` (or `http://`) URL without user information.
pub(crate) fn check_purchase_url(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).ok().filter(|u| {
        matches!(u.scheme(), "https" | "http")
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
    });
    if parsed.is_none() || url.len() > 2000 || url.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{:?} is not a shop's address: give an absolute https:// URL (at most 2000 characters)",
            url.chars().take(100).collect::<String>()
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "a product name is 1 to 200 characters, without control characters".to_owned(),
        ));
    }
    Ok(())
}

fn check_patterns(patterns: &[String]) -> Result<Vec<String>> {
    if patterns.is_empty() || patterns.len() > 1000 {
        return Err(StoreError::Invalid(
            "a product needs 1 to 1000 ref patterns".to_owned(),
        ));
    }
    let mut out = Vec::with_capacity(patterns.len());
    for p in patterns {
        if p.len() > 1024 {
            return Err(StoreError::Invalid(
                "a ref pattern is at most 1024 characters".to_owned(),
            ));
        }
        RefPattern::new(p).map_err(StoreError::Invalid)?;
        out.push(p.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Store {
    pub(crate) async fn product_add(
        &self,
        slug: &str,
        name: &str,
        patterns: &[String],
        repo: Option<&str>,
    ) -> Result<Product> {
        check_slug(slug)?;
        check_name(name)?;
        check_repo(repo)?;
        let patterns = check_patterns(patterns)?;
        let created = now();
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO products (slug, name, created, repo) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug)
            .bind(name)
            .bind(created)
            .bind(repo)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("the product {slug:?} exists already")));
            }
            insert_rows!(
                tx,
                "INSERT INTO product_refs (product, pattern) VALUES ($1, $2)",
                slug,
                &patterns
            );
            tx.commit().await?;
        });
        Ok(Product {
            slug: slug.to_owned(),
            name: name.to_owned(),
            refs: patterns,
            active: true,
            created,
            repo: repo.map(str::to_owned),
            purchase_url: None,
        })
    }

    pub(crate) async fn product_list(&self) -> Result<Vec<Product>> {
        type Rows = (
            Vec<(String, String, bool, i64, Option<String>, Option<String>)>,
            Vec<(String, String)>,
        );
        let (products, refs): Rows = on_pool!(self, read, pool => {
            let products = sqlx::query_as(
                "SELECT slug, name, active, created, repo, purchase_url FROM products ORDER BY slug",
            )
            .fetch_all(pool)
            .await?;
            let refs = sqlx::query_as(
                "SELECT product, pattern FROM product_refs ORDER BY product, pattern",
            )
            .fetch_all(pool)
            .await?;
            (products, refs)
        });
        Ok(products
            .into_iter()
            .map(|(slug, name, active, created, repo, purchase_url)| {
                let refs = refs
                    .iter()
                    .filter(|(p, _)| *p == slug)
                    .map(|(_, r)| r.clone())
                    .collect();
                Product {
                    slug,
                    name,
                    refs,
                    active,
                    created,
                    repo,
                    purchase_url,
                }
            })
            .collect())
    }

    pub(crate) async fn product_get(&self, slug: &str) -> Result<Product> {
        type Row = (String, bool, i64, Option<String>, Option<String>);
        type Rows = (Option<Row>, Vec<(String,)>);
        let (row, refs): Rows = on_pool!(self, read, pool => {
            let row = sqlx::query_as(
                "SELECT name, active, created, repo, purchase_url FROM products WHERE slug = $1",
            )
                .bind(slug)
                .fetch_optional(pool)
                .await?;
            let refs = sqlx::query_as(
                "SELECT pattern FROM product_refs WHERE product = $1 ORDER BY pattern",
            )
            .bind(slug)
            .fetch_all(pool)
            .await?;
            (row, refs)
        });
        let (name, active, created, repo, purchase_url) =
            row.ok_or_else(|| StoreError::NotFound(format!("product {slug:?}")))?;
        Ok(Product {
            slug: slug.to_owned(),
            name,
            refs: refs.into_iter().map(|(r,)| r).collect(),
            active,
            created,
            repo,
            purchase_url,
        })
    }

    /// Sets where a product is sold (`None`: nowhere).
    pub(crate) async fn product_set_purchase_url(
        &self,
        slug: &str,
        purchase_url: Option<&str>,
    ) -> Result<Product> {
        if let Some(url) = purchase_url {
            check_purchase_url(url)?;
        }
        let changed = on_pool!(self, change, pool => {
            sqlx::query("UPDATE products SET purchase_url = $1 WHERE slug = $2")
                .bind(purchase_url)
                .bind(slug)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 0 {
            return Err(StoreError::NotFound(format!("product {slug:?}")));
        }
        self.product_get(slug).await
    }

    /// Changes a product's name, patterns, whether it is active, or its repository
    /// (`Some(None)`: none, the only one served); `None` leaves a field as it is.
    pub(crate) async fn product_update(
        &self,
        slug: &str,
        name: Option<&str>,
        patterns: Option<&[String]>,
        active: Option<bool>,
        repo: Option<Option<&str>>,
    ) -> Result<Product> {
        if let Some(name) = name {
            check_name(name)?;
        }
        if let Some(repo) = repo {
            check_repo(repo)?;
        }
        let patterns = patterns.map(check_patterns).transpose()?;
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT slug FROM products WHERE slug = $1")
                    .bind(slug)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("product {slug:?}")));
            }
            if let Some(name) = name {
                sqlx::query("UPDATE products SET name = $1 WHERE slug = $2")
                    .bind(name)
                    .bind(slug)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(active) = active {
                sqlx::query("UPDATE products SET active = $1 WHERE slug = $2")
                    .bind(active)
                    .bind(slug)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(repo) = repo {
                sqlx::query("UPDATE products SET repo = $1 WHERE slug = $2")
                    .bind(repo)
                    .bind(slug)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(patterns) = &patterns {
                sqlx::query("DELETE FROM product_refs WHERE product = $1")
                    .bind(slug)
                    .execute(&mut *tx)
                    .await?;
                insert_rows!(
                    tx,
                    "INSERT INTO product_refs (product, pattern) VALUES ($1, $2)",
                    slug,
                    patterns
                );
            }
            tx.commit().await?;
        });
        self.product_get(slug).await
    }

    /// Removes a product that no license or account holds.
    pub(crate) async fn product_remove(&self, slug: &str) -> Result<()> {
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            let (holders,): (i64,) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM license_products WHERE product = $1) \
                      + (SELECT COUNT(*) FROM account_products WHERE product = $1)",
            )
            .bind(slug)
            .fetch_one(&mut *tx)
            .await?;
            if holders > 0 {
                return Err(StoreError::Conflict(format!(
                    "the product {slug:?} is held by {holders} licenses or accounts; take it \
                     from them first"
                )));
            }
            let removed = sqlx::query("DELETE FROM products WHERE slug = $1")
                .bind(slug)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed == 0 {
                return Err(StoreError::NotFound(format!("product {slug:?}")));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The products with these slugs; an unknown slug is an error naming it.
    pub(super) async fn products_exist(&self, slugs: &[String]) -> Result<()> {
        if slugs.is_empty() {
            return Err(StoreError::Invalid("give at least one product".to_owned()));
        }
        for slug in slugs {
            check_slug(slug)?;
            let found: Option<(String,)> = on_pool!(self, read, pool => {
                sqlx::query_as("SELECT slug FROM products WHERE slug = $1")
                    .bind(slug)
                    .fetch_optional(pool)
                    .await?
            });
            if found.is_none() {
                return Err(StoreError::NotFound(format!("product {slug:?}")));
            }
        }
        Ok(())
    }
}
