/*
 * rping: librdmacm's rping (the link test Soft-RoCE bring-ups start with), on the rxe C API over a
 * raw Ethernet interface, as NIC firmware would host it (packet_nic.h): the connection is made
 * the rdma_cm way through the device's QP1 (rxe_cm_*), then each ping is rping's exchange — the
 * client SENDs its start buffer's address, the server RDMA READs it, the client SENDs its sink
 * buffer's address, the server RDMA WRITEs the ping back — so it runs against Linux's rping on a
 * Linux rdma_rxe peer.
 *
 *   rping -s -i IFACE -a OUR_IPV4 [-p PORT] [-S SIZE] [-v] [-t SECS]
 *   rping -c -i IFACE -I OUR_IPV4 -a SERVER_IPV4 [-p PORT] [-C COUNT] [-S SIZE] [-v] [-V] [-t SECS]
 *
 * -v prints the pings as rping does ("ping data: ...", "server ping data: ..."), -V checks every
 * pong against the ping; the server serves one client and prints
 * "server DISCONNECT EVENT... (N pings)" when it leaves. Needs CAP_NET_RAW.
 */
#define _GNU_SOURCE
#include "packet_nic.h"

typedef struct {
    nic n;
    rxe_host *h;
    rxe_device *dev;
    rxe_pd pd;
    rxe_mr mr;
    rxe_cq cq;
    rxe_qp qp;
    uint8_t *mem;
    size_t size;
    uint8_t *start, *rdma, *send, *recv; /* rping's four buffers, in one region */
    unsigned early;                      /* peer messages that completed while we waited */
    unsigned timeout;
    /* CM state, from events */
    int requested, established, disconnected, rejected, unreachable;
    uint32_t req_conn;
    uint16_t reason;
} rp;

/* Runs the device once and takes its events. */
static void step(rp *r, int max_ms) {
    drive(&r->n, r->dev, max_ms);
    rxe_async_event ev;
    int got;
    while ((got = rxe_device_get_event(r->dev, &ev)) == 1) {
        switch (ev.event_type) {
        case RXE_EVENT_CM_CONNECT_REQUEST:
            r->requested = 1;
            r->req_conn = ev.element;
            break;
        case RXE_EVENT_CM_ESTABLISHED: r->established = 1; break;
        case RXE_EVENT_CM_DISCONNECTED: r->disconnected = 1; break;
        case RXE_EVENT_CM_REJECTED:
            r->rejected = 1;
            r->reason = ev.reason;
            break;
        case RXE_EVENT_CM_UNREACHABLE: r->unreachable = 1; break;
        default: break;
        }
    }
    if (got < 0) die("rxe_device_get_event", got, r->dev);
}

/* Runs until `*flag` is set or `secs` pass (0: forever). */
static int until(rp *r, const int *flag, unsigned secs) {
    uint64_t end = now_ns() + (uint64_t)secs * 1000000000ull;
    while (!*flag) {
        if (secs && now_ns() > end) return 0;
        step(r, 5);
    }
    return 1;
}

/* The next completion; 0, or -1 when the peer disconnected (a flushed request). */
static int wc(rp *r, rxe_wc *w, const char *what) {
    uint64_t end = now_ns() + (uint64_t)r->timeout * 1000000000ull;
    for (;;) {
        int got = rxe_poll_cq(r->dev, r->cq, 1, w);
        if (got < 0) die("poll_cq", got, r->dev);
        if (got == 1) {
            if (w->status == 0) return 0;
            if (r->disconnected || w->status == 5) return -1;
            fprintf(stderr, "rping: %s: completion status %u\n", what, w->status);
            exit(1);
        }
        if (r->disconnected) return -1;
        if (now_ns() > end) {
            fprintf(stderr, "rping: %s: no completion in %u s\n", what, r->timeout);
            exit(1);
        }
        step(r, 1);
    }
}

static void post_recv(rp *r) {
    rxe_sge s = {(uint64_t)(uintptr_t)r->recv, 16, r->mr.lkey};
    rxe_recv_wr w;
    w.wr_id = 0;
    w.sg_list = &s;
    w.num_sge = 1;
    int rc = rxe_post_recv(r->dev, r->qp, &w);
    if (rc < 0) die("post_recv", rc, r->dev);
}

static void post(rp *r, uint64_t id, uint32_t op, uint8_t *at, uint32_t len, uint64_t raddr, uint32_t rkey) {
    rxe_sge s = {(uint64_t)(uintptr_t)at, len, r->mr.lkey};
    rxe_send_wr w;
    memset(&w, 0, sizeof w);
    w.wr_id = id;
    w.opcode = op;
    w.send_flags = RXE_SEND_SIGNALED;
    w.sg_list = &s;
    w.num_sge = 1;
    w.remote_addr = raddr;
    w.rkey = rkey;
    int rc = rxe_post_send(r->dev, r->qp, &w);
    if (rc < 0) die("post_send", rc, r->dev);
}

/* Waits for the peer's message and reposts the receive; -1 if the peer left. */
static int wait_recv(rp *r, const char *what) {
    if (r->early) {
        r->early--;
        return 0;
    }
    for (;;) {
        rxe_wc w;
        if (wc(r, &w, what) < 0) return -1;
        if (w.opcode == 128) {
            post_recv(r);
            return 0;
        }
    }
}

/* Waits for our own request; the peer's answer may complete first (kept for wait_recv). */
static int wait_send(rp *r, const char *what) {
    for (;;) {
        rxe_wc w;
        if (wc(r, &w, what) < 0) return -1;
        if (w.opcode != 128) return 0;
        r->early++;
        post_recv(r);
    }
}

static void put_be(uint8_t *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* SENDs {addr, rkey, size} of one of our buffers, as rping does. */
static int send_info(rp *r, uint8_t *buf) {
    put_be(r->send, (uint64_t)(uintptr_t)buf, 8);
    put_be(r->send + 8, r->mr.rkey, 4);
    put_be(r->send + 12, r->size, 4);
    post(r, 1, RXE_WR_SEND, r->send, 16, 0, 0);
    return wait_send(r, "send buffer info");
}

/* rping's start-buffer contents for ping `i`. */
static void pattern(uint8_t *p, size_t size, unsigned i) {
    int n = snprintf((char *)p, size, "rdma-ping-%u: ", i);
    size_t at = n < 0 ? 0 : (size_t)n;
    if (at > size - 1) at = size - 1;
    uint8_t c = (uint8_t)('A' + i % 58);
    for (; at < size - 1; at++) {
        p[at] = c;
        c = c == 'z' ? 'A' : c + 1;
    }
    p[size - 1] = 0;
}

static void new_qp(rp *r) {
    rxe_qp_init_attr qa;
    memset(&qa, 0, sizeof qa);
    qa.qp_type = RXE_QPT_RC;
    qa.pd = r->pd;
    qa.send_cq = r->cq;
    qa.recv_cq = r->cq;
    int rc = rxe_create_qp(r->dev, &qa, &r->qp);
    if (rc < 0) die("create_qp", rc, r->dev);
}

int main(int argc, char **argv) {
    const char *ifname = NULL, *addr = NULL, *src = NULL;
    int server = -1, verbose = 0, validate = 0;
    unsigned port = 7174, count = 0, size = 64, timeout = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-s")) server = 1;
        else if (!strcmp(a, "-c")) server = 0;
        else if (!strcmp(a, "-v")) verbose = 1;
        else if (!strcmp(a, "-V")) validate = 1;
        else if (!strcmp(a, "-i") && v) ifname = v, i++;
        else if (!strcmp(a, "-a") && v) addr = v, i++;
        else if (!strcmp(a, "-I") && v) src = v, i++;
        else if (!strcmp(a, "-p") && v) port = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "-C") && v) count = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "-S") && v) size = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "-t") && v) timeout = (unsigned)atoi(v), i++;
        else {
            fprintf(stderr, "usage: rping -s|-c -i IFACE -a ADDR [-I OUR_ADDR] [-p PORT] [-C COUNT] "
                            "[-S SIZE] [-v] [-V] [-t SECS]\n");
            return 2;
        }
    }
    const char *ours = server == 1 ? addr : src;
    if (server < 0 || !ifname || !addr || !ours || size < 16) {
        fprintf(stderr, "rping: -s or -c, -i IFACE, -a ADDR (and -I OUR_ADDR for a client), -S >= 16\n");
        return 2;
    }

    rp r;
    memset(&r, 0, sizeof r);
    r.size = size;
    r.timeout = timeout;
    unsigned mtu;
    nic_open(&r.n, ifname, ours, NULL, &mtu);
    r.dev = nic_device(&r.n, ours, mtu, &r.h);
    size_t s = (size + 63) / 64 * 64;
    r.mem = (uint8_t *)aligned_alloc(64, 2 * s + 128);
    memset(r.mem, 0, 2 * s + 128);
    r.start = r.mem;
    r.rdma = r.mem + s;
    r.send = r.mem + 2 * s;
    r.recv = r.mem + 2 * s + 64;
    int rc;
    if ((rc = rxe_alloc_pd(r.dev, &r.pd)) < 0) die("alloc_pd", rc, r.dev);
    rc = rxe_reg_mr(r.dev, r.pd, r.mem, 2 * s + 128,
                    RXE_ACCESS_LOCAL_WRITE | RXE_ACCESS_REMOTE_READ | RXE_ACCESS_REMOTE_WRITE, &r.mr);
    if (rc < 0) die("reg_mr", rc, r.dev);
    if ((rc = rxe_create_cq(r.dev, 64, &r.cq)) < 0) die("create_cq", rc, r.dev);
    new_qp(&r);

    if (server) {
        if ((rc = rxe_cm_listen(r.dev, (uint16_t)port)) < 0) die("listen", rc, r.dev);
        until(&r, &r.requested, 0);
        rc = rxe_cm_accept(r.dev, now_ns(), r.req_conn, r.qp, 1, 1, NULL, 0);
        if (rc < 0) die("accept", rc, r.dev);
        post_recv(&r);
        unsigned n = 0;
        for (;;) {
            if (wait_recv(&r, "wait for the client's start buffer") < 0) break;
            uint64_t raddr = get_be(r.recv, 8);
            uint32_t rkey = (uint32_t)get_be(r.recv + 8, 4), len = (uint32_t)get_be(r.recv + 12, 4);
            if (len > size) len = size;
            post(&r, 2, RXE_WR_RDMA_READ, r.rdma, len, raddr, rkey);
            if (wait_send(&r, "RDMA READ of the client's buffer") < 0) break;
            if (verbose) printf("server ping data: %.*s\n", (int)len, (const char *)r.rdma);
            post(&r, 3, RXE_WR_SEND, r.send, 16, 0, 0);
            if (wait_send(&r, "go ahead") < 0) break;
            if (wait_recv(&r, "wait for the client's sink buffer") < 0) break;
            raddr = get_be(r.recv, 8);
            rkey = (uint32_t)get_be(r.recv + 8, 4);
            uint32_t wlen = (uint32_t)strnlen((const char *)r.rdma, len) + 1; /* strlen + 1, as rping */
            if (wlen > len) wlen = len;
            post(&r, 4, RXE_WR_RDMA_WRITE, r.rdma, wlen, raddr, rkey);
            if (wait_send(&r, "RDMA WRITE of the pong") < 0) break;
            post(&r, 5, RXE_WR_SEND, r.send, 16, 0, 0);
            if (wait_send(&r, "go ahead") < 0) break;
            n++;
        }
        printf("server DISCONNECT EVENT... (%u pings)\n", n);
    } else {
        rxe_gid dst;
        memset(&dst, 0, sizeof dst);
        dst.raw[10] = dst.raw[11] = 0xff;
        if (inet_pton(AF_INET, addr, dst.raw + 12) != 1) die("bad -a address", 0, NULL);
        uint32_t conn;
        rc = rxe_cm_connect(r.dev, now_ns(), r.qp, &dst, (uint16_t)port,
                            (uint16_t)(40000 + getpid() % 20000), 1, 1, NULL, 0, &conn);
        if (rc < 0) die("connect", rc, r.dev);
        uint64_t end = now_ns() + (uint64_t)timeout * 1000000000ull;
        while (!r.established && !r.rejected && !r.unreachable && now_ns() < end) step(&r, 5);
        if (!r.established) {
            fprintf(stderr, "rping: connect: %s (reason %u)\n",
                    r.rejected ? "rejected" : r.unreachable ? "unreachable" : "timed out", r.reason);
            return 1;
        }
        post_recv(&r);
        for (unsigned i = 0; count == 0 || i < count; i++) {
            pattern(r.start, size, i);
            memset(r.rdma, 0, size);
            if (send_info(&r, r.start) < 0 || wait_recv(&r, "wait for the server's go ahead") < 0 ||
                send_info(&r, r.rdma) < 0 || wait_recv(&r, "wait for the server's go ahead") < 0) {
                fprintf(stderr, "rping: the server left after %u pings\n", i);
                return 1;
            }
            if (validate && memcmp(r.start, r.rdma, size) != 0) {
                fprintf(stderr, "rping: data mismatch in ping %u\n", i);
                return 1;
            }
            if (verbose) printf("ping data: %.*s\n", (int)(size - 1), (const char *)r.rdma);
        }
        if ((rc = rxe_cm_disconnect(r.dev, now_ns(), conn)) < 0) die("disconnect", rc, r.dev);
        until(&r, &r.disconnected, 5);
    }
    rxe_counters k;
    rxe_device_counters(r.dev, &k);
    fflush(stdout);
    printf("device: sent_pkts %llu rcvd_pkts %llu rcvd_seq_err %llu retry_exceeded_err %llu\n",
            (unsigned long long)k.sent_pkts, (unsigned long long)k.rcvd_pkts,
            (unsigned long long)k.rcvd_seq_err, (unsigned long long)k.retry_exceeded_err);
    fflush(stdout);
    rxe_host_free(r.h);
    free(r.mem);
    close(r.n.fd);
    return 0;
}
