//! Test helper for `tests/dns.rs`: resolves a name with the C library's `getaddrinfo` (std's
//! `ToSocketAddrs`). Built for `x86_64-unknown-linux-musl` it is the musl resolver, which sends its
//! queries with `sendto` on an unconnected socket to each nameserver and accepts answers only from
//! the nameserver's own address.
//!
//! Usage: `resolve NAME`. Prints each address found, sorted, one per line, and exits 0; when the
//! lookup fails, prints `resolve: NAME: ERROR` on stderr and exits 2.

use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name] = args.as_slice() else {
        eprintln!("usage: resolve NAME");
        std::process::exit(64);
    };
    match (name.as_str(), 80).to_socket_addrs() {
        Ok(addrs) => {
            let ips: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).collect();
            for ip in ips {
                println!("{ip}");
            }
        }
        Err(e) => {
            eprintln!("resolve: {name}: {e}");
            std::process::exit(2);
        }
    }
}
