/*
 * The impaired link of the hop tests: bound to an iptables NFQUEUE queue in
 * the router's namespace, it drops forwarded packets chosen by a seeded
 * PRNG (xorshift32), so a run is repeatable and the test knows exactly
 * what was dropped. This kernel has no sch_netem; NFQUEUE is what it has.
 *
 *   impair QUEUE SEED PERMILLE SECONDS
 *
 * Drops a packet when the PRNG's next value mod 1000 is below PERMILLE.
 * Prints "ready" once bound, then one line per packet: "drop|pass SSRC SEQ"
 * for IPv4 UDP packets carrying at least an RTP header ("drop|pass - -" for
 * others). Exits after SECONDS (alarm) so a forgotten one cannot linger.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static uint32_t state;
static unsigned permille;

static uint32_t next_random(void) {
  uint32_t x = state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return state = x;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  uint32_t id = ph ? ntohl(ph->packet_id) : 0;
  unsigned char *p = NULL;
  int len = nfq_get_payload(nfa, &p);
  int drop = (next_random() % 1000) < permille;
  const char *what = drop ? "drop" : "pass";
  if (len >= 20 && (p[0] >> 4) == 4) {
    int ihl = (p[0] & 15) * 4;
    if (p[9] == 17 && len >= ihl + 8 + 12) {
      const unsigned char *r = p + ihl + 8;
      uint32_t ssrc = ((uint32_t)r[8] << 24) | ((uint32_t)r[9] << 16) | ((uint32_t)r[10] << 8) | r[11];
      printf("%s %u %u\n", what, ssrc, (unsigned)((r[2] << 8) | r[3]));
    } else
      printf("%s - -\n", what);
  } else
    printf("%s - -\n", what);
  fflush(stdout);
  return nfq_set_verdict(qh, id, drop ? NF_DROP : NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: impair QUEUE SEED PERMILLE SECONDS\n");
    return 2;
  }
  int queue = atoi(argv[1]);
  state = (uint32_t)strtoul(argv[2], NULL, 10);
  if (state == 0) state = 1;
  permille = (unsigned)atoi(argv[3]);
  alarm((unsigned)atoi(argv[4]));
  struct nfq_handle *h = nfq_open();
  if (!h) {
    perror("nfq_open");
    return 1;
  }
  if (nfq_bind_pf(h, AF_INET) < 0) {
    perror("nfq_bind_pf");
    return 1;
  }
  struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, &on_packet, NULL);
  if (!qh) {
    perror("nfq_create_queue");
    return 1;
  }
  if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0) {
    perror("nfq_set_mode");
    return 1;
  }
  int fd = nfq_fd(h);
  static char buf[65536];
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int rv = (int)recv(fd, buf, sizeof buf, 0);
    if (rv >= 0) {
      nfq_handle_packet(h, buf, rv);
      continue;
    }
    // The kernel dropped queued messages (we were slow): what was queued is lost either way; keep going.
    if (errno == ENOBUFS || errno == EINTR) continue;
    perror("recv");
    break;
  }
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
