//! `tollgate admin ...`: products, licenses, accounts and the audit records, straight in the
//! database, with tables for people and `--json` for scripts. The admin HTTP API does the same
//! through the same `Store` operations.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{DataDirArg, DatabaseArg};
use crate::datadir::prepare_data_dir;
use crate::output::{print_json, print_line, print_table};
use crate::store::{
    Account, AuditFilter, License, Location, NewLicense, Product, Store, check_purchase_url,
};
use crate::times::{parse_rfc3339, parse_time, time};

#[derive(Debug, Args)]
pub(super) struct AdminArgs {
    #[command(flatten)]
    data_dir: DataDirArg,
    #[command(flatten)]
    database: DatabaseArg,
    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Products: what is sold, as ref patterns.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Licenses: keys that open products.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Accounts: a name and a password that open products.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The tokens issued (or, with --downloads, the gated downloads), newest first.
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
pub(super) enum ProductCommand {
    /// Add a product.
    Add {
        /// Its short identifier: lowercase letters, digits and '-'.
        slug: String,
        #[arg(long)]
        name: String,
        /// A ref pattern it covers (`*` any run of characters, `?` one). Repeatable.
        #[arg(long = "ref", value_name = "PATTERN", required = true)]
        refs: Vec<String>,
        /// The repository whose refs it covers: NAME as served with `--repo NAME=PATH`, or ''
        /// for the one served at `/`. Needed when the server serves several; left out, the
        /// product covers the only repository served (and nothing while several are).
        #[arg(long, value_name = "NAME")]
        repo: Option<String>,
        /// Where it is sold (the vendor's shop, https://...): the web flow sends customers
        /// whose license does not cover it there.
        #[arg(long, value_name = "URL")]
        purchase_url: Option<String>,
    },
    List,
    Show {
        slug: String,
    },
    /// Change a product's name or patterns.
    Update {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all patterns. Repeatable.
        #[arg(long = "ref", value_name = "PATTERN")]
        refs: Vec<String>,
        /// Moves it to this repository (NAME, or '' for the one served at `/`).
        #[arg(long, value_name = "NAME")]
        repo: Option<String>,
        /// Where it is sold ('' for nowhere).
        #[arg(long, value_name = "URL")]
        purchase_url: Option<String>,
    },
    /// Withdraw a product: it opens nothing, whoever holds it, until activated again (tokens
    /// already issued run out within minutes).
    Deactivate {
        slug: String,
    },
    Activate {
        slug: String,
    },
    /// Remove a product that no license or account holds.
    Remove {
        slug: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum LicenseCommand {
    /// Create a license and print its key, once: only a hash of it is kept.
    Add {
        /// A product it opens. Repeatable.
        #[arg(long = "product", value_name = "SLUG", required = true)]
        products: Vec<String>,
        /// When it stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        /// The account it is redeemed into from the start (as a shop does for a customer who
        /// bought it signed in).
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },
    List,
    Show {
        id: String,
    },
    /// Change what a license opens, when it expires, or its note.
    Update {
        id: String,
        /// Replaces all products. Repeatable.
        #[arg(long = "product", value_name = "SLUG")]
        products: Vec<String>,
        #[arg(long, value_name = "RFC3339", conflicts_with = "no_expiry")]
        expires: Option<String>,
        /// Make it never expire.
        #[arg(long)]
        no_expiry: bool,
        #[arg(long)]
        note: Option<String>,
    },
    /// Stop a license from getting tokens (tokens already issued run out within minutes).
    Deactivate {
        id: String,
    },
    Activate {
        id: String,
    },
    Remove {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum AccountCommand {
    /// Create an account; the password is read from stdin.
    Add {
        name: String,
        /// A product it opens. Repeatable.
        #[arg(long = "product", value_name = "SLUG", required = true)]
        products: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
    /// Change what an account opens, or (with --password-stdin) its password.
    Update {
        name: String,
        #[arg(long = "product", value_name = "SLUG")]
        products: Vec<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    Deactivate {
        name: String,
    },
    Activate {
        name: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Args)]
pub(super) struct AuditArgs {
    /// Only records from this time on: RFC 3339, or an age such as `24h` or `7days`.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only tokens issued to this license.
    #[arg(long, value_name = "ID")]
    license: Option<String>,
    /// Only records for this ref.
    #[arg(long = "ref", value_name = "REF")]
    ref_name: Option<String>,
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: i64,
    /// Gated downloads instead of issued tokens.
    #[arg(long)]
    downloads: bool,
}

pub(super) fn run(args: AdminArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.resolve()?;
    let location = Location::new(&data_dir, args.database.url.as_deref());
    if matches!(location, Location::Sqlite(_)) {
        prepare_data_dir(&data_dir)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&location)
            .await
            .with_context(|| format!("opening the database {location}"))?;
        let result = command(&store, args.json, args.command).await;
        store.close().await;
        result
    })
}

async fn command(store: &Store, json: bool, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Product(c) => product(store, json, c).await,
        AdminCommand::License(c) => license(store, json, c).await,
        AdminCommand::Account(c) => account(store, json, c).await,
        AdminCommand::Audit(a) => audit(store, json, a).await,
    }
}

async fn product(store: &Store, json: bool, command: ProductCommand) -> anyhow::Result<()> {
    let products = match command {
        ProductCommand::Add {
            slug,
            name,
            refs,
            repo,
            purchase_url,
        } => {
            if let Some(url) = &purchase_url {
                check_purchase_url(url)?;
            }
            let mut product = store
                .product_add(&slug, &name, &refs, repo.as_deref())
                .await?;
            if let Some(url) = &purchase_url {
                product = store.product_set_purchase_url(&slug, Some(url)).await?;
            }
            vec![product]
        }
        ProductCommand::List => store.product_list().await?,
        ProductCommand::Show { slug } => vec![store.product_get(&slug).await?],
        ProductCommand::Update {
            slug,
            name,
            refs,
            repo,
            purchase_url,
        } => {
            let refs = (!refs.is_empty()).then_some(refs.as_slice());
            if let Some(url) = purchase_url.as_deref().filter(|u| !u.is_empty()) {
                check_purchase_url(url)?;
            }
            let mut product = store
                .product_update(
                    &slug,
                    name.as_deref(),
                    refs,
                    None,
                    repo.as_deref().map(Some),
                )
                .await?;
            if let Some(url) = &purchase_url {
                let url = Some(url.as_str()).filter(|u| !u.is_empty());
                product = store.product_set_purchase_url(&slug, url).await?;
            }
            vec![product]
        }
        ProductCommand::Deactivate { slug } => {
            vec![
                store
                    .product_update(&slug, None, None, Some(false), None)
                    .await?,
            ]
        }
        ProductCommand::Activate { slug } => {
            vec![
                store
                    .product_update(&slug, None, None, Some(true), None)
                    .await?,
            ]
        }
        ProductCommand::Remove { slug } => {
            store.product_remove(&slug).await?;
            return done(json, &format!("removed the product {slug}"));
        }
    };
    if json {
        print_json(&serde_json::to_value(&products)?);
    } else {
        let rows: Vec<Vec<String>> = products
            .iter()
            .map(|p: &Product| {
                vec![
                    p.slug.clone(),
                    p.name.clone(),
                    p.refs.join(" "),
                    if p.active { "active" } else { "inactive" }.to_owned(),
                    time(p.created),
                    match p.repo.as_deref() {
                        None => "(the only one)".to_owned(),
                        Some("") => "/".to_owned(),
                        Some(name) => name.to_owned(),
                    },
                ]
            })
            .collect();
        print_table(
            &["SLUG", "NAME", "REFS", "STATE", "CREATED", "REPOSITORY"],
            &rows,
        );
    }
    Ok(())
}

async fn license(store: &Store, json: bool, command: LicenseCommand) -> anyhow::Result<()> {
    let licenses = match command {
        LicenseCommand::Add {
            products,
            expires,
            note,
            account,
        } => {
            let expires = expires.as_deref().map(parse_rfc3339).transpose()?;
            let (license, key) = store
                .license_add(&NewLicense {
                    products,
                    expires,
                    note,
                    account,
                })
                .await?;
            if json {
                let mut value = serde_json::to_value(&license)?;
                value["key"] = json!(key);
                print_json(&value);
            } else {
                print_line(&format!(
                    "created the license {}; its key, shown only now (only a hash is kept):",
                    license.id
                ));
                print_line(&key);
            }
            return Ok(());
        }
        LicenseCommand::List => store.license_list().await?,
        LicenseCommand::Show { id } => vec![store.license_get(&id).await?],
        LicenseCommand::Update {
            id,
            products,
            expires,
            no_expiry,
            note,
        } => {
            let expires = match (expires, no_expiry) {
                (Some(t), _) => Some(Some(parse_rfc3339(&t)?)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let products = (!products.is_empty()).then_some(products.as_slice());
            vec![
                store
                    .license_update(&id, products, None, expires, note.as_deref())
                    .await?,
            ]
        }
        LicenseCommand::Deactivate { id } => vec![
            store
                .license_update(&id, None, Some(false), None, None)
                .await?,
        ],
        LicenseCommand::Activate { id } => vec![
            store
                .license_update(&id, None, Some(true), None, None)
                .await?,
        ],
        LicenseCommand::Remove { id } => {
            store.license_remove(&id).await?;
            return done(json, &format!("removed the license {id}"));
        }
    };
    if json {
        print_json(&serde_json::to_value(&licenses)?);
    } else {
        let rows: Vec<Vec<String>> = licenses
            .iter()
            .map(|l: &License| {
                vec![
                    l.id.clone(),
                    l.products.join(" "),
                    if l.active { "active" } else { "inactive" }.to_owned(),
                    l.expires.map_or("never".to_owned(), time),
                    time(l.created),
                    l.account.clone().unwrap_or_else(|| "-".to_owned()),
                    l.note.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "ID", "PRODUCTS", "STATE", "EXPIRES", "CREATED", "ACCOUNT", "NOTE",
            ],
            &rows,
        );
    }
    Ok(())
}

async fn account(store: &Store, json: bool, command: AccountCommand) -> anyhow::Result<()> {
    let accounts = match command {
        AccountCommand::Add { name, products } => {
            let password = read_password()?;
            vec![store.account_add(&name, &password, &products).await?]
        }
        AccountCommand::List => store.account_list().await?,
        AccountCommand::Show { name } => vec![store.account_get(&name).await?],
        AccountCommand::Update {
            name,
            products,
            password_stdin,
        } => {
            let password = password_stdin.then(read_password).transpose()?;
            let products = (!products.is_empty()).then_some(products.as_slice());
            vec![
                store
                    .account_update(&name, products, None, password.as_deref())
                    .await?,
            ]
        }
        AccountCommand::Deactivate { name } => {
            vec![store.account_update(&name, None, Some(false), None).await?]
        }
        AccountCommand::Activate { name } => {
            vec![store.account_update(&name, None, Some(true), None).await?]
        }
        AccountCommand::Remove { name } => {
            store.account_remove(&name).await?;
            return done(json, &format!("removed the account {name}"));
        }
    };
    if json {
        print_json(&serde_json::to_value(&accounts)?);
    } else {
        let rows: Vec<Vec<String>> = accounts
            .iter()
            .map(|a: &Account| {
                vec![
                    a.name.clone(),
                    a.products.join(" "),
                    if a.active { "active" } else { "inactive" }.to_owned(),
                    time(a.created),
                ]
            })
            .collect();
        print_table(&["NAME", "PRODUCTS", "STATE", "CREATED"], &rows);
    }
    Ok(())
}

async fn audit(store: &Store, json: bool, args: AuditArgs) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&args.limit) {
        bail!("--limit {} is out of range: give 1 to 10000", args.limit);
    }
    let filter = AuditFilter {
        since: args.since.as_deref().map(parse_time).transpose()?,
        license: args.license,
        ref_name: args.ref_name,
        before: None,
        limit: args.limit,
        subject: None,
    };
    if args.downloads {
        let rows = store.downloads(&filter).await?;
        if json {
            print_json(&serde_json::to_value(&rows)?);
        } else {
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|d| {
                    vec![
                        time(d.at),
                        d.ref_name.clone(),
                        d.commit.chars().take(12).collect(),
                        d.subject.clone(),
                        d.token_id.clone().unwrap_or_default(),
                        d.user_agent.clone(),
                    ]
                })
                .collect();
            print_table(
                &["TIME", "REF", "COMMIT", "SUBJECT", "TOKEN", "USER AGENT"],
                &rows,
            );
        }
    } else {
        let rows = store.issued_tokens(&filter).await?;
        if json {
            print_json(&serde_json::to_value(&rows)?);
        } else {
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|t| {
                    vec![
                        time(t.issued),
                        t.subject.clone(),
                        t.client.clone(),
                        t.refs.join(" "),
                        t.jti.clone(),
                    ]
                })
                .collect();
            print_table(&["ISSUED", "SUBJECT", "CLIENT", "REFS", "TOKEN"], &rows);
        }
    }
    Ok(())
}

fn done(json: bool, message: &str) -> anyhow::Result<()> {
    if json {
        print_json(&json!({"done": message}));
    } else {
        print_line(message);
    }
    Ok(())
}

/// Reads a password from stdin, without its final newline.
fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!(
            "no password on stdin: pipe one in, e.g. `printf '%s' \"$PASSWORD\" | tollgate admin ...`"
        );
    }
    Ok(password.to_owned())
}
