//! Host integration of virtual networks (Linux): managed addresses and routes on a network's TAP
//! (policy in [`managed`], netlink in [`netlink`]) and its DNS settings ([`dns`]). The TAP device
//! itself is `weft_engine::io::tap`. spec: service.md §8

pub mod dns;
pub mod managed;
pub mod netlink;

#[cfg(test)]
mod netns_tests;
