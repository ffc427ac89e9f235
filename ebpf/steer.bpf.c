// SPDX-License-Identifier: Apache-2.0
//
// The XDP program of weft's AF_XDP UDP back-end, in C. It documents the instruction array that
// src/io/udp/xdp/bpf.rs assembles at run time (`program()`); the build never compiles this file.
//
// NODE_IP4 / NODE_IP6_* / NODE_PORT stand for the immediates bpf.rs patches in (the bound
// address and port, in network byte order as a native-endian load sees them); `xsks` is the
// XSKMAP whose fd bpf.rs patches into the BPF_LD_IMM64 (BPF_PSEUDO_MAP_FD). One program is
// built per address family: the IPv4 variant only has the IPv4 branch, the IPv6 one only the
// IPv6 branch.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef NODE_PORT
#define NODE_PORT 9993
#endif
#ifndef NODE_IP4
#define NODE_IP4 0x0100000a /* 10.0.0.1 as loaded on a little-endian host */
#endif

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 64);
} xsks SEC(".maps");

SEC("xdp")
int weft_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;

#ifndef STEER_IPV6
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1); /* no options: ihl == 5 is checked below */
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (*(__u8 *)ip != 0x45)                       /* version 4, 20-byte header */
		return XDP_PASS;
	if (ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	if (ip->frag_off & bpf_htons(0x3fff))          /* MF or an offset: let the kernel reassemble */
		return XDP_PASS;
	if (ip->daddr != NODE_IP4)
		return XDP_PASS;
	if (udp->dest != bpf_htons(NODE_PORT))
		return XDP_PASS;
#else
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip6 + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (ip6->nexthdr != IPPROTO_UDP)               /* extension headers, fragments: the kernel */
		return XDP_PASS;
	if (ip6->daddr.s6_addr32[0] != NODE_IP6_0 || ip6->daddr.s6_addr32[1] != NODE_IP6_1 ||
	    ip6->daddr.s6_addr32[2] != NODE_IP6_2 || ip6->daddr.s6_addr32[3] != NODE_IP6_3)
		return XDP_PASS;
	if (udp->dest != bpf_htons(NODE_PORT))
		return XDP_PASS;
#endif
	/* The XSK of the receiving queue; XDP_PASS where that queue has none. */
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Apache-2.0";
