//! Who a request comes from: the client's address, from the connection or, for a connection
//! from a configured trusted reverse proxy, from the header that proxy forwards; and the key a
//! client's limits count under (an IPv4 address, an IPv6 /64).
//!
//! A forwarding header is read only on connections from a trusted proxy (anyone else can write
//! one), and only the one header the configuration names: a proxy that sets
//! `X-Forwarded-For` usually passes a client's own `Forwarded` through untouched, and the other
//! way round, so reading whichever is there would let a client choose its address. Of the
//! addresses the header lists, the client is the right-most one that is not itself a trusted
//! proxy: the left part is whatever the client sent. A hop that names no address (`unknown`,
//! an obfuscated name, garbage) stops the walk at the last trusted hop, whose address then
//! stands for the client.
//!
//! A request carrying any forwarding header came through a proxy, trusted or not, so it is
//! never taken for a loopback client (which is what opens `/metrics` without a token).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use serde::Deserialize;

/// The client a limit counts against: its IPv4 address (also when written as an IPv4-mapped
/// IPv6 address), or its IPv6 /64, which is what one client usually holds (one customer's
/// network gets a /64 or more, and picks addresses in it at will).
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

/// One entry of `trusted-proxies`: an address (`192.0.2.1`, `::1`) or a network in CIDR form
/// (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct ProxyNet(IpNet);

impl TryFrom<String> for ProxyNet {
    type Error = String;

    fn try_from(text: String) -> Result<ProxyNet, String> {
        let net = match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip.to_canonical()),
            Err(_) => text.parse::<IpNet>().map_err(|_| {
                format!(
                    "{text:?} is not an IP address or a network in CIDR form (such as \
                     \"127.0.0.1\" or \"10.0.0.0/8\")"
                )
            })?,
        };
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set: write the network as {}",
                net.trunc()
            ));
        }
        Ok(ProxyNet(net))
    }
}

/// Which header a trusted proxy says the client's address in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`, which nginx, HAProxy, Caddy, Envoy and most
    /// others write.
    #[default]
    XForwardedFor,
    /// RFC 7239's `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => http::header::FORWARDED,
        }
    }
}

/// Headers that show a request came through a proxy.
const FORWARDING_HEADERS: [HeaderName; 3] = [
    http::header::FORWARDED,
    X_FORWARDED_FOR,
    HeaderName::from_static("x-real-ip"),
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The reverse proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    trusted: Vec<ProxyNet>,
    header: ForwardedHeader,
}

/// Who a request is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    /// The connection's address, or the one a trusted proxy forwarded.
    pub ip: IpAddr,
    /// Whether the request carries a forwarding header, whoever sent it.
    pub forwarded: bool,
}

impl Client {
    /// Whether the request comes from this machine itself, not through any proxy.
    pub(crate) fn is_loopback(&self) -> bool {
        !self.forwarded && self.ip.is_loopback()
    }
}

impl Proxies {
    pub(crate) fn new(trusted: Vec<ProxyNet>, header: ForwardedHeader) -> Proxies {
        Proxies { trusted, header }
    }

    /// Whether connections from `ip` are from a trusted proxy.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.0.contains(&ip))
    }

    /// Who a request on a connection from `peer` with `headers` is from.
    pub(crate) fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> Client {
        let peer = peer.ip().to_canonical();
        let forwarded = FORWARDING_HEADERS
            .iter()
            .any(|name| headers.contains_key(name));
        if !forwarded || !self.trusts(peer) {
            return Client {
                ip: peer,
                forwarded,
            };
        }
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        for value in headers.get_all(self.header.name()) {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            match self.header {
                ForwardedHeader::XForwardedFor => {
                    hops.extend(split_outside_quotes(value, b',').map(node_address));
                }
                ForwardedHeader::Forwarded => {
                    hops.extend(split_outside_quotes(value, b',').map(forwarded_for));
                }
            }
        }
        let mut ip = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(hop) if self.trusts(*hop) => ip = hop.to_canonical(),
                Some(hop) => {
                    ip = hop.to_canonical();
                    break;
                }
                None => break,
            }
        }
        Client { ip, forwarded }
    }
}

/// The parts of `text` between `separator`s that are not inside a quoted string.
fn split_outside_quotes(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// The address of one `Forwarded` element's `for=` parameter.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    split_outside_quotes(element, b';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| node_address(value))
            .flatten()
    })
}

/// The address of a node as proxies write it: `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, each maybe in quotes; `None` for anything else
/// (`unknown`, `_hidden`).
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node)
        .trim();
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        for (address, key) in [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
        ] {
            assert_eq!(limit_key(ip(address)), ip(key), "{address}");
        }
    }

    #[test]
    fn trusted_proxies_parse_as_addresses_or_networks() {
        let net = |t: &str| ProxyNet::try_from(t.to_owned());
        let proxies = Proxies::new(
            [
                "127.0.0.1",
                "10.0.0.0/8",
                "2001:db8::/32",
                "::ffff:192.0.2.1",
            ]
            .into_iter()
            .map(|t| net(t).unwrap())
            .collect(),
            ForwardedHeader::default(),
        );
        for (address, trusted) in [
            ("127.0.0.1", true),
            ("::ffff:127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.200.0.1", true),
            ("11.0.0.1", false),
            ("2001:db8:ff::1", true),
            ("2001:db9::1", false),
            ("192.0.2.1", true),
        ] {
            assert_eq!(proxies.trusts(ip(address)), trusted, "{address}");
        }
        for bad in ["", "localhost", "10.0.0.0/33", "10.0.0.1/8", "1.2.3.4:80"] {
            assert!(net(bad).is_err(), "{bad:?}");
        }
    }

    /// The client of a request from `peer` with `headers`, to proxies that trust 127.0.0.1
    /// and 10.0.0.0/8 and read `header`.
    fn check(
        header: ForwardedHeader,
        peer: &str,
        headers: &[(&str, &str)],
        expected: (&str, bool),
    ) {
        let proxies = Proxies::new(
            ["127.0.0.1", "10.0.0.0/8"]
                .into_iter()
                .map(|t| ProxyNet::try_from(t.to_owned()).unwrap())
                .collect(),
            header,
        );
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let client = proxies.client(SocketAddr::new(ip(peer), 4711), &map);
        assert_eq!(
            (client.ip, client.forwarded),
            (ip(expected.0), expected.1),
            "{peer} {headers:?}"
        );
    }

    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_wrote() {
        use ForwardedHeader::{Forwarded, XForwardedFor as Xff};
        let xff = "x-forwarded-for";
        let fwd = "forwarded";
        for (header, peer, headers, expected) in [
            // No header: the connection's address, trusted or not.
            (Xff, "127.0.0.1", &[][..], ("127.0.0.1", false)),
            (Xff, "192.0.2.1", &[], ("192.0.2.1", false)),
            // From an untrusted peer the header is ignored, but shows a proxy.
            (Xff, "127.0.0.2", &[(xff, "192.0.2.7")], ("127.0.0.2", true)),
            (
                Forwarded,
                "127.0.0.2",
                &[(fwd, "for=192.0.2.7")],
                ("127.0.0.2", true),
            ),
            (
                Xff,
                "127.0.0.2",
                &[("x-real-ip", "192.0.2.7")],
                ("127.0.0.2", true),
            ),
            // From a trusted one, the right-most address that is not a trusted proxy.
            (Xff, "127.0.0.1", &[(xff, "192.0.2.7")], ("192.0.2.7", true)),
            (
                Xff,
                "127.0.0.1",
                &[(xff, "6.6.6.6, 192.0.2.7, 10.1.1.1")],
                ("192.0.2.7", true),
            ),
            (
                Xff,
                "127.0.0.1",
                &[(xff, "6.6.6.6"), (xff, "192.0.2.7")],
                ("192.0.2.7", true),
            ),
            (
                Xff,
                "10.0.0.1",
                &[(xff, "192.0.2.7:80")],
                ("192.0.2.7", true),
            ),
            (
                Xff,
                "127.0.0.1",
                &[(xff, "[2001:db8::7]:80")],
                ("2001:db8::7", true),
            ),
            (
                Xff,
                "127.0.0.1",
                &[(xff, "2001:db8::7")],
                ("2001:db8::7", true),
            ),
            (
                Xff,
                "::ffff:127.0.0.1",
                &[(xff, "::ffff:192.0.2.7")],
                ("192.0.2.7", true),
            ),
            // Only trusted proxies in the list: the left-most of them.
            (
                Xff,
                "127.0.0.1",
                &[(xff, "10.0.0.9, 10.0.0.8")],
                ("10.0.0.9", true),
            ),
            (Xff, "127.0.0.1", &[(xff, "127.0.0.1")], ("127.0.0.1", true)),
            // A hop without an address: the last trusted hop stands for the client.
            (
                Xff,
                "127.0.0.1",
                &[(xff, "192.0.2.7, unknown, 10.0.0.3")],
                ("10.0.0.3", true),
            ),
            (Xff, "127.0.0.1", &[(xff, "garbage")], ("127.0.0.1", true)),
            (Xff, "127.0.0.1", &[(xff, "")], ("127.0.0.1", true)),
            // The other header is not read.
            (
                Xff,
                "127.0.0.1",
                &[(fwd, "for=192.0.2.7")],
                ("127.0.0.1", true),
            ),
            (
                Forwarded,
                "127.0.0.1",
                &[(xff, "192.0.2.7")],
                ("127.0.0.1", true),
            ),
            // RFC 7239.
            (
                Forwarded,
                "127.0.0.1",
                &[(fwd, "for=192.0.2.7")],
                ("192.0.2.7", true),
            ),
            (
                Forwarded,
                "127.0.0.1",
                &[(
                    fwd,
                    "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.0.0.2",
                )],
                ("2001:db8:cafe::17", true),
            ),
            (
                Forwarded,
                "127.0.0.1",
                &[(fwd, "by=10.0.0.1;for=\"192.0.2.7:80\";host=\"a,b\"")],
                ("192.0.2.7", true),
            ),
            (
                Forwarded,
                "127.0.0.1",
                &[(fwd, "for=192.0.2.7, for=_hidden")],
                ("127.0.0.1", true),
            ),
            (
                Forwarded,
                "127.0.0.1",
                &[(fwd, "proto=https")],
                ("127.0.0.1", true),
            ),
        ] {
            check(header, peer, headers, expected);
        }
    }
}
