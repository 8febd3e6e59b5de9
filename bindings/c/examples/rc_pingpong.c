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
#include "packet_nic.h"

#include <inttypes.h>

#define MSG_LEN 52
#define RECV_ID 1
#define SEND_ID 2
#define RX_DEPTH 250 /* ibv_rc_pingpong uses 500; our QPs hold 256 */

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

    /* The NIC, the host, the link. */
    nic n;
    unsigned mtu;
    nic_open(&n, ifname, ipstr, macstr, &mtu);
    srand48((long)now_ns());
    rxe_host *h;
    rxe_device *dev = nic_device(&n, ipstr, mtu, &h);
    int rc;


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
