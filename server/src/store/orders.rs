//! Orders from a shop's hook: each makes a license for its products (redeemed into the
//! customer's account when the order names one), or extends the license an earlier order of
//! the same customer made for the same products. An order id is taken once: a second order
//! with it changes nothing.

use super::{License, NewLicense, Result, Store, StoreError, now, on_pool};

/// The longest order id and email taken.
const MAX_ID: usize = 200;
const MAX_EMAIL: usize = 254;
/// The longest an order may run: a hundred years of days.
const MAX_DAYS: i64 = 36_600;

/// What a shop sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Order {
    pub id: String,
    pub email: String,
    pub products: Vec<String>,
    /// Days the license runs (from now, or from its end when extended); `None`: no end.
    pub days: Option<i64>,
    /// The account the license goes into.
    pub account: Option<String>,
}

/// What an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OrderOutcome {
    /// A new license, and its key (shown this once).
    Created(License, String),
    /// The license an earlier order made, with its end moved.
    Extended(License),
}

fn check(order: &Order) -> Result<()> {
    let printable = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
    if !printable(&order.id) || order.id.len() > MAX_ID {
        return Err(StoreError::Invalid(format!(
            "an order id is 1 to {MAX_ID} characters, without control characters"
        )));
    }
    let email_ok = printable(&order.email)
        && order.email.len() <= MAX_EMAIL
        && order.email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !order.email.contains(char::is_whitespace)
        });
    if !email_ok {
        return Err(StoreError::Invalid(format!(
            "{:?} is not an email address",
            order.email.chars().take(100).collect::<String>()
        )));
    }
    if order.days.is_some_and(|d| !(1..=MAX_DAYS).contains(&d)) {
        return Err(StoreError::Invalid(format!(
            "days is 1 to {MAX_DAYS}, or left out for no end"
        )));
    }
    Ok(())
}

impl Store {
    /// Applies an order: takes its id, then makes or extends a license. A failure after the id
    /// was taken gives it back, so that the shop can send the order again once it is right.
    pub(crate) async fn order_apply(&self, order: &Order) -> Result<OrderOutcome> {
        check(order)?;
        self.products_exist(&order.products).await?;
        if let Some(account) = &order.account
            && self.account_row(account).await?.is_none()
        {
            return Err(StoreError::NotFound(format!("account {account:?}")));
        }
        let received = now();
        let taken = on_pool!(self, write, pool => {
            sqlx::query(
                "INSERT INTO orders (id, email, license, received) VALUES ($1, $2, '', $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&order.id)
            .bind(&order.email)
            .bind(received)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if taken == 0 {
            return Err(StoreError::Conflict(format!(
                "the order {:?} was received already; nothing was changed",
                order.id
            )));
        }
        let applied = self.order_license(order, received).await;
        let license_id = match &applied {
            Ok(OrderOutcome::Created(license, _) | OrderOutcome::Extended(license)) => {
                license.id.clone()
            }
            Err(_) => String::new(),
        };
        on_pool!(self, write, pool => {
            if applied.is_ok() {
                sqlx::query("UPDATE orders SET license = $1 WHERE id = $2")
                    .bind(&license_id)
                    .bind(&order.id)
                    .execute(pool)
                    .await?;
            } else {
                sqlx::query("DELETE FROM orders WHERE id = $1")
                    .bind(&order.id)
                    .execute(pool)
                    .await?;
            }
        });
        applied
    }

    /// The license an order makes, or the one of the same customer, products and account an
    /// earlier order made (still active), extended.
    async fn order_license(&self, order: &Order, at: i64) -> Result<OrderOutcome> {
        let earlier: Vec<(String,)> = on_pool!(self, read, pool => {
            sqlx::query_as(
                "SELECT license FROM orders WHERE email = $1 AND license <> '' \
                 ORDER BY received DESC",
            )
            .bind(&order.email)
            .fetch_all(pool)
            .await?
        });
        let mut wanted = order.products.clone();
        wanted.sort();
        wanted.dedup();
        for (id,) in earlier {
            let Ok(license) = self.license_get(&id).await else {
                continue;
            };
            if license.active && license.products == wanted && license.account == order.account {
                let expires = match (license.expires, order.days) {
                    (None, _) | (_, None) => None,
                    (Some(end), Some(days)) => Some(end.max(at).saturating_add(days * 86_400)),
                };
                let license = self
                    .license_update(&id, None, None, Some(expires), None)
                    .await?;
                return Ok(OrderOutcome::Extended(license));
            }
        }
        let (license, key) = self
            .license_add(&NewLicense {
                products: wanted,
                expires: order.days.map(|d| at.saturating_add(d * 86_400)),
                note: format!("order {} for {}", order.id, order.email),
                account: order.account.clone(),
            })
            .await?;
        Ok(OrderOutcome::Created(license, key))
    }
}
