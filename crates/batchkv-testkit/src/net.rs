//! Free loopback ports.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released). Someone else may
/// take it before the caller binds it: servers started on it should be retried on a bind failure
/// (as [`crate::Etcd::start`] does).
///
/// # Panics
/// If no loopback port can be bound.
pub fn free_port() -> u16 {
    let [port] = free_ports::<1>();
    port
}

/// `N` distinct free loopback ports: all bound at once (so they differ), then released.
///
/// # Panics
/// If the loopback ports cannot be bound.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ports = free_port_list(N);
    std::array::from_fn(|i| ports[i])
}

/// `n` distinct free loopback ports, for a count known at run time.
pub(crate) fn free_port_list(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports::<4>();
        for (i, p) in ports.iter().enumerate() {
            assert!(!ports[..i].contains(p), "{ports:?}");
        }
        TcpListener::bind(("127.0.0.1", free_port())).expect("a free port binds");
        assert_eq!(free_port_list(5).len(), 5);
    }
}
