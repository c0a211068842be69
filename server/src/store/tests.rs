//! One scenario, run on SQLite and on a real PostgreSQL: the same schema must behave the same.

use tollgate_tests::postgres::Postgres;

use super::*;

async fn scenario(store: &Store) {
    // Products.
    let pro = store
        .product_add(
            "pro",
            "Pro",
            &[
                "app/com.example.Pro/*".into(),
                "runtime/com.example.Sdk*".into(),
            ],
            None,
        )
        .await
        .unwrap();
    assert!(pro.covers("app/com.example.Pro/x86_64/stable"));
    assert!(!pro.covers("app/com.example.Free/x86_64/stable"));
    store
        .product_add(
            "extra",
            "Extra",
            &["app/com.example.Extra/*".into()],
            Some("b"),
        )
        .await
        .unwrap();
    assert!(pro.in_repo("", true) && pro.in_repo("b", true) && !pro.in_repo("", false));
    let extra = store.product_get("extra").await.unwrap();
    assert_eq!(extra.repo.as_deref(), Some("b"));
    assert!(extra.in_repo("b", false) && !extra.in_repo("", true));
    assert!(matches!(
        store.product_add("pro", "Again", &["x".into()], None).await,
        Err(StoreError::Conflict(_))
    ));
    for (slug, name, refs) in [
        ("Bad Slug", "x", vec!["x".to_owned()]),
        ("ok", "", vec!["x".to_owned()]),
        ("ok", "x", vec![]),
        ("ok", "x", vec!["has space".to_owned()]),
        ("ok'; DROP TABLE products; --", "x", vec!["x".to_owned()]),
    ] {
        assert!(
            matches!(
                store.product_add(slug, name, &refs, None).await,
                Err(StoreError::Invalid(_))
            ),
            "{slug}"
        );
    }
    let listed: Vec<String> = store
        .product_list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.slug)
        .collect();
    assert_eq!(listed, ["extra", "pro"]);
    let renamed = store
        .product_update("pro", Some("Pro 2"), None, None, None)
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.refs.len()), ("Pro 2", 2));
    assert!(renamed.active);
    let withdrawn = store
        .product_update("extra", None, None, Some(false), None)
        .await
        .unwrap();
    assert!(!withdrawn.active);
    assert!(!store.product_get("extra").await.unwrap().active);
    assert!(
        store
            .product_update("extra", None, None, Some(true), None)
            .await
            .unwrap()
            .active
    );
    assert!(matches!(
        store.product_get("nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .product_add("ok", "x", &["x".into()], Some("a/b"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let moved = store
        .product_update("extra", None, None, None, Some(Some("")))
        .await
        .unwrap();
    assert_eq!(moved.repo.as_deref(), Some(""));
    let unassigned = store
        .product_update("extra", None, None, None, Some(None))
        .await
        .unwrap();
    assert_eq!(unassigned.repo, None);

    // Licenses: the key opens exactly its license; near misses and unknown ids do not.
    let (license, key) = store
        .license_add(&NewLicense {
            products: vec!["pro".into()],
            expires: None,
            note: "for tests".into(),
            account: None,
        })
        .await
        .unwrap();
    assert!(key.starts_with(&format!("tg_{}_", license.id)), "{key}");
    let parsed = LicenseKey::parse(&key).unwrap();
    assert_eq!(
        store.license_verify(&parsed).await.unwrap(),
        Some(license.clone())
    );
    let mut wrong = key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(
        store
            .license_verify(&LicenseKey::parse(&wrong).unwrap())
            .await
            .unwrap(),
        None
    );
    let unknown = format!("tg_aaaaaaaaaa_{}", &key[14..]);
    assert_eq!(
        store
            .license_verify(&LicenseKey::parse(&unknown).unwrap())
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .license_add(&NewLicense {
                products: vec!["nope".into()],
                ..Default::default()
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    let updated = store
        .license_update(
            &license.id,
            Some(&["pro".into(), "extra".into()]),
            Some(false),
            Some(Some(42)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(updated.products, ["extra", "pro"]);
    assert_eq!((updated.active, updated.expires), (false, Some(42)));
    assert!(matches!(
        store.product_remove("pro").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.license_list().await.unwrap().len(), 1);

    // Accounts.
    let account = store
        .account_add("alice", "correct horse", &["extra".into()])
        .await
        .unwrap();
    assert_eq!(
        store
            .account_verify("alice", "correct horse")
            .await
            .unwrap(),
        Some(account)
    );
    assert_eq!(
        store.account_verify("alice", "wrong horse!").await.unwrap(),
        None
    );
    assert_eq!(
        store.account_verify("bob", "correct horse").await.unwrap(),
        None
    );
    assert!(matches!(
        store
            .account_add("alice", "another one", &["extra".into()])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .account_add("a b", "long enough", &["extra".into()])
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.account_add("carol", "short", &["extra".into()]).await,
        Err(StoreError::Invalid(_))
    ));
    let off = store
        .account_update("alice", None, Some(false), None)
        .await
        .unwrap();
    assert!(!off.active);

    // Audit records, paged newest first.
    let tokens: Vec<IssuedToken> = (0..5)
        .map(|i| IssuedToken {
            seq: 0,
            jti: format!("jti{i}"),
            subject: format!("license:{}", license.id),
            license: Some(license.id.clone()),
            account: None,
            repo: String::new(),
            refs: vec![format!("app/com.example.Pro/x86_64/v{i}")],
            client: "127.0.0.1".into(),
            issued: 1000 + i,
            expires: 1600 + i,
        })
        .collect();
    store.record_issued(&tokens).await.unwrap();
    let page = store
        .issued_tokens(&AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|t| t.jti.as_str()).collect::<Vec<_>>(),
        ["jti4", "jti3"]
    );
    let next = store
        .issued_tokens(&AuditFilter {
            limit: 2,
            before: Some(page[1].seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|t| t.jti.as_str()).collect::<Vec<_>>(),
        ["jti2", "jti1"]
    );
    let by_ref = store
        .issued_tokens(&AuditFilter {
            ref_name: Some("app/com.example.Pro/x86_64/v3".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_ref.len(), 1);
    assert_eq!(by_ref[0].refs, ["app/com.example.Pro/x86_64/v3"]);

    let since = store
        .issued_tokens(&AuditFilter {
            since: Some(1003),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 2);

    // A ref filter pages through sparse matches, and matches exactly (`_` is no wildcard).
    let sparse: Vec<IssuedToken> = (0..100)
        .map(|i| IssuedToken {
            seq: 0,
            jti: format!("sparse{i}"),
            subject: "s".into(),
            license: None,
            account: Some("bob".into()),
            repo: String::new(),
            refs: vec![match i {
                10 | 90 => "app/com.example.A_b/x86_64/stable".to_owned(),
                50 => "app/com.example.AXb/x86_64/stable".to_owned(),
                _ => format!("app/com.example.Other/x86_64/v{i}"),
            }],
            client: "127.0.0.1".into(),
            issued: 2000 + i,
            expires: 2600 + i,
        })
        .collect();
    store.record_issued(&sparse).await.unwrap();
    let rare = |before| AuditFilter {
        ref_name: Some("app/com.example.A_b/x86_64/stable".into()),
        limit: 1,
        before,
        ..Default::default()
    };
    let first = store.issued_tokens(&rare(None)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].jti, "sparse90");
    let second = store
        .issued_tokens(&rare(Some(first[0].seq)))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].jti, "sparse10");
    assert!(
        store
            .issued_tokens(&rare(Some(second[0].seq)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .issued_tokens(&AuditFilter {
                ref_name: Some("app/%".into()),
                limit: 1,
                ..Default::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
    store
        .record_downloads(&[DownloadRow {
            seq: 0,
            at: 5,
            repo: String::new(),
            ref_name: "app/com.example.Pro/x86_64/stable".into(),
            commit: "c".repeat(64),
            token_id: Some("jti1".into()),
            subject: "s".into(),
            user_agent: "ua \"quoted\"".into(),
        }])
        .await
        .unwrap();
    let downloads = store
        .downloads(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(downloads.len(), 1);
    assert_eq!(downloads[0].user_agent, "ua \"quoted\"");
    let by = |subject: &str| AuditFilter {
        limit: 10,
        subject: Some(subject.to_owned()),
        ..Default::default()
    };
    assert_eq!(store.downloads(&by("s")).await.unwrap().len(), 1);
    assert!(
        store
            .downloads(&by("account:alice"))
            .await
            .unwrap()
            .is_empty()
    );

    // Web sessions: found by their cookie only, for an active account, until they end.
    let made = store.session_add("alice", 3600).await.unwrap();
    assert!(
        store.session_get(&made).await.unwrap().is_none(),
        "a session of an inactive account"
    );
    store
        .account_update("alice", None, Some(true), None)
        .await
        .unwrap();
    let session = store.session_get(&made).await.unwrap().unwrap();
    assert_eq!(session.account, "alice");
    assert_ne!(made, session.csrf);
    assert!(store.session_get(&session.csrf).await.unwrap().is_none());
    let over = store.session_add("alice", -1).await.unwrap();
    assert!(
        store.session_get(&over).await.unwrap().is_none(),
        "an ended session"
    );
    store.session_remove(&made).await.unwrap();
    assert!(store.session_get(&made).await.unwrap().is_none());
    let kept = store.session_add("alice", 3600).await.unwrap();

    // A license redeemed into an account: once, listed with it, its products the account's.
    store.license_redeem(&license.id, "alice").await.unwrap();
    for again in ["alice", "bob"] {
        assert!(matches!(
            store.license_redeem(&license.id, again).await,
            Err(StoreError::Conflict(_))
        ));
    }
    let redeemed = store.account_licenses("alice").await.unwrap();
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0].id, license.id);
    assert_eq!(
        redeemed[0].products,
        license_products_now(store, &license.id).await
    );
    assert!(store.account_licenses("bob").await.unwrap().is_empty());
    assert_eq!(
        store
            .license_get(&license.id)
            .await
            .unwrap()
            .account
            .as_deref(),
        Some("alice")
    );

    // The web flow's codes: taken once, with what they were given for.
    let code = store
        .device_code_add("alice", "laptop", "challenge", "http://127.0.0.1:9/done")
        .await
        .unwrap();
    let taken = store.device_code_take(&code).await.unwrap().unwrap();
    assert_eq!(
        (taken.account.as_str(), taken.device.as_str()),
        ("alice", "laptop")
    );
    assert_eq!(taken.challenge, "challenge");
    assert_eq!(taken.redirect_uri, "http://127.0.0.1:9/done");
    assert!(taken.expires > now() && taken.expires <= now() + 60);
    assert!(store.device_code_take(&code).await.unwrap().is_none());
    // Devices: the credential verifies to its account until revoked, by its account only.
    let (device, key) = store.device_add("alice", "laptop").await.unwrap();
    let parsed = DeviceKey::parse(&key).unwrap();
    assert_eq!(parsed.id, device.id);
    assert_eq!(
        store.device_verify(&parsed).await.unwrap().as_deref(),
        Some("alice")
    );
    let wrong = DeviceKey::parse(&format!("{}x", &key[..key.len() - 1])).unwrap();
    assert!(store.device_verify(&wrong).await.unwrap().is_none());
    assert_eq!(
        store.devices_of("alice").await.unwrap(),
        vec![device.clone()]
    );
    assert!(!store.device_remove("bob", &device.id).await.unwrap());
    let before = store.entitlement_epoch().await.unwrap();
    assert!(store.device_remove("alice", &device.id).await.unwrap());
    assert_ne!(store.entitlement_epoch().await.unwrap(), before);
    assert!(store.device_verify(&parsed).await.unwrap().is_none());
    assert!(store.devices_of("alice").await.unwrap().is_empty());
    let (_, kept_device) = store.device_add("alice", "desktop").await.unwrap();
    // At most MAX_DEVICES per account.
    for _ in 1..devices::MAX_DEVICES {
        store.device_add("alice", "another").await.unwrap();
    }
    assert!(matches!(
        store.device_add("alice", "one too many").await,
        Err(StoreError::Conflict(_))
    ));

    // Orders: an id once; the same customer's same products again extend the license.
    let order = Order {
        id: "ord_1".to_owned(),
        email: "erin@example.com".to_owned(),
        products: vec!["pro".to_owned()],
        days: Some(10),
        account: None,
    };
    let OrderOutcome::Created(made, key) = store.order_apply(&order).await.unwrap() else {
        panic!("the first order made no license");
    };
    assert!(LicenseKey::parse(&key).is_some());
    assert!(matches!(
        store.order_apply(&order).await,
        Err(StoreError::Conflict(_))
    ));
    let again = Order {
        id: "ord_2".to_owned(),
        ..order.clone()
    };
    let OrderOutcome::Extended(extended) = store.order_apply(&again).await.unwrap() else {
        panic!("the second order did not extend");
    };
    assert_eq!(extended.id, made.id);
    assert_eq!(extended.expires, made.expires.map(|e| e + 10 * 86_400));
    let wrong = Order {
        id: "ord_3".to_owned(),
        products: vec!["nope".to_owned()],
        ..order.clone()
    };
    assert!(store.order_apply(&wrong).await.is_err());
    let fixed = Order {
        id: "ord_3".to_owned(),
        ..order.clone()
    };
    assert!(
        store.order_apply(&fixed).await.is_ok(),
        "a failed order's id stays free"
    );
    store.license_remove(&made.id).await.unwrap();

    // Keys: published once, retired, and still valid within the overlap.
    store.key_publish("k1", &[1; 32], 100).await.unwrap();
    store.key_publish("k1", &[9; 32], 999).await.unwrap();
    store.key_publish("k2", &[2; 32], 200).await.unwrap();
    // Another instance's key, sharing the database: not ours to retire.
    store.key_publish("k0", &[3; 32], 150).await.unwrap();
    store.keys_retire(&["k1".into()], 300).await.unwrap();
    let valid = store.keys_valid_since(250).await.unwrap();
    assert_eq!(
        valid.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["k2", "k0", "k1"]
    );
    assert_eq!(
        valid[2].public_key, [1; 32],
        "publishing again changes nothing"
    );
    let valid = store.keys_valid_since(300).await.unwrap();
    assert_eq!(
        valid.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["k2", "k0"]
    );

    // Removal.
    store.license_remove(&license.id).await.unwrap();
    store.account_remove("alice").await.unwrap();
    assert!(
        store.session_get(&kept).await.unwrap().is_none(),
        "a removed account's session"
    );
    assert!(
        store
            .device_verify(&DeviceKey::parse(&kept_device).unwrap())
            .await
            .unwrap()
            .is_none(),
        "a removed account's device"
    );
    store.product_remove("pro").await.unwrap();
    assert!(matches!(
        store.license_remove(&license.id).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Two stores on one database, as two processes: a change through one reaches what the other
/// keeps in memory for issuance within `FRESHNESS`; a change through a store reaches it at once.
async fn license_products_now(store: &Store, id: &str) -> Vec<String> {
    store.license_get(id).await.unwrap().products
}

async fn changes_made_elsewhere(here: &Store, there: &Store) {
    async fn license(store: &Store, key: &LicenseKey) -> License {
        store
            .license_verify(key)
            .await
            .unwrap()
            .expect("the key is right")
    }
    async fn product(store: &Store) -> Product {
        store.products_named(&["kept".to_owned()]).await.unwrap()[0].clone()
    }
    here.product_add("kept", "Kept", &["app/com.example.Kept/*".into()], None)
        .await
        .unwrap();
    let new = NewLicense {
        products: vec!["kept".to_owned()],
        ..NewLicense::default()
    };
    let (added, key) = here.license_add(&new).await.unwrap();
    let key = LicenseKey::parse(&key).unwrap();
    assert!(license(here, &key).await.active && product(here).await.active);
    assert!(license(there, &key).await.active && product(there).await.active);

    there
        .license_update(&added.id, None, Some(false), None, None)
        .await
        .unwrap();
    there
        .product_update("kept", None, None, Some(false), None)
        .await
        .unwrap();
    assert!(
        !license(there, &key).await.active,
        "at once where it was made"
    );
    assert!(!product(there).await.active, "at once where it was made");
    tokio::time::sleep(recent::FRESHNESS + Duration::from_millis(20)).await;
    assert!(
        !license(here, &key).await.active,
        "elsewhere within FRESHNESS"
    );
    assert!(!product(here).await.active, "elsewhere within FRESHNESS");

    here.license_update(&added.id, None, Some(true), None, None)
        .await
        .unwrap();
    assert!(license(here, &key).await.active);
    tokio::time::sleep(recent::FRESHNESS + Duration::from_millis(20)).await;
    assert!(license(there, &key).await.active);
    there.license_remove(&added.id).await.unwrap();
    tokio::time::sleep(recent::FRESHNESS + Duration::from_millis(20)).await;
    assert!(
        here.license_verify(&key).await.unwrap().is_none(),
        "removed"
    );
    assert!(matches!(
        here.products_named(&["kept".to_owned(), "gone".to_owned()])
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::new(dir.path(), None);
    let store = Store::open(&location).await.unwrap();
    scenario(&store).await;
    store.close().await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tollgate.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the database holds hashes: owner only");
    // Opening again runs no migration twice and keeps the data.
    let store = Store::open(&location).await.unwrap();
    assert_eq!(store.product_list().await.unwrap().len(), 1);
    changes_made_elsewhere(&store, &Store::open(&location).await.unwrap()).await;
}

#[tokio::test]
async fn postgres() {
    let pg = Postgres::start();
    let url = pg.database("scenario");
    let location = Location::new(std::path::Path::new("/nonexistent"), Some(&url));
    let store = Store::open(&location).await.unwrap();
    scenario(&store).await;
    store.close().await;
    let store = Store::open(&location).await.unwrap();
    assert_eq!(store.product_list().await.unwrap().len(), 1);
    assert!(location.to_string().contains("127.0.0.1"));
    changes_made_elsewhere(&store, &Store::open(&location).await.unwrap()).await;
}

#[test]
fn urls_are_shown_without_their_password() {
    let check = |url: &str, shown: &str| assert_eq!(shown_url(url), shown, "{url}");
    check("postgres://u:pw@db:5432/t", "postgres://u:***@db:5432/t");
    check("postgres://u:p@w@db/t", "postgres://u:***@db/t");
    check("postgres://u@db/t", "postgres://u@db/t");
    check(
        "postgres://u@db/t?sslmode=require&password=pw",
        "postgres://u@db/t?sslmode=require&password=***",
    );
    for unparsed in ["postgres://u:xy/zzy@db/t", "not a url xyzzy"] {
        let shown = shown_url(unparsed);
        assert!(!shown.contains("xy") && !shown.contains("zzy"), "{shown}");
    }
}

#[test]
fn plaintext_risks() {
    let check = |url: &str, risk: Option<&str>| {
        let options = PgConnectOptions::from_str(url).unwrap();
        assert_eq!(plaintext_risk(&options).as_deref(), risk, "{url}");
    };
    check(
        "postgres://u@db.example.com/t",
        Some("db.example.com:5432 with sslmode=prefer"),
    );
    check(
        "postgres://u@10.0.0.5:6543/t?sslmode=disable",
        Some("10.0.0.5:6543 with sslmode=disable"),
    );
    check("postgres://u@db.example.com/t?sslmode=require", None);
    check("postgres://u@db.example.com/t?sslmode=verify-full", None);
    for local in [
        "postgres://u@localhost/t",
        "postgres://u@127.0.0.2/t?sslmode=disable",
        "postgres://u@[::1]/t",
        "postgres://u@[::ffff:127.0.0.1]/t",
        "postgres://u@%2Fvar%2Frun%2Fpostgresql/t",
        "postgres:///t?host=/var/run/postgresql",
    ] {
        check(local, None);
    }
}
