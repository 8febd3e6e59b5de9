/*
 * rc_pingpong: rdma-core's ibv_rc_pingpong, on the rxe C API over a raw Ethernet interface —
 * the way NIC firmware or a kernel module hosts the device: frames in and out of an AF_PACKET
 * socket (the "NIC"), ARP answered and resolved here, time from CLOCK_MONOTONIC, no threads.
 * It speaks ibv_rc_pingpong's TCP exchange on port 18515 (LID:QPN:PSN:GID, 52 bytes) and its
 * ping-pong of SENDs, so it runs against the real tool and a Linux rdma_rxe peer.
 *
 *   rc_pingpong -i IFACE -a IPV4 [-m MAC] [-s SIZE] [-n ITERS] [-p PORT] [-t SECS] [SERVER]
 *
 * IFACE carries our frames (a veth or bridge port; no IP address needed on it); IPV4 is our
 * RoCE address (our GID ::ffff:IPV4); MAC defaults to IFACE's. The TCP exchange goes through the
 * kernel's own stack. Needs CAP_NET_RAW.
 */
#define _GNU_SOURCE
#include "rxe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
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

#define MSG_LEN 52
#define RECV_ID 1
#define SEND_ID 2
#define RX_DEPTH 250 /* ibv_rc_pingpong uses 500; our QPs hold 256 */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int rc, rxe_device *dev) {
    fprintf(stderr, "rc_pingpong: %s: %s%s%s\n", what, rc < 0 ? rxe_strerror(rc) : strerror(errno),
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

/* ---- ibv_rc_pingpong's exchange ---- */

typedef struct {
    unsigned lid, qpn, psn;
    uint8_t gid[16];
} dest;

static void to_wire(const dest *d, char msg[MSG_LEN]) {
    char hex[33];
    for (int i = 0; i < 16; i++) sprintf(hex + 2 * i, "%02x", d->gid[i]);
    memset(msg, 0, MSG_LEN);
    snprintf(msg, MSG_LEN, "%04x:%06x:%06x:%s", d->lid, d->qpn, d->psn, hex);
}

static int from_wire(const char *msg, dest *d) {
    char hex[33] = {0};
    if (sscanf(msg, "%x:%x:%x:%32s", &d->lid, &d->qpn, &d->psn, hex) != 4 || strlen(hex) != 32)
        return -1;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        d->gid[i] = (uint8_t)v;
    }
    return 0;
}

static int read_full(int fd, char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static void show(const char *what, const dest *d) {
    char s[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, d->gid, s, sizeof s);
    printf("  %s address: LID 0x%04x, QPN 0x%06x, PSN 0x%06x, GID %s\n", what, d->lid, d->qpn,
           d->psn, s);
}

int main(int argc, char **argv) {
    const char *ifname = NULL, *ipstr = NULL, *macstr = NULL, *server = NULL;
    unsigned size = 4096, iters = 1000, port = 18515, timeout = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-i") && v) ifname = v, i++;
        else if (!strcmp(a, "-a") && v) ipstr = v, i++;
        else if (!strcmp(a, "-m") && v) macstr = v, i++;
        else if (!strcmp(a, "-s") && v) size = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "-n") && v) iters = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "-p") && v) port = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "-t") && v) timeout = (unsigned)atoi(v), i++;
        else if (a[0] != '-' && !server) server = a;
        else {
            fprintf(stderr, "usage: rc_pingpong -i IFACE -a IPV4 [-m MAC] [-s SIZE] [-n ITERS] "
                            "[-p PORT] [-t SECS] [SERVER]\n");
            return 2;
        }
    }
    if (!ifname || !ipstr || size == 0 || iters == 0) {
        fprintf(stderr, "rc_pingpong: -i IFACE and -a IPV4 are required\n");
        return 2;
    }

    /* The NIC. */
    nic n;
    memset(&n, 0, sizeof n);
    if (inet_pton(AF_INET, ipstr, n.ip) != 1) die("bad -a address", 0, NULL);
    n.fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (n.fd < 0) die("AF_PACKET socket (needs CAP_NET_RAW)", 0, NULL);
    n.ifindex = (int)if_nametoindex(ifname);
    if (n.ifindex == 0) die(ifname, 0, NULL);
    struct sockaddr_ll bind_to;
    memset(&bind_to, 0, sizeof bind_to);
    bind_to.sll_family = AF_PACKET;
    bind_to.sll_protocol = htons(ETH_P_ALL);
    bind_to.sll_ifindex = n.ifindex;
    if (bind(n.fd, (struct sockaddr *)&bind_to, sizeof bind_to) < 0) die("bind", 0, NULL);
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = n.ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    (void)setsockopt(n.fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
    if (macstr) {
        unsigned m[6];
        if (sscanf(macstr, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
            die("bad -m MAC", 0, NULL);
        for (int i = 0; i < 6; i++) n.mac[i] = (uint8_t)m[i];
    } else {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
        if (ioctl(n.fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR", 0, NULL);
        memcpy(n.mac, ifr.ifr_hwaddr.sa_data, 6);
    }
    unsigned mtu = 1500;
    {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
        if (ioctl(n.fd, SIOCGIFMTU, &ifr) == 0) mtu = (unsigned)ifr.ifr_mtu;
    }

    /* The host, its netdev, the link. */
    rxe_netdev_ops ops;
    ops.transmit = nic_transmit;
    ops.resolve = nic_resolve;
    ops.frames_taken = nic_frames_taken;
    srand48((long)now_ns());
    rxe_host *h = rxe_host_new((uint64_t)lrand48());
    int rc = rxe_netdev_register(h, "eth0", &ops, &n, n.mac, mtu);
    if (rc == 0) rc = rxe_netdev_add_addr(h, "eth0", ipstr);
    if (rc == 0) rc = rxe_link_command(h, "rdma link add rxe0 type rxe netdev eth0");
    if (rc < 0) {
        fprintf(stderr, "rc_pingpong: %s: %s\n", rxe_strerror(rc), rxe_host_last_error(h));
        return 1;
    }
    rxe_device *dev = rxe_device_get(h, "rxe0");

    /* Verbs, as ibv_rc_pingpong: one buffer, one CQ, one RC QP. */
    uint8_t *buf = (uint8_t *)calloc(1, size);
    memset(buf, 0x7b, size);
    rxe_pd pd;
    rxe_mr mrk;
    rxe_cq cq;
    rxe_qp qp;
    if ((rc = rxe_alloc_pd(dev, &pd)) < 0) die("alloc_pd", rc, dev);
    if ((rc = rxe_reg_mr(dev, pd, buf, size, RXE_ACCESS_LOCAL_WRITE, &mrk)) < 0) die("reg_mr", rc, dev);
    if ((rc = rxe_create_cq(dev, RX_DEPTH + 1, &cq)) < 0) die("create_cq", rc, dev);
    rxe_qp_init_attr qa;
    memset(&qa, 0, sizeof qa);
    qa.qp_type = RXE_QPT_RC;
    qa.pd = pd;
    qa.send_cq = cq;
    qa.recv_cq = cq;
    if ((rc = rxe_create_qp(dev, &qa, &qp)) < 0) die("create_qp", rc, dev);
    rxe_qp_attr init;
    memset(&init, 0, sizeof init);
    init.qp_state = RXE_QPS_INIT;
    init.port_num = 1;
    rc = rxe_modify_qp(dev, qp, &init, RXE_QP_STATE | RXE_QP_PKEY_INDEX | RXE_QP_PORT | RXE_QP_ACCESS_FLAGS);
    if (rc < 0) die("modify QP to INIT", rc, dev);
    rxe_sge sge = {(uint64_t)(uintptr_t)buf, size, mrk.lkey};
    rxe_recv_wr rwr;
    rwr.wr_id = RECV_ID;
    rwr.sg_list = &sge;
    rwr.num_sge = 1;
    unsigned routs = 0;
    for (; routs < RX_DEPTH; routs++)
        if ((rc = rxe_post_recv(dev, qp, &rwr)) < 0) die("post_recv", rc, dev);

    dest my, rem;
    my.lid = 0;
    my.qpn = qp.qp_num;
    my.psn = (unsigned)lrand48() & 0xffffff;
    rxe_gid g;
    if ((rc = rxe_query_gid(dev, 0, &g)) < 0) die("query_gid", rc, dev);
    memcpy(my.gid, g.raw, 16);
    show("local", &my);

    /* The TCP exchange. */
    char msg[MSG_LEN];
    to_wire(&my, msg);
    int s;
    if (server) {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, server, &sa.sin_addr) != 1) die("server address", 0, NULL);
        s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) die("couldn't connect", 0, NULL);
        if (write(s, msg, MSG_LEN) != MSG_LEN || read_full(s, msg, MSG_LEN) < 0 || from_wire(msg, &rem) < 0)
            die("exchange", 0, NULL);
        if (write(s, "done", 5) != 5) die("write done", 0, NULL);
    } else {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0)
            die("couldn't listen", 0, NULL);
        s = accept(l, NULL, NULL);
        close(l);
        if (s < 0 || read_full(s, msg, MSG_LEN) < 0 || from_wire(msg, &rem) < 0) die("exchange", 0, NULL);
    }
    rxe_rc_connect c;
    rxe_rc_connect_init(&c);
    memcpy(c.dgid.raw, rem.gid, 16);
    c.dest_qp_num = rem.qpn;
    c.sq_psn = my.psn;
    c.rq_psn = rem.psn;
    c.access = 0;
    c.hop_limit = 1;
    c.max_rd_atomic = 1;
    c.max_dest_rd_atomic = 1;
    c.path_mtu = RXE_MTU_1024;
    if ((rc = rxe_connect_rc(dev, qp, &c)) < 0) die("connect_rc", rc, dev);
    if (!server) {
        to_wire(&my, msg);
        if (write(s, msg, MSG_LEN) != MSG_LEN) die("send local address", 0, NULL);
        char done[MSG_LEN];
        (void)read(s, done, sizeof done); /* the client's "done" */
    }
    close(s);
    show("remote", &rem);

    /* The ping-pong: the client sends first; each side sends again when its last SEND and a
     * RECV have both completed. */
    rxe_send_wr swr;
    memset(&swr, 0, sizeof swr);
    swr.wr_id = SEND_ID;
    swr.opcode = RXE_WR_SEND;
    swr.send_flags = RXE_SEND_SIGNALED;
    swr.sg_list = &sge;
    swr.num_sge = 1;
    unsigned pending = RECV_ID, rcnt = 0, scnt = 0;
    if (server) {
        if ((rc = rxe_post_send(dev, qp, &swr)) < 0) die("post_send", rc, dev);
        pending |= SEND_ID;
    }
    uint64_t start = now_ns(), last = start;
    while (rcnt < iters || scnt < iters) {
        drive(&n, dev, 1);
        rxe_wc wc[16];
        int got = rxe_poll_cq(dev, cq, 16, wc);
        if (got < 0) die("poll_cq", got, dev);
        if (got > 0) last = now_ns();
        for (int i = 0; i < got; i++) {
            if (wc[i].status != 0) {
                fprintf(stderr, "Failed status %u for wr_id %d\n", wc[i].status, (int)wc[i].wr_id);
                return 1;
            }
            if (wc[i].wr_id == RECV_ID) {
                if (--routs <= 1) {
                    for (; routs < RX_DEPTH; routs++)
                        if ((rc = rxe_post_recv(dev, qp, &rwr)) < 0) die("post_recv", rc, dev);
                }
                rcnt++;
                pending &= ~(unsigned)RECV_ID;
            } else {
                scnt++;
                pending &= ~(unsigned)SEND_ID;
            }
            if (scnt < iters && pending == 0) {
                if ((rc = rxe_post_send(dev, qp, &swr)) < 0) die("post_send", rc, dev);
                pending = RECV_ID | SEND_ID;
            }
        }
        if (now_ns() - last > (uint64_t)timeout * 1000000000ull) {
            fprintf(stderr, "rc_pingpong: no progress for %u s (%u received, %u sent)\n", timeout,
                    rcnt, scnt);
            return 1;
        }
    }
    double usec = (double)(now_ns() - start) / 1e3;
    uint64_t bytes = (uint64_t)size * iters * 2;
    printf("%" PRIu64 " bytes in %.2f seconds = %.2f Mbit/sec\n", bytes, usec / 1e6, (double)bytes * 8 / usec);
    printf("%u iters in %.2f seconds = %.2f usec/iter\n", iters, usec / 1e6, usec / iters);
    /* Let the last ACKs go out. */
    for (uint64_t end = now_ns() + 200000000ull; now_ns() < end;) drive(&n, dev, 5);
    rxe_counters k;
    rxe_device_counters(dev, &k);
    printf("device: sent_pkts %" PRIu64 " rcvd_pkts %" PRIu64 " rcvd_seq_err %" PRIu64
           " retry_exceeded_err %" PRIu64 " tx_queue_full %" PRIu64 " rx_other_ip %" PRIu64 "\n",
           k.sent_pkts, k.rcvd_pkts, k.rcvd_seq_err, k.retry_exceeded_err, k.tx_queue_full,
           k.rx_other_ip);
    rxe_host_free(h);
    free(buf);
    close(n.fd);
    return 0;
}
