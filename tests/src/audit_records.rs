//! What the audit records as a download, against the real server: bytes of a gated commit or
//! delta superblock sent to a token, and nothing else.

use crate::fixture::Fixture;
use crate::gated_repo::gated_repo;
use crate::http;
use crate::service::Service;
use crate::tokens;

#[test]
fn head_is_not_audited_as_a_download_and_get_is() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let token = format!(
        "Bearer {}",
        tokens::issue(&g.data, &[&g.app_ref], None, 600)
    );
    let commit = fx.rev_parse(&g.repo, &g.app_ref);
    let path = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    let auth = [("Authorization", token.as_str())];
    for _ in 0..3 {
        let r = http::request(s.server.addr, "HEAD", &path, &auth);
        assert_eq!(r.status, 200, "HEAD {path}");
    }
    let r = http::request(s.server.addr, "GET", &path, &auth);
    assert_eq!(r.status, 200, "GET {path}");
    // The HEADs were queued first: once the GET's record is written, theirs would be too.
    s.wait_for_audit("downloads", "limit=1000", 1);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let page = s.admin_ok(200, "GET", "audit/downloads?limit=1000", None);
    let records = page["items"].as_array().unwrap();
    assert_eq!(
        records.len(),
        1,
        "3 HEADs and 1 GET made these download records: {page}"
    );
    assert_eq!(records[0]["commit"], commit.as_str(), "{page}");
}
