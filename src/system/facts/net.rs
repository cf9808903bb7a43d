//! Network facts from the kernel's own tables, without a subprocess or a
//! packet: interfaces from `/sys/class/net`, the default routes from
//! `/proc/net/route` and `/proc/net/ipv6_route`, and their interfaces'
//! addresses from `getifaddrs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::desired::DefaultRoute;

/// `ARPHRD_LOOPBACK` in `/sys/class/net/*/type`.
const LOOPBACK_TYPE: &str = "772";
/// Route flags (`linux/route.h`).
const RTF_UP: u32 = 0x1;
const RTF_REJECT: u32 = 0x200;

/// The network interfaces but loopback, sorted.
pub(super) fn interfaces() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            let kind =
                std::fs::read_to_string(format!("/sys/class/net/{name}/type")).unwrap_or_default();
            kind.trim() != LOOPBACK_TYPE && name != "lo"
        })
        .collect();
    names.sort();
    names
}

/// A default route found in a routing table: by which interface, through
/// which gateway, at which metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Found<A> {
    pub(super) interface: String,
    pub(super) gateway: Option<A>,
    metric: u32,
}

/// The IPv4 default route of the text of `/proc/net/route`: the one with
/// the lowest metric among those up.
pub(super) fn default_v4(table: &str) -> Option<Found<Ipv4Addr>> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, gw, flags, metric, mask) = (
                f.first()?,
                f.get(1)?,
                f.get(2)?,
                f.get(3)?,
                f.get(6)?,
                f.get(7)?,
            );
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let usable = *dest == "00000000" && *mask == "00000000" && flags & RTF_UP != 0;
            // The kernel prints the address's bytes as one native-order
            // word (on x86_64 reversed): its native bytes are the address.
            let gw = u32::from_str_radix(gw, 16).ok()?;
            let gateway = Ipv4Addr::from(gw.to_ne_bytes());
            usable.then(|| Found {
                interface: (*iface).to_owned(),
                gateway: (!gateway.is_unspecified()).then_some(gateway),
                metric: metric.parse().unwrap_or(u32::MAX),
            })
        })
        .min_by_key(|r| r.metric)
}

/// The IPv6 default route of the text of `/proc/net/ipv6_route`: `::/0`,
/// up, not a reject route (the kernel's "unreachable" default on `lo`),
/// the lowest metric.
pub(super) fn default_v6(table: &str) -> Option<Found<Ipv6Addr>> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let usable = u128::from_str_radix(f[0], 16).ok()? == 0
                && f[1] == "00"
                && flags & RTF_UP != 0
                && flags & RTF_REJECT == 0
                && f[9] != "lo";
            let gateway = Ipv6Addr::from(u128::from_str_radix(f[4], 16).ok()?);
            usable.then(|| Found {
                interface: f[9].to_owned(),
                gateway: (!gateway.is_unspecified()).then_some(gateway),
                metric: u32::from_str_radix(f[5], 16).unwrap_or(u32::MAX),
            })
        })
        .min_by_key(|r| r.metric)
}

/// The default routes of both families, each with its interface's
/// address.
pub(super) fn default_routes() -> (Option<DefaultRoute>, Option<DefaultRoute>) {
    let v4 = default_v4(&std::fs::read_to_string("/proc/net/route").unwrap_or_default());
    let v6 = default_v6(&std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default());
    if v4.is_none() && v6.is_none() {
        return (None, None);
    }
    let addrs: Vec<(String, IpAddr)> = match nix::ifaddrs::getifaddrs() {
        Ok(list) => list
            .filter_map(|a| {
                let addr = a.address?;
                let ip = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
                    (Some(v4), _) => IpAddr::V4(v4.ip()),
                    (_, Some(v6)) => IpAddr::V6(v6.ip()),
                    _ => return None,
                };
                Some((a.interface_name, ip))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    (
        v4.map(|r| {
            let address = first_address(&addrs, &r.interface, |ip| ip.is_ipv4());
            route(r, address)
        }),
        v6.map(|r| {
            // A global address before a link-local one (fe80::/10).
            let global = |ip: &IpAddr| match ip {
                IpAddr::V6(a) => a.segments()[0] & 0xffc0 != 0xfe80,
                IpAddr::V4(_) => false,
            };
            let address = first_address(&addrs, &r.interface, global)
                .or_else(|| first_address(&addrs, &r.interface, IpAddr::is_ipv6));
            route(r, address)
        }),
    )
}

fn route<A: std::fmt::Display>(r: Found<A>, address: Option<String>) -> DefaultRoute {
    DefaultRoute {
        address: address.unwrap_or_default(),
        gateway: r.gateway.map(|g| g.to_string()).unwrap_or_default(),
        interface: r.interface,
    }
}

/// The first address of `iface` that is `wanted`.
fn first_address(
    addrs: &[(String, IpAddr)],
    iface: &str,
    wanted: impl Fn(&IpAddr) -> bool,
) -> Option<String> {
    addrs
        .iter()
        .find(|(name, ip)| name == iface && wanted(ip))
        .map(|(_, ip)| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv4_default_route_is_the_lowest_metric_one_that_is_up() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth1\t00000000\t0164A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
eth2\t00000000\t0101A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let r = default_v4(table).expect("a default route");
        assert_eq!(r.interface, "eth1");
        assert_eq!(r.gateway, Some(Ipv4Addr::new(192, 168, 100, 1)));
        // This machine's table (one route through 192.0.2.1).
        let one = default_v4(&table.lines().take(2).collect::<Vec<_>>().join("\n"));
        assert_eq!(
            one.map(|r| (r.interface, r.gateway)),
            Some(("eth0".into(), Some(Ipv4Addr::new(192, 0, 2, 1))))
        );
        assert_eq!(default_v4("Iface\tDestination\n"), None);
        assert_eq!(default_v4(""), None);
    }

    #[test]
    fn the_ipv6_default_route_skips_the_unreachable_one_on_lo() {
        let table = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        let r = default_v6(table).expect("a default route");
        assert_eq!(r.interface, "eth0");
        assert_eq!(r.gateway, Some("fd00::1".parse().expect("address")));
        assert_eq!(default_v6(table.lines().nth(2).unwrap_or("")), None);
    }
}
