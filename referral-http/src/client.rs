//! The client address of a request, for the per-client send limit of the
//! code route ([`ReferralService::request_code_from`](referral_core::ReferralService::request_code_from)).
//!
//! The client is the socket's peer, unless the peer is one of the host's
//! [`TrustedProxies`]. Then `X-Forwarded-For` is read right to left (every
//! proxy appends the address it was connected from): trusted hops are
//! skipped, and the first address that is not trusted is the client. An
//! address a client wrote into the header itself can only stand left of the
//! first proxy's entry, so it is never reached while an untrusted hop comes
//! first; and a request from a peer that is not trusted is its peer,
//! whatever its headers say.
//!
//! A header from a trusted peer that cannot be read (an entry that is not an
//! IP address, such as `unknown`, an obfuscated name or garbage, or a value
//! that is not text) stops the walk: the client is then the nearest trusted
//! hop, the proxy that handed the unreadable entry on. That never believes
//! what cannot be checked; the cost is that such requests share that proxy's
//! limit. Entries may carry a port (`203.0.113.7:4711`, `[2001:db8::1]:80`),
//! as some proxies write them. IPv4 addresses written as IPv6
//! (`::ffff:a.b.c.d`) are the IPv4 address.
//!
//! ```
//! use std::net::IpAddr;
//! use referral_http::TrustedProxies;
//!
//! let proxies: TrustedProxies = "10.0.0.0/8, 192.0.2.1".parse()?;
//! let peer: IpAddr = "10.0.0.5".parse()?;
//! // The client wrote 6.6.6.6 itself; the proxies appended the rest.
//! let header: &[u8] = b"6.6.6.6, 203.0.113.7, 192.0.2.1";
//! assert_eq!(proxies.client_ip(peer, [header]), "203.0.113.7".parse::<IpAddr>()?);
//! // From a peer that is not trusted, the header changes nothing.
//! let stranger: IpAddr = "198.51.100.9".parse()?;
//! assert_eq!(proxies.client_ip(stranger, [header]), stranger);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// `x-forwarded-for`: the header a proxy appends its peer's address to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The reverse proxies whose `X-Forwarded-For` is believed: IP networks
/// (a single address is its `/32` or `/128`). Empty by default: the
/// socket's peer is always the client.
///
/// Parsed from a comma-separated list of addresses and CIDR networks
/// (`"10.0.0.0/8, 2001:db8::/32, 192.0.2.1"`); a network written with host
/// bits (`10.1.2.3/8`) is the network they belong to (`10.0.0.0/8`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.nets.iter().map(ToString::to_string))
            .finish()
    }
}

impl fmt::Display for TrustedProxies {
    /// The list as it parses back: `10.0.0.0/8,192.0.2.1/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// An entry of a [`TrustedProxies`] list that is neither an IP address nor
/// a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.1)")]
pub struct TrustedProxiesError(String);

impl TrustedProxies {
    /// These networks.
    #[must_use]
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().map(|net| net.trunc()).collect(),
        }
    }

    /// Whether no proxy is trusted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks.
    #[must_use]
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with these
    /// `X-Forwarded-For` field values (each header line, in order): `peer`
    /// unless it is trusted; else the first untrusted address of the header
    /// read right to left, or the nearest trusted hop when every hop is
    /// trusted, the header is absent, or an entry cannot be read (see the
    /// [module docs](self)).
    #[must_use]
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let mut nearest = peer.to_canonical();
        if !self.contains(nearest) {
            return nearest;
        }
        let lines: Vec<&[u8]> = forwarded_for.into_iter().collect();
        for line in lines.into_iter().rev() {
            let Ok(line) = std::str::from_utf8(line) else {
                return nearest;
            };
            for entry in line.rsplit(',') {
                let Some(hop) = parse_hop(entry) else {
                    return nearest;
                };
                if !self.contains(hop) {
                    return hop;
                }
                nearest = hop;
            }
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// A comma-separated list of IP addresses and CIDR networks; blanks
    /// around entries and empty entries are ignored (`""`: none).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(|ip| IpNet::from(ip.to_canonical()))
                    .map_err(|_| TrustedProxiesError(entry.to_owned()))?,
            };
            nets.push(net);
        }
        Ok(Self::new(nets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn client(p: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        p.client_ip(ip(peer), lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn parses_addresses_and_networks() {
        let p = proxies(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,, ::ffff:198.51.100.1 ");
        assert_eq!(
            p.to_string(),
            "10.0.0.0/8,192.0.2.1/32,2001:db8::/32,198.51.100.1/32"
        );
        assert_eq!(proxies(&p.to_string()), p);
        assert!(proxies("").is_empty() && proxies(" , ").is_empty());
        assert_eq!(proxies("10.1.2.3/8"), proxies("10.0.0.0/8"));
        assert!(p.contains(ip("10.255.0.1")) && p.contains(ip("::ffff:10.0.0.1")));
        assert!(p.contains(ip("2001:db8:ffff::1")) && !p.contains(ip("2001:db9::1")));
        assert!(p.contains(ip("198.51.100.1")) && !p.contains(ip("198.51.100.2")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0",
            "proxy.local",
            "10.0.0.1:80",
            "::/129",
            "*",
        ] {
            let e = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
            let e = format!("10.0.0.1,{bad}")
                .parse::<TrustedProxies>()
                .unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers() {
        let none = TrustedProxies::default();
        assert_eq!(
            client(&none, "203.0.113.7", &["198.51.100.1"]),
            ip("203.0.113.7")
        );
        let p = proxies("10.0.0.0/8");
        for lines in [
            &["198.51.100.1"][..],
            &["10.0.0.1"],
            &[],
            &["garbage"],
            &["1.1.1.1", "2.2.2.2"],
        ] {
            assert_eq!(
                client(&p, "203.0.113.7", lines),
                ip("203.0.113.7"),
                "{lines:?}"
            );
        }
        // A mapped IPv4 peer is its IPv4 address.
        assert_eq!(
            client(&p, "::ffff:203.0.113.7", &["198.51.100.1"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn right_to_left_skipping_trusted_hops() {
        let p = proxies("10.0.0.0/8, 2001:db8:ffff::/48");
        // One proxy: the entry it appended.
        assert_eq!(client(&p, "10.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        // What the client wrote (left) is never reached.
        assert_eq!(
            client(&p, "10.0.0.1", &["6.6.6.6, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Trusted hops are skipped, whatever the spacing.
        assert_eq!(
            client(
                &p,
                "10.0.0.1",
                &["6.6.6.6,203.0.113.7 ,\t10.9.9.9,  10.1.1.1"]
            ),
            ip("203.0.113.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client(&p, "10.0.0.1", &["6.6.6.6", "203.0.113.7", "10.2.2.2"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&p, "10.0.0.1", &["garbage", "203.0.113.7, 10.2.2.2"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.7", "garbage"]),
            ip("10.0.0.1")
        );
        // Every hop trusted: the leftmost one; no header: the peer.
        assert_eq!(
            client(&p, "10.0.0.1", &["10.3.3.3, 10.2.2.2"]),
            ip("10.3.3.3")
        );
        assert_eq!(client(&p, "10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_hops_and_ports() {
        let p = proxies("10.0.0.0/8, 2001:db8:ffff::/48");
        assert_eq!(
            client(&p, "2001:db8:ffff::1", &["2001:db8:1:2::7"]),
            ip("2001:db8:1:2::7")
        );
        assert_eq!(
            client(
                &p,
                "2001:db8:ffff::1",
                &["6.6.6.6, [2001:db8:1:2::7]:4711, 2001:db8:ffff:1::2"]
            ),
            ip("2001:db8:1:2::7")
        );
        assert_eq!(
            client(&p, "10.0.0.1", &["[2001:db8:1:2::7]"]),
            ip("2001:db8:1:2::7")
        );
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.7:4711"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&p, "10.0.0.1", &["::ffff:203.0.113.7"]),
            ip("203.0.113.7")
        );
        // A mapped trusted peer is trusted.
        assert_eq!(
            client(&p, "::ffff:10.0.0.1", &["203.0.113.7"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn garbage_from_a_trusted_peer_falls_back_to_the_nearest_trusted_hop() {
        let p = proxies("10.0.0.0/8");
        for garbage in [
            "unknown",
            "",
            " ",
            "_hidden",
            "203.0.113.7 x",
            "1.2.3.4.5",
            "[::1",
            "::1]:80",
            "ä",
            "1.2.3.4;5.6.7.8",
        ] {
            assert_eq!(
                client(&p, "10.0.0.1", &[garbage]),
                ip("10.0.0.1"),
                "{garbage:?}"
            );
            // Right of a trusted hop: that hop.
            let line = format!("203.0.113.9, {garbage}, 10.2.2.2");
            assert_eq!(client(&p, "10.0.0.1", &[&line]), ip("10.2.2.2"), "{line:?}");
            // Left of the client: never reached.
            let line = format!("{garbage}, 203.0.113.9, 10.2.2.2");
            assert_eq!(
                client(&p, "10.0.0.1", &[&line]),
                ip("203.0.113.9"),
                "{line:?}"
            );
        }
        // A field value that is not text.
        let bytes: &[u8] = b"203.0.113.9, \xff";
        assert_eq!(p.client_ip(ip("10.0.0.1"), [bytes]), ip("10.0.0.1"));
        // An empty entry between hops.
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.9,,10.2.2.2"]),
            ip("10.2.2.2")
        );
    }
}
