//! The client's address, behind proxies we trust and no one else's.
//!
//! Behind an ingress every request comes from the ingress, so limits per client address
//! need the address it forwards in `X-Forwarded-For`. That header is whatever the sender
//! wrote, so it is believed only when the peer is a configured proxy (`TRUSTED_PROXIES`,
//! addresses or CIDR blocks), and then read from the right: each trusted hop appends the
//! address it saw, so the first address from the right that is not a trusted proxy is the
//! client. A request straight from anyone else is that peer, whatever its headers say.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;

/// The proxies whose `X-Forwarded-For` is believed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<(IpAddr, u8)>>);

impl TrustedProxies {
    /// From `10.0.0.0/8`, `192.168.1.7`, `fd00::/8` … (an address alone is a /32 or /128).
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut blocks = Vec::new();
        for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let (address, bits) = entry.split_once('/').map_or((entry, None), |(a, b)| (a, Some(b)));
            let address: IpAddr = address.parse().map_err(|_| format!("`{entry}` is not an address or CIDR block"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("`{entry}`: bad prefix length"))?,
            };
            blocks.push((address, bits));
        }
        Ok(Self(Arc::new(blocks)))
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|(block, bits)| in_block(address, *block, *bits))
    }
}

fn in_block(address: IpAddr, block: IpAddr, bits: u8) -> bool {
    match (address.to_canonical(), block) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The client's address (`None` when the server was not told its peers, as in-process tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// The client of a request from `peer` carrying `forwarded_for` headers.
    pub fn resolve(peer: Option<IpAddr>, forwarded_for: &[&str], proxies: &TrustedProxies) -> Self {
        let Some(peer) = peer else { return Self(None) };
        if !proxies.trusts(peer) {
            return Self(Some(peer));
        }
        let hops: Vec<IpAddr> =
            forwarded_for.iter().flat_map(|h| h.split(',')).filter_map(|a| a.trim().parse::<IpAddr>().ok()).collect();
        let client = hops.iter().rev().find(|hop| !proxies.trusts(**hop)).or_else(|| hops.first());
        Self(Some(client.copied().unwrap_or(peer)))
    }
}

impl<S> FromRequestParts<S> for ClientAddress
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded: Vec<&str> =
            parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(Self::resolve(peer, &forwarded, &TrustedProxies::from_ref(state)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.7".into()]).unwrap();
        // Straight from a client: its own address, whatever it claims.
        assert_eq!(ClientAddress::resolve(Some(ip("203.0.113.9")), &["1.2.3.4"], &proxies).0, Some(ip("203.0.113.9")));
        // Through the ingress: the first untrusted hop from the right.
        let through = ClientAddress::resolve(Some(ip("10.1.2.3")), &["6.6.6.6, 198.51.100.4, 10.9.9.9"], &proxies);
        assert_eq!(through.0, Some(ip("198.51.100.4")), "a spoofed left-most entry is ignored");
        assert_eq!(ClientAddress::resolve(Some(ip("192.168.1.7")), &[], &proxies).0, Some(ip("192.168.1.7")));
        assert_eq!(ClientAddress::resolve(None, &["1.2.3.4"], &proxies).0, None);
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["not-an-ip".into()]).is_err());
        assert!(TrustedProxies::parse(&["fd00::/8".into()]).unwrap().trusts(ip("fd12::1")));
    }
}
