//! `TRUSTED_PROXIES`: the address ranges whose `X-Forwarded-For` the server
//! believes. Parsed once at start; `contains` is a few integer compares per range.

use std::net::IpAddr;

/// An address range: `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    /// The first address, host bits cleared.
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().ok()?.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u8>().ok()?,
            Some(_) => return None,
            None => bits,
        };
        (prefix <= bits).then(|| Self { network: masked(addr, prefix), prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

/// `addr` with all but its first `prefix` bits cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// `TRUSTED_PROXIES`: the peers whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    /// Comma-separated addresses or CIDR ranges; empty = none.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                IpRange::parse(item).ok_or_else(|| format!("{item:?} is not an IP address or CIDR range (10.0.0.0/8)"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_addresses_and_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxies = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1").unwrap();
        for inside in ["10.0.0.1", "10.255.255.255", "192.168.1.7", "fd12::1", "::1", "::ffff:10.1.2.3"] {
            assert!(proxies.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1", "::2", "127.0.0.1"] {
            assert!(!proxies.contains(ip(outside)), "{outside}");
        }
        // Host bits in a range are ignored; /0 is everything of that family.
        assert!(TrustedProxies::parse("10.1.2.3/16").unwrap().contains(ip("10.1.99.99")));
        let all_v4 = TrustedProxies::parse("0.0.0.0/0").unwrap();
        assert!(all_v4.contains(ip("203.0.113.9")) && !all_v4.contains(ip("::1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse(" , ").unwrap().is_empty());
        for bad in
            ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0", "localhost", "1.2.3.4:80"]
        {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
