//! [`ClientAddress`]: who asked, for the per-client send limit.
//!
//! One person usually holds one IPv4 address but a whole IPv6 /64 (a home
//! or mobile subscriber gets a /64 or more and picks addresses in it at
//! will), so an IPv4 client is limited by its address and an IPv6 client by
//! its /64 network. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, what a
//! dual-stack socket reports for an IPv4 peer) is the IPv4 client.
//!
//! Which address a request came from is the host's business (the socket's
//! peer, or a header set by a trusted proxy); this type only says how one
//! address is limited.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The client a send limit applies to: an IPv4 address, or an IPv6 /64.
///
/// ```
/// use std::net::IpAddr;
/// use referral_core::ClientAddress;
///
/// let a = ClientAddress::from("2001:db8:1:2:aaaa::1".parse::<IpAddr>().unwrap());
/// let b = ClientAddress::from("2001:db8:1:2:bbbb::9".parse::<IpAddr>().unwrap());
/// assert_eq!(a, b); // one /64
/// assert_eq!(a.to_string(), "2001:db8:1:2::/64");
/// let v4 = ClientAddress::from("::ffff:203.0.113.7".parse::<IpAddr>().unwrap());
/// assert_eq!(v4.to_string(), "203.0.113.7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientAddress(Inner);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Inner {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

impl ClientAddress {
    /// The address (IPv4) or the network's first address (IPv6 /64).
    #[must_use]
    pub fn ip(&self) -> IpAddr {
        match self.0 {
            Inner::V4(v4) => IpAddr::V4(v4),
            Inner::V6Net(net) => IpAddr::V6(Ipv6Addr::from(u128::from(net) << 64)),
        }
    }

    /// Whether the client is an IPv6 /64 network.
    #[must_use]
    pub fn is_ipv6(&self) -> bool {
        matches!(self.0, Inner::V6Net(_))
    }
}

impl From<IpAddr> for ClientAddress {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(Inner::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(Inner::V4(v4)),
                // The shift keeps the upper 64 bits, so the cast is exact.
                None => Self(Inner::V6Net((u128::from(v6) >> 64) as u64)),
            },
        }
    }
}

impl fmt::Display for ClientAddress {
    /// `203.0.113.7` or `2001:db8:1:2::/64`: the form stores key limits by.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Inner::V4(v4) => write!(f, "{v4}"),
            Inner::V6Net(_) => write!(f, "{}/64", self.ip()),
        }
    }
}

/// A string that is neither an IP address nor an IPv6 `/64` network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or an IPv6 /64 network")]
pub struct ClientAddressError;

impl FromStr for ClientAddress {
    type Err = ClientAddressError;

    /// An IP address, or the [`Display`](fmt::Display) form of an IPv6 /64.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ip = match s.strip_suffix("/64") {
            Some(net) => IpAddr::V6(net.parse::<Ipv6Addr>().map_err(|_| ClientAddressError)?),
            None => s.parse::<IpAddr>().map_err(|_| ClientAddressError)?,
        };
        Ok(Self::from(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> ClientAddress {
        ClientAddress::from(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ipv4_is_kept_whole_and_ipv6_by_its_64() {
        assert_ne!(addr("203.0.113.7"), addr("203.0.113.8"));
        assert_eq!(addr("2001:db8::1"), addr("2001:db8::ffff:ffff:ffff:ffff"));
        assert_ne!(addr("2001:db8::1"), addr("2001:db8:0:1::1"));
        assert_eq!(addr("::ffff:10.0.0.1"), addr("10.0.0.1"));
        assert!(addr("2001:db8::1").is_ipv6());
        assert!(!addr("10.0.0.1").is_ipv6());
        assert_eq!(
            addr("2001:db8::1").ip(),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn parse_refuses_what_is_not_an_address() {
        for bad in [
            "",
            "10.0.0",
            "2001:db8::/48",
            "10.0.0.1/64",
            "x",
            "2001:db8::1/64/64",
        ] {
            assert_eq!(
                bad.parse::<ClientAddress>(),
                Err(ClientAddressError),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(bits: u128, v4: u32, six: bool) {
            let ip = if six { IpAddr::V6(Ipv6Addr::from(bits)) } else { IpAddr::V4(Ipv4Addr::from(v4)) };
            let a = ClientAddress::from(ip);
            prop_assert_eq!(a.to_string().parse::<ClientAddress>(), Ok(a));
            prop_assert_eq!(ClientAddress::from(a.ip()), a);
        }
    }
}
