//! Host integration of virtual networks (Linux): the policy of managed addresses and routes on a
//! network's TAP ([`managed`]) and its DNS settings ([`dns`]). The TAP device itself is
//! `weft_engine::io::tap`. spec: service.md §8

pub mod dns;
pub mod managed;
