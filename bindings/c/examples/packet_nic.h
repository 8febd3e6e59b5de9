/*
 * packet_nic.h: the "NIC" of the example C hosts (rc_pingpong.c, rping.c): an AF_PACKET socket on
 * one Ethernet interface, with ARP answered and resolved by the host itself, as NIC firmware or
 * a kernel module hosting the rxe device would have it. Header-only; include it once per program.
 */
#ifndef RXE_PACKET_NIC_H
#define RXE_PACKET_NIC_H

#include "rxe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int rc, rxe_device *dev) {
    fprintf(stderr, "%s: %s%s%s\n", what, rc < 0 ? rxe_strerror(rc) : strerror(errno),
            dev ? ": " : "", dev ? rxe_device_last_error(dev) : "");
    exit(1);
}

/* ---- the NIC: an AF_PACKET socket, and ARP ---- */

typedef struct {
    int fd;
    int ifindex;
    uint8_t mac[6];
    uint8_t ip[4];
    uint64_t taken;
    struct {
        uint8_t ip[4];
        uint8_t mac[6];
        int known;
        uint64_t asked;
    } neigh[16];
    int nneigh;
} nic;

static int send_frame(nic *n, const uint8_t *f, size_t len) {
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = n->ifindex;
    to.sll_halen = 6;
    memcpy(to.sll_addr, f, 6);
    return sendto(n->fd, f, len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to) == (ssize_t)len ? 0 : -1;
}

static void arp_send(nic *n, int op, const uint8_t *tha, const uint8_t *tpa) {
    uint8_t f[42];
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    memcpy(f, op == 1 ? bcast : tha, 6);
    memcpy(f + 6, n->mac, 6);
    f[12] = 0x08, f[13] = 0x06;            /* ARP */
    f[14] = 0, f[15] = 1, f[16] = 8, f[17] = 0, f[18] = 6, f[19] = 4; /* Ethernet, IPv4 */
    f[20] = 0, f[21] = (uint8_t)op;
    memcpy(f + 22, n->mac, 6);
    memcpy(f + 28, n->ip, 4);
    if (op == 1) memset(f + 32, 0, 6); else memcpy(f + 32, tha, 6);
    memcpy(f + 38, tpa, 4);
    (void)send_frame(n, f, sizeof f);
}

/* An ARP frame: answer requests for our address, learn from replies and requests. */
static void arp_input(nic *n, const uint8_t *f, size_t len) {
    if (len < 42 || f[14] != 0 || f[15] != 1 || f[16] != 8 || f[17] != 0) return;
    int op = f[21];
    const uint8_t *sha = f + 22, *spa = f + 28, *tpa = f + 38;
    for (int i = 0; i < n->nneigh; i++) {
        if (memcmp(n->neigh[i].ip, spa, 4) == 0) {
            memcpy(n->neigh[i].mac, sha, 6);
            n->neigh[i].known = 1;
        }
    }
    if (op == 1 && memcmp(tpa, n->ip, 4) == 0) arp_send(n, 2, sha, spa);
}

static int nic_transmit(void *ctx, const uint8_t *frame, size_t len) {
    nic *n = (nic *)ctx;
    if (send_frame(n, frame, len) != 0) {
        if (errno == EAGAIN || errno == ENOBUFS) return RXE_TX_QUEUE_FULL;
        return RXE_TX_LINK_DOWN;
    }
    n->taken++; /* a packet socket hands the frame to the driver at once */
    return RXE_TX_OK;
}

static int nic_resolve(void *ctx, const rxe_gid *gid, uint8_t *mac) {
    nic *n = (nic *)ctx;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(gid->raw, mapped, 12) != 0) return RXE_NEIGH_PENDING; /* IPv4 only here */
    const uint8_t *ip = gid->raw + 12;
    int i;
    for (i = 0; i < n->nneigh; i++)
        if (memcmp(n->neigh[i].ip, ip, 4) == 0) break;
    if (i == n->nneigh) {
        if (n->nneigh == 16) return RXE_NEIGH_PENDING;
        memcpy(n->neigh[i].ip, ip, 4);
        n->neigh[i].known = 0;
        n->neigh[i].asked = 0;
        n->nneigh++;
    }
    if (n->neigh[i].known) {
        memcpy(mac, n->neigh[i].mac, 6);
        return RXE_NEIGH_KNOWN;
    }
    uint64_t t = now_ns();
    if (t - n->neigh[i].asked > 200000000ull) { /* ask again every 200 ms */
        arp_send(n, 1, NULL, ip);
        n->neigh[i].asked = t;
    }
    return RXE_NEIGH_PENDING;
}

static uint64_t nic_frames_taken(void *ctx) { return ((nic *)ctx)->taken; }

/* Hands every waiting frame to ARP or the device; returns how many. */
static int nic_receive(nic *n, rxe_device *dev) {
    uint8_t buf[10000];
    int got = 0;
    for (;;) {
        struct sockaddr_ll from;
        socklen_t fl = sizeof from;
        ssize_t len = recvfrom(n->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (len < 0) break;
        if (from.sll_pkttype == PACKET_OUTGOING || len < 14) continue; /* our own */
        got++;
        if (buf[12] == 0x08 && buf[13] == 0x06) {
            arp_input(n, buf, (size_t)len);
            continue;
        }
        int rc = rxe_device_rx(dev, now_ns(), buf, (size_t)len);
        if (rc < 0) die("rxe_device_rx", rc, dev);
    }
    return got;
}

/* Runs the device: frames in, timers, frames out; waits up to `max_ms` for the wire. */
static void drive(nic *n, rxe_device *dev, int max_ms) {
    uint64_t next = 0;
    int rc = rxe_device_poll(dev, now_ns(), &next);
    if (rc < 0) die("rxe_device_poll", rc, dev);
    int ms = max_ms;
    if (rc == 1) {
        uint64_t t = now_ns();
        int until = next > t ? (int)((next - t) / 1000000) : 0;
        if (until < ms) ms = until;
    }
    if (n->nneigh > 0 && ms > 10) ms = 10; /* a resolution may finish */
    struct pollfd p = {n->fd, POLLIN, 0};
    if (ms > 0) (void)poll(&p, 1, ms);
    nic_receive(n, dev);
    rc = rxe_device_poll(dev, now_ns(), &next);
    if (rc < 0) die("rxe_device_poll", rc, dev);
}

/* Opens the NIC on `ifname` with our IPv4 address `ip` and MAC (`mac` "aa:bb:..", or NULL
 * for the interface's own); *mtu gets the interface's MTU. */
static void nic_open(nic *n, const char *ifname, const char *ip, const char *mac, unsigned *mtu) {
    memset(n, 0, sizeof *n);
    if (inet_pton(AF_INET, ip, n->ip) != 1) die("bad IPv4 address", 0, NULL);
    n->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (n->fd < 0) die("AF_PACKET socket (needs CAP_NET_RAW)", 0, NULL);
    n->ifindex = (int)if_nametoindex(ifname);
    if (n->ifindex == 0) die(ifname, 0, NULL);
    struct sockaddr_ll at;
    memset(&at, 0, sizeof at);
    at.sll_family = AF_PACKET;
    at.sll_protocol = htons(ETH_P_ALL);
    at.sll_ifindex = n->ifindex;
    if (bind(n->fd, (struct sockaddr *)&at, sizeof at) < 0) die("bind", 0, NULL);
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = n->ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    (void)setsockopt(n->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (mac) {
        unsigned m[6];
        if (sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
            die("bad MAC", 0, NULL);
        for (int i = 0; i < 6; i++) n->mac[i] = (uint8_t)m[i];
    } else {
        if (ioctl(n->fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR", 0, NULL);
        memcpy(n->mac, ifr.ifr_hwaddr.sa_data, 6);
    }
    *mtu = 1500;
    if (ioctl(n->fd, SIOCGIFMTU, &ifr) == 0) *mtu = (unsigned)ifr.ifr_mtu;
}

/* A host with the NIC registered as "eth0" (address `ip`) and the link rxe0 on it. */
static rxe_device *nic_device(nic *n, const char *ip, unsigned mtu, rxe_host **host) {
    rxe_netdev_ops ops;
    ops.transmit = nic_transmit;
    ops.resolve = nic_resolve;
    ops.frames_taken = nic_frames_taken;
    rxe_host *h = rxe_host_new(now_ns());
    int rc = rxe_netdev_register(h, "eth0", &ops, n, n->mac, mtu);
    if (rc == 0) rc = rxe_netdev_add_addr(h, "eth0", ip);
    if (rc == 0) rc = rxe_link_command(h, "rdma link add rxe0 type rxe netdev eth0");
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", rxe_strerror(rc), rxe_host_last_error(h));
        exit(1);
    }
    *host = h;
    return rxe_device_get(h, "rxe0");
}

#endif
