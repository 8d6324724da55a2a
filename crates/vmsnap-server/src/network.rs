//! The names a listener answers to: when `vmsnap serve` listens on every address (`0.0.0.0` or `::`),
//! clients reach it at any address of the host, so its certificate must name them all.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The addresses of this host's interfaces that a listener on `listen` answers on, loopback
/// excluded, in a stable order (IPv4 first). Empty unless `listen` is unspecified: a listener on
/// one address answers on that one only. IPv6 link-local addresses are left out: they are
/// reachable only with an interface name, which no URL or certificate carries.
pub fn host_addresses(listen: SocketAddr) -> Vec<IpAddr> {
    if !listen.ip().is_unspecified() {
        return Vec::new();
    }
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let with_v4 = listen.is_ipv4() || !ipv6_only();
    let with_v6 = listen.is_ipv6();
    let mut found = BTreeSet::new();
    for interface in interfaces {
        let Some(address) = interface.address else { continue };
        if let (true, Some(v4)) = (with_v4, address.as_sockaddr_in()) {
            found.insert(IpAddr::V4(v4.ip()));
        }
        if let (true, Some(v6)) = (with_v6, address.as_sockaddr_in6())
            && !v6.ip().is_unicast_link_local()
        {
            found.insert(IpAddr::V6(v6.ip()));
        }
    }
    found.into_iter().filter(|ip| !ip.is_loopback()).collect()
}

/// Whether a listener on `::` answers on IPv6 only (`net.ipv6.bindv6only`).
fn ipv6_only() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "1")
}

/// The names of the serving certificate beside the listen address, `127.0.0.1` and `localhost`:
/// for a listener on every address, the host's addresses, `::1` for IPv6, and the host name; for
/// another non-loopback address, the host name; then `extra` (`--tls-san`).
pub fn certificate_names(listen: SocketAddr, host_name: &str, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = host_addresses(listen).iter().map(IpAddr::to_string).collect();
    if listen.ip().is_unspecified() && listen.is_ipv6() {
        names.push("::1".to_owned());
    }
    if !listen.ip().is_loopback() && !host_name.is_empty() && host_name != "localhost" {
        names.push(host_name.to_owned());
    }
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_listener_names_only_what_it_is_given() {
        let listen: SocketAddr = "127.0.0.1:7443".parse().unwrap();
        assert!(host_addresses(listen).is_empty());
        assert_eq!(certificate_names(listen, "box", &["vmsnap.example".into()]), vec!["vmsnap.example"]);
    }

    #[test]
    fn a_listener_on_every_ipv4_address_names_the_host_and_its_ipv4_addresses() {
        let listen: SocketAddr = "0.0.0.0:7443".parse().unwrap();
        let names = certificate_names(listen, "box", &["10.9.8.7".into()]);
        let addresses = host_addresses(listen);
        assert!(addresses.iter().all(|ip| ip.is_ipv4() && !ip.is_loopback()), "{addresses:?}");
        for ip in &addresses {
            assert!(names.contains(&ip.to_string()), "{names:?}");
        }
        assert!(names.ends_with(&["box".to_owned(), "10.9.8.7".to_owned()]), "{names:?}");
    }
}
