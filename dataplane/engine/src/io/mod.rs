//! The data plane's I/O back-ends (Linux). Each touches the OS directly, with blocking-free file
//! descriptors that the daemon drives from its own event loop (this crate starts no runtime).
//!
//! * [`tap`]: the TAP device of a virtual network (VL2 frames in and out), its name, and the
//!   multicast groups the OS has joined on it. spec: service.md §8.1, vl2.md §3.2
//! * [`udp`]: the underlay UDP sockets, batched (io_uring, recvmmsg/sendmmsg with GRO/GSO, or
//!   one datagram per call), chosen by probing what the kernel allows.

pub mod tap;
pub mod udp;
