/*
 * The C test host: two hosts ("machines"), each with one netdev, joined by an in-memory wire
 * whose NICs have a bounded transmit queue drained at line rate on a virtual clock. Makes a
 * Soft-RoCE link on each (one with "rdma link add", one with the "add" module parameter),
 * connects RC QPs and checks SEND, RDMA WRITE, RDMA READ and both atomics with the data in
 * memory; a UD datagram through an address handle into an SRQ; error completions and refused
 * calls; connections the rdma_cm way (listen, connect, accept, disconnect, reject); a memory
 * window bound, used and invalidated, ATOMIC WRITE and FLUSH; then the transmission-control scenarios (none / watermark / bandwidth) against a
 * 16-frame NIC queue.
 *
 *   host               run everything; exit 0 only if every check passed
 *   host --frame F --rkey K --va A --psn P
 *                      write the first RC WRITE frame (256 bytes, QP 0x11 to QP 0x11, from
 *                      127.0.0.51 to 127.0.0.52, UDP source port 4791, Identification 0) to
 *                      pcap file F and exit (for the byte-for-byte comparison with rxe-user)
 *
 * Built by the test suite as C11 and as C++, and run under AddressSanitizer.
 */
#include "rxe.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* A call that must succeed; on failure print the library's detail and stop. */
#define MUST(dev, call)                                                                    \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ < 0) {                                                                     \
            fprintf(stderr, "FATAL %s:%d: %s = %d (%s: %s)\n", __FILE__, __LINE__, #call,   \
                    rc_, rxe_strerror(rc_), (dev) ? rxe_device_last_error(dev) : "");      \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

#define HMUST(host, call)                                                                  \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ < 0) {                                                                     \
            fprintf(stderr, "FATAL %s:%d: %s = %d (%s: %s)\n", __FILE__, __LINE__, #call,   \
                    rc_, rxe_strerror(rc_), rxe_host_last_error(host));                    \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

/* ---- the wire ---- */

typedef struct {
    uint8_t *data;
    size_t len;
    uint64_t at; /* enqueued (NIC queue) or arrived (inbox) */
} frame;

typedef struct {
    frame *items;
    size_t head, count, cap; /* ring */
} ring;

static void ring_init(ring *r, size_t cap) {
    r->items = (frame *)calloc(cap, sizeof(frame));
    r->head = r->count = 0;
    r->cap = cap;
}

static void ring_push(ring *r, frame f) {
    if (r->count == r->cap) { /* grow (inboxes only; NIC queues never exceed their cap) */
        frame *n = (frame *)calloc(r->cap * 2, sizeof(frame));
        for (size_t i = 0; i < r->count; i++) n[i] = r->items[(r->head + i) % r->cap];
        free(r->items);
        r->items = n;
        r->head = 0;
        r->cap *= 2;
    }
    r->items[(r->head + r->count) % r->cap] = f;
    r->count++;
}

static frame ring_pop(ring *r) {
    frame f = r->items[r->head];
    r->head = (r->head + 1) % r->cap;
    r->count--;
    return f;
}

typedef struct nic nic;
struct nic {
    const char *ip;
    uint8_t mac[6];
    uint8_t peer_mac[6];
    uint8_t peer_gid[16];
    ring txq;           /* the NIC's transmit queue, at most qcap frames */
    size_t qcap;
    uint64_t rate_bps;  /* line rate */
    uint64_t busy_until;
    uint64_t taken;     /* frames taken off the queue (sent) */
    uint64_t refused;   /* transmit calls refused: queue full */
    size_t max_depth;   /* deepest the queue got */
    uint64_t wire_bytes, first_dep, last_dep; /* for rate measurement */
    uint64_t neigh_ready; /* resolution finishes at this time (0: not asked yet) */
    ring inbox;         /* frames arrived from the peer, not yet given to the device */
    nic *peer;
    uint64_t *now;
    /* re-entrancy probe: the next transmit calls into the library, which must refuse */
    rxe_device *probe_dev;
    rxe_host *probe_host;
    int probe_dev_rc, probe_host_rc;
    /* frame capture (the --frame mode): the first frame with this BTH opcode */
    int capture_opcode;
    uint8_t captured[2048];
    size_t captured_len;
};

static int nic_transmit(void *ctx, const uint8_t *data, size_t len) {
    nic *n = (nic *)ctx;
    if (n->probe_dev) {
        rxe_counters c;
        n->probe_dev_rc = rxe_device_counters(n->probe_dev, &c);
        n->probe_host_rc = rxe_netdev_set_link(n->probe_host, "eth0", 1);
        n->probe_dev = NULL;
    }
    if (n->txq.count >= n->qcap) {
        n->refused++;
        return RXE_TX_QUEUE_FULL;
    }
    frame f;
    f.data = (uint8_t *)malloc(len);
    memcpy(f.data, data, len);
    f.len = len;
    f.at = *n->now;
    ring_push(&n->txq, f);
    if (n->txq.count > n->max_depth) n->max_depth = n->txq.count;
    /* Ethernet + IPv4 (20) + UDP (8): the BTH opcode is the next byte. */
    if (n->capture_opcode >= 0 && n->captured_len == 0 && len > 42 &&
        data[42] == (uint8_t)n->capture_opcode && len <= sizeof n->captured) {
        memcpy(n->captured, data, len);
        n->captured_len = len;
    }
    return RXE_TX_OK;
}

static int nic_resolve(void *ctx, const rxe_gid *gid, uint8_t *mac) {
    nic *n = (nic *)ctx;
    if (memcmp(gid->raw, n->peer_gid, 16) != 0) return RXE_NEIGH_PENDING;
    if (n->neigh_ready == 0) n->neigh_ready = *n->now + 50000; /* ARP takes 50 us */
    if (*n->now < n->neigh_ready) return RXE_NEIGH_PENDING;
    memcpy(mac, n->peer_mac, 6);
    return RXE_NEIGH_KNOWN;
}

static uint64_t nic_frames_taken(void *ctx) { return ((nic *)ctx)->taken; }

/* When the head of the queue has left the NIC. */
static uint64_t nic_departure(const nic *n) {
    const frame *f = &n->txq.items[n->txq.head];
    uint64_t start = f->at > n->busy_until ? f->at : n->busy_until;
    return start + (uint64_t)(f->len + 24) * 8 * 1000000000ull / n->rate_bps; /* + preamble, FCS, gap */
}

typedef struct {
    rxe_host *host;
    rxe_device *dev;
    nic net;
} side;

typedef struct {
    side s[2];
    uint64_t now;
} world;

/* Moves frames and time until nothing is left to do or `limit_ns` passes. Returns 0 when idle. */
static int run(world *w, uint64_t limit_ns) {
    uint64_t end = w->now + limit_ns;
    for (;;) {
        uint64_t next = UINT64_MAX;
        int moved = 0;
        for (int i = 0; i < 2; i++) {
            nic *n = &w->s[i].net;
            while (n->txq.count > 0 && nic_departure(n) <= w->now) {
                uint64_t dep = nic_departure(n);
                frame f = ring_pop(&n->txq);
                n->busy_until = dep;
                n->taken++;
                if (n->wire_bytes == 0) n->first_dep = dep;
                n->wire_bytes += f.len; /* what transmission control counts */
                n->last_dep = dep;
                f.at = dep;
                ring_push(&n->peer->inbox, f);
                moved = 1;
            }
        }
        for (int i = 0; i < 2; i++) {
            side *s = &w->s[i];
            while (s->net.inbox.count > 0) {
                frame f = ring_pop(&s->net.inbox);
                MUST(s->dev, rxe_device_rx(s->dev, w->now, f.data, f.len));
                free(f.data);
                moved = 1;
            }
            uint64_t dl = 0;
            int rc = rxe_device_poll(s->dev, w->now, &dl);
            MUST(s->dev, rc);
            if (rc == 1 && dl < next) next = dl;
            if (s->net.txq.count > 0) {
                uint64_t d = nic_departure(&s->net);
                if (d < next) next = d;
            }
            /* a resolution under way: the host polls again when it finishes */
            if (s->net.neigh_ready > w->now && s->net.neigh_ready < next) next = s->net.neigh_ready;
        }
        if (moved) continue;
        if (next == UINT64_MAX) return 0;
        if (next > end) return 1;
        if (next > w->now) w->now = next;
        else w->now++;
    }
}

/* Runs until `cq` has a completion (taken into *wc) or `limit_ns` passes. */
static int wait_wc(world *w, int i, rxe_cq cq, rxe_wc *wc, uint64_t limit_ns) {
    uint64_t end = w->now + limit_ns;
    for (;;) {
        int n = rxe_poll_cq(w->s[i].dev, cq, 1, wc);
        MUST(w->s[i].dev, n);
        if (n == 1) return 1;
        if (w->now >= end) return 0;
        /* a slice of the wire at a time, so the caller sees completions as they come */
        if (run(w, end - w->now < 1000000 ? end - w->now : 1000000) == 0) {
            n = rxe_poll_cq(w->s[i].dev, cq, 1, wc);
            MUST(w->s[i].dev, n);
            return n; /* idle: nothing more will come */
        }
    }
}

static const uint8_t MAC_A[6] = {0x02, 0x00, 0x7f, 0x00, 0x00, 51};
static const uint8_t MAC_B[6] = {0x02, 0x00, 0x7f, 0x00, 0x00, 52};

static void gid_v4(uint8_t gid[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    memset(gid, 0, 16);
    gid[10] = gid[11] = 0xff;
    gid[12] = a;
    gid[13] = b;
    gid[14] = c;
    gid[15] = d;
}

/* Two hosts with a netdev each, a link on each, a 1 Gbit/s wire with `qcap`-frame queues. */
static void world_init(world *w, size_t qcap, const rxe_link_config *cfg) {
    memset(w, 0, sizeof *w);
    w->now = 1000;
    rxe_netdev_ops ops;
    ops.transmit = nic_transmit;
    ops.resolve = nic_resolve;
    ops.frames_taken = nic_frames_taken;
    for (int i = 0; i < 2; i++) {
        side *s = &w->s[i];
        nic *n = &s->net;
        n->ip = i == 0 ? "127.0.0.51" : "127.0.0.52";
        memcpy(n->mac, i == 0 ? MAC_A : MAC_B, 6);
        memcpy(n->peer_mac, i == 0 ? MAC_B : MAC_A, 6);
        gid_v4(n->peer_gid, 127, 0, 0, i == 0 ? 52 : 51);
        ring_init(&n->txq, qcap);
        ring_init(&n->inbox, 64);
        n->qcap = qcap;
        n->rate_bps = 1000000000ull;
        n->peer = &w->s[1 - i].net;
        n->now = &w->now;
        n->capture_opcode = -1;
        s->host = rxe_host_new(0x5eed0000u + (uint64_t)i);
        CHECK(s->host != NULL, "rxe_host_new");
        if (cfg) HMUST(s->host, rxe_host_set_link_config(s->host, cfg));
        HMUST(s->host, rxe_netdev_register(s->host, "eth0", &ops, n, n->mac, 1500));
        HMUST(s->host, rxe_netdev_add_addr(s->host, "eth0", n->ip));
    }
    /* One link the modern way, one with the original module parameter. */
    HMUST(w->s[0].host, rxe_link_command(w->s[0].host, "rdma link add rxe0 type rxe netdev eth0"));
    HMUST(w->s[1].host, rxe_param_set(w->s[1].host, "add", "eth0"));
    for (int i = 0; i < 2; i++) {
        w->s[i].dev = rxe_device_get(w->s[i].host, "rxe0");
        CHECK(w->s[i].dev != NULL, "rxe_device_get(rxe0) on host %d", i);
        if (!w->s[i].dev) exit(2);
    }
}

static void world_free(world *w) {
    for (int i = 0; i < 2; i++) {
        nic *n = &w->s[i].net;
        rxe_host_free(w->s[i].host);
        while (n->txq.count) free(ring_pop(&n->txq).data);
        while (n->inbox.count) free(ring_pop(&n->inbox).data);
        free(n->txq.items);
        free(n->inbox.items);
    }
}

/* One RC endpoint: a PD, a region over `buf`, a CQ, a QP. */
typedef struct {
    rxe_pd pd;
    rxe_mr mr;
    rxe_cq cq;
    rxe_qp qp;
    uint8_t *buf;
    size_t len;
} endpoint;

/* The attributes of an RC QP whose completions all go to `cq`. */
static rxe_qp_init_attr rc_attr(rxe_pd pd, rxe_cq cq) {
    rxe_qp_init_attr a;
    memset(&a, 0, sizeof a);
    a.qp_type = RXE_QPT_RC;
    a.pd = pd;
    a.send_cq = cq;
    a.recv_cq = cq;
    return a;
}

static void endpoint_init(rxe_device *d, endpoint *e, size_t len) {
    e->len = len;
    e->buf = (uint8_t *)aligned_alloc(64, len);
    memset(e->buf, 0, len);
    MUST(d, rxe_alloc_pd(d, &e->pd));
    MUST(d, rxe_reg_mr(d, e->pd, e->buf, len,
                       RXE_ACCESS_LOCAL_WRITE | RXE_ACCESS_REMOTE_WRITE | RXE_ACCESS_REMOTE_READ |
                           RXE_ACCESS_REMOTE_ATOMIC | RXE_ACCESS_MW_BIND | RXE_ACCESS_FLUSH_GLOBAL,
                       &e->mr));
    MUST(d, rxe_create_cq(d, 256, &e->cq));
    rxe_qp_init_attr qa = rc_attr(e->pd, e->cq);
    MUST(d, rxe_create_qp(d, &qa, &e->qp));
}

static void connect_pair(world *w, endpoint *a, endpoint *b, uint32_t psn_a, uint32_t psn_b) {
    rxe_rc_connect c;
    MUST(NULL, rxe_rc_connect_init(&c));
    gid_v4(c.dgid.raw, 127, 0, 0, 52);
    c.dest_qp_num = b->qp.qp_num;
    c.sq_psn = psn_a;
    c.rq_psn = psn_b;
    MUST(w->s[0].dev, rxe_connect_rc(w->s[0].dev, a->qp, &c));
    gid_v4(c.dgid.raw, 127, 0, 0, 51);
    c.dest_qp_num = a->qp.qp_num;
    c.sq_psn = psn_b;
    c.rq_psn = psn_a;
    MUST(w->s[1].dev, rxe_connect_rc(w->s[1].dev, b->qp, &c));
}

static rxe_send_wr send_wr(uint64_t id, uint32_t opcode, const rxe_sge *sge) {
    rxe_send_wr wr;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = id;
    wr.opcode = opcode;
    wr.send_flags = RXE_SEND_SIGNALED;
    wr.sg_list = sge;
    wr.num_sge = sge ? 1 : 0;
    return wr;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static const uint64_t SECOND = 1000000000ull;

/* ---- scenarios ---- */

static void test_rc(void) {
    world w;
    world_init(&w, 64, NULL);
    rxe_device *da = w.s[0].dev, *db = w.s[1].dev;
    endpoint a, b;
    endpoint_init(da, &a, 256 * 1024);
    endpoint_init(db, &b, 256 * 1024);
    CHECK(a.qp.qp_num == 0x11 && b.qp.qp_num == 0x11, "first QPN is 0x11 (got %#x, %#x)",
          a.qp.qp_num, b.qp.qp_num);
    CHECK((a.mr.lkey >> 8) >= 1 && a.mr.lkey == a.mr.rkey, "key %#x: index and key byte", a.mr.lkey);
    connect_pair(&w, &a, &b, 0x100, 0x200);
    int st = -1;
    MUST(da, rxe_query_qp_state(da, a.qp, &st));
    CHECK(st == RXE_QPS_RTS, "QP state after connect: %d", st);

    /* SEND 4000 bytes with immediate data into a posted receive. */
    rxe_sge rs = {(uint64_t)(uintptr_t)b.buf, 8192, b.mr.lkey};
    rxe_recv_wr rr;
    rr.wr_id = 77;
    rr.sg_list = &rs;
    rr.num_sge = 1;
    MUST(db, rxe_post_recv(db, b.qp, &rr));
    fill(a.buf, 4000, 1);
    rxe_sge ss = {(uint64_t)(uintptr_t)a.buf, 4000, a.mr.lkey};
    rxe_send_wr wr = send_wr(1, RXE_WR_SEND_WITH_IMM, &ss);
    wr.imm_data = 0xdeadbeef;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    w.s[0].net.probe_dev = da;
    w.s[0].net.probe_host = w.s[0].host;
    rxe_wc wc;
    CHECK(wait_wc(&w, 1, b.cq, &wc, SECOND), "receive completion");
    CHECK(wc.wr_id == 77 && wc.status == 0 && wc.opcode == 128 && wc.byte_len == 4000,
          "recv wc: id %" PRIu64 " status %u opcode %u len %u", wc.wr_id, wc.status, wc.opcode,
          wc.byte_len);
    CHECK((wc.wc_flags & RXE_WC_WITH_IMM) && wc.imm_data == 0xdeadbeef, "imm %#x flags %#x",
          wc.imm_data, wc.wc_flags);
    CHECK(wc.src_qp == a.qp.qp_num && wc.qp_num == b.qp.qp_num, "qp numbers in the wc");
    CHECK(memcmp(a.buf, b.buf, 4000) == 0, "SEND data arrived");
    CHECK(w.s[0].net.probe_dev_rc == RXE_ERR_REENTRANT && w.s[0].net.probe_host_rc == RXE_ERR_REENTRANT,
          "calls from a callback are refused: %d %d", w.s[0].net.probe_dev_rc,
          w.s[0].net.probe_host_rc);
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.wr_id == 1 && wc.status == 0 && wc.opcode == 0,
          "send completion");

    /* RDMA WRITE 64 KiB to b + 64 KiB. */
    fill(a.buf, 65536, 2);
    ss.length = 65536;
    wr = send_wr(2, RXE_WR_RDMA_WRITE, &ss);
    wr.remote_addr = b.mr.addr + 65536;
    wr.rkey = b.mr.rkey;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.wr_id == 2 && wc.status == 0 && wc.opcode == 1,
          "write completion: status %u", wc.status);
    CHECK(memcmp(a.buf, b.buf + 65536, 65536) == 0, "WRITE data arrived");

    /* RDMA READ 64 KiB from b + 128 KiB into a + 64 KiB. */
    fill(b.buf + 131072, 65536, 3);
    rxe_sge rsg = {(uint64_t)(uintptr_t)(a.buf + 65536), 65536, a.mr.lkey};
    wr = send_wr(3, RXE_WR_RDMA_READ, &rsg);
    wr.remote_addr = b.mr.addr + 131072;
    wr.rkey = b.mr.rkey;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.wr_id == 3 && wc.status == 0 && wc.opcode == 2 &&
              wc.byte_len == 65536,
          "read completion: status %u len %u", wc.status, wc.byte_len);
    CHECK(memcmp(a.buf + 65536, b.buf + 131072, 65536) == 0, "READ data arrived");

    /* Atomics on an 8-byte word at b + 200 KiB. */
    uint64_t *word = (uint64_t *)(void *)(b.buf + 204800);
    *word = 100;
    rxe_sge as = {(uint64_t)(uintptr_t)(a.buf + 8), 8, a.mr.lkey};
    wr = send_wr(4, RXE_WR_ATOMIC_FETCH_AND_ADD, &as);
    wr.remote_addr = b.mr.addr + 204800;
    wr.rkey = b.mr.rkey;
    wr.compare_add = 5;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.status == 0 && wc.opcode == 4, "fetch-add wc");
    uint64_t old;
    memcpy(&old, a.buf + 8, 8);
    CHECK(old == 100 && *word == 105, "fetch-add: old %" PRIu64 ", now %" PRIu64, old, *word);
    wr = send_wr(5, RXE_WR_ATOMIC_CMP_AND_SWP, &as);
    wr.remote_addr = b.mr.addr + 204800;
    wr.rkey = b.mr.rkey;
    wr.compare_add = 105;
    wr.swap = 7;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.status == 0 && wc.opcode == 3, "cmp-swap wc");
    memcpy(&old, a.buf + 8, 8);
    CHECK(old == 105 && *word == 7, "cmp-swap: old %" PRIu64 ", now %" PRIu64, old, *word);

    /* Counters: packets both ways, nothing dropped; the first frame waited for ARP. */
    rxe_counters c;
    MUST(da, rxe_device_counters(da, &c));
    CHECK(c.sent_pkts > 64 && c.rcvd_pkts > 0, "sent %" PRIu64 " rcvd %" PRIu64, c.sent_pkts,
          c.rcvd_pkts);
    CHECK(c.tx_neighbour_pending >= 1, "a frame waited for the neighbour");
    CHECK(c.rx_delivered == c.rcvd_pkts && c.malformed == 0 && c.tx_queue_full == 0,
          "delivered %" PRIu64 " malformed %" PRIu64, c.rx_delivered, c.malformed);

    /* A WRITE with a bad rkey: REM_ACCESS_ERR (10), the QP to ERR, a fatal event, then the
     * next request flushes (5). */
    wr = send_wr(6, RXE_WR_RDMA_WRITE, &ss);
    wr.remote_addr = b.mr.addr;
    wr.rkey = b.mr.rkey ^ 0x80;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.wr_id == 6 && wc.status == 10,
          "bad rkey: status %u (want 10, REM_ACCESS_ERR)", wc.status);
    MUST(da, rxe_query_qp_state(da, a.qp, &st));
    CHECK(st == RXE_QPS_ERR, "QP in ERR after the error: %d", st);
    rxe_async_event ev;
    int got = 0, fatal = 0;
    while ((got = rxe_device_get_event(da, &ev)) == 1)
        if (ev.event_type == RXE_EVENT_QP_FATAL && ev.element == a.qp.qp_num) fatal = 1;
    CHECK(got == 0 && fatal, "QP fatal event");
    MUST(db, rxe_post_recv(db, b.qp, &rr));

    /* Refusals: typed codes, a detail string, and nothing changed. */
    CHECK(rxe_dealloc_pd(da, a.pd) == RXE_ERR_BUSY, "PD with a region and a QP is busy");
    CHECK(rxe_destroy_cq(da, a.cq) == RXE_ERR_BUSY, "CQ with a QP is busy");
    rxe_cq stale;
    stale.handle = 999;
    CHECK(rxe_poll_cq(da, stale, 1, &wc) == RXE_ERR_NOENT, "stale CQ handle");
    CHECK(strlen(rxe_device_last_error(da)) > 0, "a detail for the refusal");
    rxe_qp_attr qa;
    memset(&qa, 0, sizeof qa);
    qa.qp_state = RXE_QPS_RTS;
    rxe_qp fresh;
    rxe_qp_init_attr ia = rc_attr(a.pd, a.cq);
    MUST(da, rxe_create_qp(da, &ia, &fresh));
    CHECK(rxe_modify_qp(da, fresh, &qa, RXE_QP_STATE) == RXE_ERR_QP_ATTR,
          "RESET -> RTS is refused");
    CHECK(rxe_post_send(da, fresh, &wr) == RXE_ERR_QP_STATE, "posting to a QP in RESET");
    ia.qp_type = 99;
    CHECK(rxe_create_qp(da, &ia, &fresh) == RXE_ERR_INVAL, "bad QP type");
    CHECK(rxe_reg_mr(da, a.pd, NULL, 64, RXE_ACCESS_LOCAL_WRITE, &a.mr) == RXE_ERR_INVAL,
          "NULL region");
    CHECK(rxe_device_rx(da, w.now, (const uint8_t *)"short", 5) == RXE_OK, "runt frame taken");
    MUST(da, rxe_device_counters(da, &c));
    CHECK(c.rx_truncated == 1, "runt counted as truncated: %" PRIu64, c.rx_truncated);

    /* Device and port attributes, GIDs. */
    rxe_device_attr at;
    MUST(da, rxe_query_device(da, &at));
    CHECK(at.max_qp == 1024 && at.max_sge >= 1 && at.max_srq >= 1 && at.max_qp_wr >= 16,
          "device attributes");
    CHECK((at.node_guid >> 40) == 0x00007f && ((at.node_guid >> 24) & 0xffff) == 0xfffe,
          "node GUID from the MAC: %#" PRIx64, at.node_guid);
    rxe_port_attr pa;
    MUST(da, rxe_query_port(da, &pa));
    CHECK(pa.state == RXE_PORT_ACTIVE && pa.active_mtu == RXE_MTU_1024 && pa.gid_tbl_len == 1,
          "port: state %d mtu %d gids %d", pa.state, pa.active_mtu, pa.gid_tbl_len);
    HMUST(w.s[0].host, rxe_netdev_add_addr(w.s[0].host, "eth0", "fe80::7f00:33"));
    HMUST(w.s[0].host, rxe_netdev_set_mtu(w.s[0].host, "eth0", 9000));
    HMUST(w.s[0].host, rxe_netdev_set_link(w.s[0].host, "eth0", 0));
    MUST(da, rxe_query_port(da, &pa));
    CHECK(pa.state == RXE_PORT_DOWN && pa.active_mtu == RXE_MTU_4096 && pa.gid_tbl_len == 2,
          "port follows the netdev: state %d mtu %d gids %d", pa.state, pa.active_mtu,
          pa.gid_tbl_len);
    rxe_gid g;
    MUST(da, rxe_query_gid(da, 0, &g));
    CHECK(g.raw[0] == 0xfe && g.raw[1] == 0x80, "link-local GID first");
    MUST(da, rxe_query_gid(da, 1, &g));
    CHECK(g.raw[10] == 0xff && g.raw[11] == 0xff && g.raw[15] == 51, "IPv4-mapped GID");
    CHECK(rxe_query_gid(da, 2, &g) == RXE_ERR_NOENT, "past the GID table");

    world_free(&w); /* the registrations end with the hosts; then the memory is ours again */
    free(a.buf);
    free(b.buf);
    printf("rc: SEND+imm 4000 B, WRITE 64 KiB, READ 64 KiB, FETCH_ADD, CMP_SWP checked; "
           "errors and attributes checked\n");
}

static void to_rts_ud(rxe_device *d, rxe_qp qp, uint32_t qkey) {
    rxe_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = RXE_QPS_INIT;
    a.qkey = qkey;
    a.port_num = 1;
    MUST(d, rxe_modify_qp(d, qp, &a, RXE_QP_STATE | RXE_QP_QKEY | RXE_QP_PORT | RXE_QP_PKEY_INDEX));
    a.qp_state = RXE_QPS_RTR;
    MUST(d, rxe_modify_qp(d, qp, &a, RXE_QP_STATE));
    a.qp_state = RXE_QPS_RTS;
    a.sq_psn = 0;
    MUST(d, rxe_modify_qp(d, qp, &a, RXE_QP_STATE | RXE_QP_SQ_PSN));
}

static void test_ud_srq(void) {
    world w;
    world_init(&w, 64, NULL);
    rxe_device *da = w.s[0].dev, *db = w.s[1].dev;
    size_t len = 16384;
    uint8_t *ba = (uint8_t *)malloc(len), *bb = (uint8_t *)calloc(1, len);
    rxe_pd pa, pb;
    rxe_mr ma, mb;
    rxe_cq ca, cb;
    rxe_srq srq;
    rxe_ah ah;
    MUST(da, rxe_alloc_pd(da, &pa));
    MUST(db, rxe_alloc_pd(db, &pb));
    MUST(da, rxe_reg_mr(da, pa, ba, len, RXE_ACCESS_LOCAL_WRITE, &ma));
    MUST(db, rxe_reg_mr(db, pb, bb, len, RXE_ACCESS_LOCAL_WRITE, &mb));
    MUST(da, rxe_create_cq(da, 16, &ca));
    MUST(db, rxe_create_cq(db, 16, &cb));
    MUST(db, rxe_create_srq(db, pb, &srq));
    rxe_qp_init_attr ia;
    memset(&ia, 0, sizeof ia);
    ia.qp_type = RXE_QPT_UD;
    ia.pd = pa;
    ia.send_cq = ca;
    ia.recv_cq = ca;
    rxe_qp qa, qb;
    MUST(da, rxe_create_qp(da, &ia, &qa));
    ia.pd = pb;
    ia.send_cq = cb;
    ia.recv_cq = cb;
    ia.srq = srq;
    MUST(db, rxe_create_qp(db, &ia, &qb));
    to_rts_ud(da, qa, 0x11111111);
    to_rts_ud(db, qb, 0x11111111);
    /* Four receives of 40 + 1024 bytes in the SRQ, limit armed at 4: the first datagram fires it. */
    for (int i = 0; i < 4; i++) {
        rxe_sge s = {(uint64_t)(uintptr_t)(bb + i * 2048), 2048, mb.lkey};
        rxe_recv_wr r;
        r.wr_id = 500 + (uint64_t)i;
        r.sg_list = &s;
        r.num_sge = 1;
        MUST(db, rxe_post_srq_recv(db, srq, &r));
    }
    MUST(db, rxe_modify_srq_limit(db, srq, 4));
    uint32_t queued = 0, limit = 0;
    MUST(db, rxe_query_srq(db, srq, &queued, &limit));
    CHECK(queued == 4 && limit == 4, "srq %u queued, limit %u", queued, limit);
    CHECK(rxe_post_recv(db, qb, NULL) == RXE_ERR_INVAL, "NULL wr");
    rxe_ah_attr aa;
    memset(&aa, 0, sizeof aa);
    gid_v4(aa.dgid.raw, 127, 0, 0, 52);
    aa.hop_limit = 64;
    MUST(da, rxe_create_ah(da, pa, &aa, &ah));
    fill(ba, 1024, 9);
    rxe_sge s = {(uint64_t)(uintptr_t)ba, 1024, ma.lkey};
    rxe_send_wr wr = send_wr(9, RXE_WR_SEND, &s);
    wr.ah = ah;
    wr.remote_qpn = qb.qp_num;
    wr.remote_qkey = 0x11111111;
    MUST(da, rxe_post_send(da, qa, &wr));
    rxe_wc wc;
    CHECK(wait_wc(&w, 1, cb, &wc, SECOND), "UD receive");
    CHECK(wc.wr_id == 500 && wc.status == 0 && wc.byte_len == 40 + 1024 && (wc.wc_flags & RXE_WC_GRH) &&
              wc.src_qp == qa.qp_num,
          "UD wc: id %" PRIu64 " status %u len %u flags %#x", wc.wr_id, wc.status, wc.byte_len,
          wc.wc_flags);
    CHECK(memcmp(bb + 40, ba, 1024) == 0, "UD data after the 40-byte GRH area");
    rxe_async_event ev;
    CHECK(rxe_device_get_event(db, &ev) == 1 && ev.event_type == RXE_EVENT_SRQ_LIMIT_REACHED &&
              ev.element == srq.handle,
          "SRQ limit event");
    CHECK(rxe_destroy_srq(db, srq) == RXE_ERR_BUSY, "SRQ with a QP is busy");
    MUST(db, rxe_destroy_qp(db, qb));
    MUST(db, rxe_destroy_srq(db, srq));
    MUST(da, rxe_destroy_ah(da, ah));
    CHECK(rxe_destroy_ah(da, ah) == RXE_ERR_NOENT, "AH destroyed twice");
    world_free(&w);
    free(ba);
    free(bb);
    printf("ud+srq: 1024-byte datagram through an AH into an SRQ, limit event checked\n");
}

static int test_params(void) {
    rxe_host *h = rxe_host_new(1);
    int m = -1;
    uint64_t v = 1;
    HMUST(h, rxe_param_set(h, "control_method", "ni1 watermark"));
    HMUST(h, rxe_param_set(h, "control_value", "ni1 45000\n"));
    CHECK(rxe_param_set(h, "control_method", "ni1 fastest") == RXE_ERR_SYNTAX, "bad method");
    CHECK(strstr(rxe_host_last_error(h), "fastest") != NULL, "detail names the bad string: %s",
          rxe_host_last_error(h));
    CHECK(rxe_param_set(h, "control_value", "ni1 -3") == RXE_ERR_INVAL, "bad value");
    CHECK(rxe_param_set(h, "control_value", "ni1") == RXE_ERR_SYNTAX, "no value");
    CHECK(rxe_param_set(h, "frobnicate", "x") == RXE_ERR_NOENT, "unknown parameter");
    CHECK(rxe_netdev_add_addr(h, "eth0", "10.0.0.999") == RXE_ERR_INVAL &&
              strstr(rxe_host_last_error(h), "10.0.0.999") != NULL,
          "a bad address is refused with its detail: %s", rxe_host_last_error(h));
    HMUST(h, rxe_control_get(h, "ni1", &m, &v));
    CHECK(m == RXE_CONTROL_WATERMARK && v == 45000, "old setting kept: %d %" PRIu64, m, v);
    CHECK(rxe_link_command(h, "rdma link add rxe0 type rxe netdev eth9") == RXE_ERR_NORES,
          "link on an unknown netdev");
    CHECK(rxe_link_command(h, "rdma link add rxe0 type ipoib netdev eth0") == RXE_ERR_SYNTAX,
          "wrong link type");
    CHECK(rxe_link_command(h, "rdma link delete rxe7") == RXE_ERR_NOENT, "no such link");
    CHECK(rxe_param_set(h, "remove", "rxe7") == RXE_ERR_NOENT, "remove: no such link");
    CHECK(rxe_device_get(h, "rxe0") == NULL, "no device before a link");
    rxe_host_free(h);
    rxe_host_free(NULL);
    printf("params: bad strings refused with codes and details, old settings kept\n");
    return 0;
}

static void test_link_lifecycle(void) {
    world w;
    world_init(&w, 64, NULL);
    rxe_host *h = w.s[0].host;
    char names[64];
    CHECK(rxe_link_list(h, names, sizeof names) == 1 && strcmp(names, "rxe0") == 0, "one link rxe0");
    CHECK(rxe_link_command(h, "rdma link add rxe1 type rxe netdev eth0") == RXE_ERR_EXIST,
          "second link on one netdev");
    CHECK(rxe_netdev_unregister(h, "eth0") == RXE_ERR_BUSY, "netdev with a link");
    HMUST(h, rxe_link_command(h, "rdma link delete rxe0"));
    CHECK(rxe_device_get(h, "rxe0") == NULL, "link gone");
    CHECK(rxe_link_list(h, names, sizeof names) == 0, "no links");
    HMUST(h, rxe_param_set(h, "add", "eth0"));
    CHECK(rxe_device_get(h, "rxe0") != NULL, "param add made rxe0 again");
    HMUST(h, rxe_param_set(h, "remove", "rxe0"));
    HMUST(h, rxe_netdev_unregister(h, "eth0"));
    world_free(&w);
    printf("links: add/delete by command and by parameter, refusals checked\n");
}

/* Transmission control: A WRITEs `total` bytes to B in 64 KiB messages over a 16-frame queue. */
typedef struct {
    double seconds, mbit;
    uint64_t queue_full, held;
    size_t max_depth;
} tc_result;

static tc_result tc_run(const char *method, const char *value, size_t total) {
    world w;
    world_init(&w, 16, NULL);
    rxe_device *da = w.s[0].dev, *db = w.s[1].dev;
    char buf[64];
    if (method) {
        snprintf(buf, sizeof buf, "eth0 %s", method);
        HMUST(w.s[0].host, rxe_param_set(w.s[0].host, "control_method", buf));
        snprintf(buf, sizeof buf, "eth0 %s", value);
        HMUST(w.s[0].host, rxe_param_set(w.s[0].host, "control_value", buf));
    }
    endpoint a, b;
    endpoint_init(da, &a, 1 << 20);
    endpoint_init(db, &b, 1 << 20);
    connect_pair(&w, &a, &b, 1, 2);
    fill(a.buf, 1 << 20, 5);
    size_t msgs = total / 65536;
    size_t posted = 0, done = 0;
    rxe_wc wc;
    uint64_t t0 = w.now;
    while (done < msgs) {
        while (posted < msgs && posted - done < 16) {
            size_t off = (posted % 16) * 65536;
            rxe_sge s = {(uint64_t)(uintptr_t)(a.buf + off), 65536, a.mr.lkey};
            rxe_send_wr wr = send_wr(posted, RXE_WR_RDMA_WRITE, &s);
            wr.remote_addr = b.mr.addr + off;
            wr.rkey = b.mr.rkey;
            MUST(da, rxe_post_send(da, a.qp, &wr));
            posted++;
        }
        if (!wait_wc(&w, 0, a.cq, &wc, 10 * SECOND)) {
            CHECK(0, "%s: WRITE %zu never completed", method ? method : "none", done);
            break;
        }
        CHECK(wc.status == 0, "WRITE status %u", wc.status);
        done++;
    }
    CHECK(memcmp(a.buf, b.buf, 1 << 20) == 0, "%s: every byte arrived", method ? method : "none");
    rxe_counters c;
    MUST(da, rxe_device_counters(da, &c));
    tc_result r;
    nic *n = &w.s[0].net;
    r.seconds = (double)(w.now - t0) / 1e9;
    r.mbit = n->last_dep > n->first_dep
                 ? (double)n->wire_bytes * 8 / ((double)(n->last_dep - n->first_dep) / 1e3)
                 : 0;
    r.queue_full = c.tx_queue_full;
    r.held = c.tx_held_by_control;
    r.max_depth = n->max_depth;
    CHECK(c.tx_queue_full == n->refused, "counter %" PRIu64 " = refusals %" PRIu64,
          c.tx_queue_full, n->refused);
    world_free(&w); /* the registrations end with the hosts; then the memory is ours again */
    free(a.buf);
    free(b.buf);
    return r;
}

static void test_tx_control(void) {
    size_t total = 4u << 20;
    tc_result none = tc_run(NULL, NULL, total);
    printf("tx control none:       %7.1f Mbit/s on the wire, queue max %2zu/16, %" PRIu64
           " queue-full refusals (frames kept, none lost)\n",
           none.mbit, none.max_depth, none.queue_full);
    CHECK(none.queue_full > 0, "without control a 16-frame queue overflows");
    tc_result wm = tc_run("watermark", "8", total);
    printf("tx control watermark 8: %6.1f Mbit/s, queue max %2zu/16, %" PRIu64
           " refusals, %" PRIu64 " holds\n",
           wm.mbit, wm.max_depth, wm.queue_full, wm.held);
    CHECK(wm.queue_full == 0 && wm.max_depth <= 8, "watermark: refusals %" PRIu64 ", depth %zu",
          wm.queue_full, wm.max_depth);
    CHECK(wm.mbit > 900, "watermark keeps the line busy: %.1f Mbit/s", wm.mbit);
    const uint64_t rates[2] = {100000000ull, 500000000ull};
    for (int i = 0; i < 2; i++) {
        char v[32];
        snprintf(v, sizeof v, "%" PRIu64, rates[i]);
        tc_result bw = tc_run("bandwidth", v, total);
        double want = (double)rates[i] / 1e6;
        printf("tx control bandwidth %4.0f Mbit/s: %6.1f Mbit/s (%+.2f%%), queue max %2zu/16, %" PRIu64
               " refusals\n",
               want, bw.mbit, (bw.mbit / want - 1) * 100, bw.max_depth, bw.queue_full);
        CHECK(bw.queue_full == 0, "bandwidth: %" PRIu64 " refusals", bw.queue_full);
        CHECK(bw.mbit > want * 0.95 && bw.mbit < want * 1.05, "bandwidth %.1f within 5%% of %.0f",
              bw.mbit, want);
    }
}


/* Memory windows (type 2, bound through a QP and invalidated), ATOMIC WRITE and FLUSH. */
static void test_mw_flush(void) {
    world w;
    world_init(&w, 64, NULL);
    rxe_device *da = w.s[0].dev, *db = w.s[1].dev;
    endpoint a, b;
    endpoint_init(da, &a, 65536);
    endpoint_init(db, &b, 65536);
    connect_pair(&w, &a, &b, 7, 9);
    rxe_wc wc;
    /* B binds a window on [4096, 8192) of its region, REMOTE_WRITE only. */
    uint32_t mw = 0;
    MUST(db, rxe_alloc_mw(db, b.pd, RXE_MW_TYPE_2, &mw));
    CHECK(rxe_alloc_mw(db, b.pd, 3, &mw) == RXE_ERR_INVAL, "bad window type");
    rxe_send_wr bind = send_wr(20, RXE_WR_BIND_MW, NULL);
    bind.bind.mw_rkey = mw;
    bind.bind.new_rkey = rxe_inc_rkey(mw);
    bind.bind.mr_lkey = b.mr.lkey;
    bind.bind.access = RXE_ACCESS_REMOTE_WRITE;
    bind.bind.addr = b.mr.addr + 4096;
    bind.bind.length = 4096;
    MUST(db, rxe_post_send(db, b.qp, &bind));
    CHECK(wait_wc(&w, 1, b.cq, &wc, SECOND) && wc.wr_id == 20 && wc.status == 0 && wc.opcode == 5,
          "bind completion: status %u opcode %u", wc.status, wc.opcode);
    uint32_t wkey = bind.bind.new_rkey;
    CHECK((wkey >> 8) == (mw >> 8) && wkey != mw, "same index, new key byte");
    /* A WRITE through the window lands. */
    fill(a.buf, 1000, 21);
    rxe_sge s = {(uint64_t)(uintptr_t)a.buf, 1000, a.mr.lkey};
    rxe_send_wr wr = send_wr(21, RXE_WR_RDMA_WRITE, &s);
    wr.remote_addr = b.mr.addr + 4096;
    wr.rkey = wkey;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.status == 0, "WRITE through the window: %u", wc.status);
    CHECK(memcmp(a.buf, b.buf + 4096, 1000) == 0, "window data landed");
    /* ATOMIC WRITE of 8 bytes, then FLUSH of the range to global visibility. */
    const uint64_t v = 0x1122334455667788ull;
    memcpy(a.buf + 2048, &v, 8);
    rxe_sge s8 = {(uint64_t)(uintptr_t)(a.buf + 2048), 8, a.mr.lkey};
    wr = send_wr(22, RXE_WR_ATOMIC_WRITE, &s8);
    wr.remote_addr = b.mr.addr + 16384;
    wr.rkey = b.mr.rkey;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.status == 0 && wc.opcode == 9,
          "atomic write: status %u opcode %u", wc.status, wc.opcode);
    CHECK(memcmp(b.buf + 16384, &v, 8) == 0, "atomic write landed");
    wr = send_wr(23, RXE_WR_FLUSH, NULL);
    wr.remote_addr = b.mr.addr;
    wr.rkey = b.mr.rkey;
    wr.flush_len = 32768;
    wr.flush_type = 1;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.status == 0 && wc.opcode == 8,
          "flush: status %u opcode %u", wc.status, wc.opcode);
    /* B invalidates the window; A's next WRITE through it is refused (REM_ACCESS_ERR). */
    rxe_send_wr inv = send_wr(24, RXE_WR_LOCAL_INV, NULL);
    inv.invalidate_rkey = wkey;
    MUST(db, rxe_post_send(db, b.qp, &inv));
    CHECK(wait_wc(&w, 1, b.cq, &wc, SECOND) && wc.wr_id == 24 && wc.status == 0, "local invalidate");
    wr = send_wr(25, RXE_WR_RDMA_WRITE, &s);
    wr.remote_addr = b.mr.addr + 4096;
    wr.rkey = wkey;
    MUST(da, rxe_post_send(da, a.qp, &wr));
    CHECK(wait_wc(&w, 0, a.cq, &wc, SECOND) && wc.wr_id == 25 && wc.status == 10,
          "WRITE through an invalidated window: status %u", wc.status);
    CHECK(rxe_dealloc_mw(db, mw) == RXE_ERR_NOENT, "the pre-bind rkey no longer names the window");
    MUST(db, rxe_dealloc_mw(db, wkey));
    world_free(&w);
    free(a.buf);
    free(b.buf);
    printf("mw+flush: type 2 window bound, written through, invalidated; ATOMIC WRITE and FLUSH checked\n");
}

/* Waits for an event of `type` on side `i` (other events are skipped); 1 if it came. */
static int wait_event(world *w, int i, int type, rxe_async_event *ev) {
    for (int round = 0; round < 2000; round++) {
        int got;
        while ((got = rxe_device_get_event(w->s[i].dev, ev)) == 1)
            if (ev->event_type == type) return 1;
        MUST(w->s[i].dev, got);
        if (run(w, 1000000) == 0) {
            /* idle: step to the next CM timer, if any */
            uint64_t d;
            if (rxe_device_poll(w->s[i].dev, w->now, &d) == 1 && d > w->now) w->now = d;
            else if (rxe_device_poll(w->s[1 - i].dev, w->now, &d) == 1 && d > w->now) w->now = d;
        }
    }
    return 0;
}

/* Connections the rdma_cm way: listen, connect with private data, accept, a SEND over it,
 * disconnect; and a connection to a port nobody listens on is rejected. */
static void test_cm(void) {
    world w;
    world_init(&w, 64, NULL);
    rxe_device *da = w.s[0].dev, *db = w.s[1].dev;
    endpoint a, b;
    endpoint_init(da, &a, 8192);
    endpoint_init(db, &b, 8192);
    MUST(db, rxe_cm_listen(db, 7174));
    CHECK(rxe_cm_listen(db, 7174) < 0, "listening twice on a port is refused");
    rxe_gid dst;
    gid_v4(dst.raw, 127, 0, 0, 52);
    uint32_t conn = 0, sconn = 0;
    const char hello[] = "hello from the active side";
    MUST(da, rxe_cm_connect(da, w.now, a.qp, &dst, 7174, 40001, 1, 1, hello, sizeof hello, &conn));
    rxe_async_event ev;
    CHECK(wait_event(&w, 1, RXE_EVENT_CM_CONNECT_REQUEST, &ev), "connect request");
    CHECK(ev.port == 7174 && ev.src_port == 40001 && ev.remote_qpn == a.qp.qp_num &&
              ev.src.raw[15] == 51 && ev.private_data_len >= sizeof hello &&
              memcmp(ev.private_data, hello, sizeof hello) == 0,
          "request: port %u from %u, qpn %#x, %u bytes of private data", ev.port, ev.src_port,
          ev.remote_qpn, ev.private_data_len);
    sconn = ev.element;
    const char welcome[] = "welcome";
    MUST(db, rxe_cm_accept(db, w.now, sconn, b.qp, 1, 1, welcome, sizeof welcome));
    int got_reply = wait_event(&w, 0, RXE_EVENT_CM_CONNECT_REPLY, &ev);
    CHECK(got_reply && ev.element == conn &&
              ev.remote_qpn == b.qp.qp_num && memcmp(ev.private_data, welcome, sizeof welcome) == 0,
          "connect reply with the passive side's private data");
    CHECK(wait_event(&w, 1, RXE_EVENT_CM_ESTABLISHED, &ev) && ev.element == sconn, "established");
    int st = -1;
    MUST(da, rxe_query_qp_state(da, a.qp, &st));
    CHECK(st == RXE_QPS_RTS, "active QP in RTS: %d", st);
    MUST(db, rxe_query_qp_state(db, b.qp, &st));
    CHECK(st == RXE_QPS_RTS, "passive QP in RTS: %d", st);
    /* A SEND over the connection. */
    rxe_sge rs = {(uint64_t)(uintptr_t)b.buf, 4096, b.mr.lkey};
    rxe_recv_wr rr;
    rr.wr_id = 5;
    rr.sg_list = &rs;
    rr.num_sge = 1;
    MUST(db, rxe_post_recv(db, b.qp, &rr));
    fill(a.buf, 3000, 11);
    rxe_sge ss = {(uint64_t)(uintptr_t)a.buf, 3000, a.mr.lkey};
    rxe_send_wr wr = send_wr(6, RXE_WR_SEND, &ss);
    MUST(da, rxe_post_send(da, a.qp, &wr));
    rxe_wc wc;
    CHECK(wait_wc(&w, 1, b.cq, &wc, SECOND) && wc.status == 0 && wc.byte_len == 3000 &&
              memcmp(a.buf, b.buf, 3000) == 0,
          "SEND over the CM connection");
    /* Disconnect: both sides hear it, the QPs go to ERR. */
    MUST(da, rxe_cm_disconnect(da, w.now, conn));
    CHECK(wait_event(&w, 1, RXE_EVENT_CM_DISCONNECTED, &ev) && ev.element == sconn, "passive disconnected");
    CHECK(wait_event(&w, 0, RXE_EVENT_CM_DISCONNECTED, &ev) && ev.element == conn, "active disconnected");
    MUST(db, rxe_query_qp_state(db, b.qp, &st));
    CHECK(st == RXE_QPS_ERR, "passive QP in ERR after the disconnect: %d", st);
    /* Nobody listens on 7175: REJ reason 8 (invalid service ID), as Linux answers. */
    rxe_qp q2;
    rxe_qp_init_attr ia = rc_attr(a.pd, a.cq);
    MUST(da, rxe_create_qp(da, &ia, &q2));
    MUST(da, rxe_cm_connect(da, w.now, q2, &dst, 7175, 40002, 1, 1, NULL, 0, &conn));
    CHECK(wait_event(&w, 0, RXE_EVENT_CM_REJECTED, &ev) && ev.element == conn && ev.reason == 8,
          "rejected: reason %u", ev.reason);
    CHECK(rxe_cm_accept(da, w.now, 999, q2, 1, 1, NULL, 0) == RXE_ERR_INVAL, "accept of no request");
    world_free(&w);
    free(a.buf);
    free(b.buf);
    printf("cm: listen, connect with private data, accept, SEND, disconnect, reject (reason 8) checked\n");
}

/* --frame: the first RC WRITE frame, parameters from the command line. */
static int write_frame(const char *path, uint32_t rkey, uint64_t va, uint32_t psn) {
    rxe_link_config cfg;
    MUST(NULL, rxe_link_config_init(&cfg));
    cfg.udp_sport = 4791; /* a UDP-socket host sends from its bound port */
    cfg.ipv4_ident_step = 0; /* and its kernel's Identification 0 */
    world w;
    world_init(&w, 64, &cfg);
    endpoint a, b;
    endpoint_init(w.s[0].dev, &a, 4096);
    endpoint_init(w.s[1].dev, &b, 4096);
    connect_pair(&w, &a, &b, psn, 0x200);
    w.s[0].net.capture_opcode = 0x0a; /* RC RDMA WRITE ONLY */
    for (int i = 0; i < 256; i++) a.buf[i] = (uint8_t)i;
    rxe_sge s = {(uint64_t)(uintptr_t)a.buf, 256, a.mr.lkey};
    rxe_send_wr wr = send_wr(1, RXE_WR_RDMA_WRITE, &s);
    wr.remote_addr = va;
    wr.rkey = rkey;
    MUST(w.s[0].dev, rxe_post_send(w.s[0].dev, a.qp, &wr));
    run(&w, SECOND / 1000);
    nic *n = &w.s[0].net;
    CHECK(n->captured_len > 0, "a WRITE frame was sent");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "open %s", path);
    if (f && n->captured_len) {
        uint32_t gh[6] = {0xa1b2c3d4u, 0x00040002u, 0, 0, 65535, 1};
        uint32_t rh[4] = {0, 0, (uint32_t)n->captured_len, (uint32_t)n->captured_len};
        fwrite(gh, 4, 6, f);
        fwrite(rh, 4, 4, f);
        fwrite(n->captured, 1, n->captured_len, f);
    }
    if (f) fclose(f);
    world_free(&w); /* the registrations end with the hosts; then the memory is ours again */
    free(a.buf);
    free(b.buf);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 9 && strcmp(argv[1], "--frame") == 0) {
        return write_frame(argv[2], (uint32_t)strtoul(argv[4], NULL, 0),
                           (uint64_t)strtoull(argv[6], NULL, 0), (uint32_t)strtoul(argv[8], NULL, 0));
    }
    test_params();
    test_link_lifecycle();
    test_rc();
    test_ud_srq();
    test_cm();
    test_mw_flush();
    test_tx_control();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("c host: every check passed\n");
    return 0;
}
