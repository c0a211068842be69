//! Who a request comes from, as the limits count clients: an IPv4 address, an IPv6 /64.

use std::net::IpAddr;

/// The client a limit counts against: its IPv4 address (also when written as an IPv4-mapped
/// IPv6 address), or its IPv6 /64, which is what one client usually holds (one customer's
/// network gets a /64 or more, and picks addresses in it at will).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
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
}
