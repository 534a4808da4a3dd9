/*
 * A floor for any proxy, in the HTTP fronts benchmark: a TCP relay in C with one epoll loop,
 * edge-triggered as nginx's, copying bytes between each client connection and a new
 * connection to the target port, parsing nothing. What it costs per request is almost all the
 * kernel's loopback TCP, which every front pays. The end of either side, once what came before
 * it is passed on, closes both (no half-closed connections). Prints
 * {"event":"listening","port":N} once it accepts on 127.0.0.1; exits on SIGTERM.
 *
 *   cc -O2 -o c-relay bench/programs/c-relay.c && ./c-relay TARGET_PORT
 *
 * The benchmark builds it itself (bench/support/c-relay.ts) and skips it, saying why, without cc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF = 64 * 1024, EVENTS = 64 };

/* One direction of a relayed pair: bytes read from fd wait in buf until the peer takes them. */
struct side {
  int fd;
  struct side *peer;
  char buf[BUF];
  size_t off, len;
  int owed; /* a read is due once the peer takes buf: the socket may hold more */
  int hup;  /* the other end closed: read to the end, which no later edge announces */
  int dead;
  struct side *next_dead;
};

static struct side *graveyard;

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

/* Writes what src holds to its peer; -1 when the peer is gone. */
static int flush(struct side *src) {
  while (src->len > 0) {
    ssize_t n = write(src->peer->fd, src->buf + src->off, src->len);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    src->off += n;
    src->len -= n;
  }
  src->off = 0;
  return 0;
}

/*
 * Moves bytes from src to its peer until src is drained or the peer is full. `more`: the
 * socket may hold bytes not read yet. An edge that comes while buf waits for the peer raises no
 * other, so the read it asks for is owed until the peer is writable again.
 */
static int pump(struct side *src, int more) {
  for (;;) {
    if (flush(src) < 0) return -1;
    if (src->len > 0) {
      src->owed |= more;
      return 0;
    }
    if (!more) return 0;
    ssize_t n = read(src->fd, src->buf, BUF);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n == 0) return -1;
    src->len = n;
    /* A short read took all there was; the next arrival raises a new edge. */
    more = n == BUF || src->hup;
  }
}

static void bury(struct side *s) {
  if (s->dead) return;
  s->dead = s->peer->dead = 1;
  close(s->fd);
  close(s->peer->fd);
  struct side *first = s < s->peer ? s : s->peer; /* the pair's allocation */
  first->next_dead = graveyard; /* freed after the batch, which may still name the pair */
  graveyard = first;
}

static void relay(int ep, int client, int target) {
  int one = 1;
  int upstream = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in to = loopback(target);
  struct side *pair = calloc(2, sizeof *pair);
  if (upstream < 0 || pair == NULL ||
      (connect(upstream, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS)) {
    close(client);
    if (upstream >= 0) close(upstream);
    free(pair);
    return;
  }
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  pair[0].fd = client;
  pair[1].fd = upstream;
  pair[0].peer = &pair[1];
  pair[1].peer = &pair[0];
  for (int i = 0; i < 2; i++) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
    ev.data.ptr = &pair[i];
    epoll_ctl(ep, EPOLL_CTL_ADD, pair[i].fd, &ev);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: c-relay TARGET_PORT\n");
    return 2;
  }
  int target = atoi(argv[1]);
  signal(SIGPIPE, SIG_IGN);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in at = loopback(0);
  socklen_t size = sizeof at;
  if (listener < 0 || bind(listener, (struct sockaddr *)&at, sizeof at) < 0 ||
      listen(listener, 511) < 0 || getsockname(listener, (struct sockaddr *)&at, &size) < 0) {
    perror("c-relay: listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.ptr = NULL;
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  printf("{\"event\":\"listening\",\"port\":%d}\n", ntohs(at.sin_port));
  fflush(stdout);
  struct epoll_event events[EVENTS];
  for (;;) {
    int count = epoll_wait(ep, events, EVENTS, -1);
    if (count < 0 && errno != EINTR) return 1;
    for (int i = 0; i < count; i++) {
      struct side *s = events[i].data.ptr;
      if (s == NULL) {
        int client;
        while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          relay(ep, client, target);
        }
        continue;
      }
      if (s->dead) continue;
      uint32_t what = events[i].events;
      /* Writable again: what the peer read for s goes out, then the peer reads what it owes. */
      if ((what & EPOLLOUT) && s->peer->len > 0) {
        int owed = s->peer->owed;
        s->peer->owed = 0;
        if (pump(s->peer, owed) < 0) bury(s);
      }
      /* An edge not taken now is not raised again: read whenever this one says so. */
      if (what & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->hup = 1;
      if (!s->dead && (what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && pump(s, 1) < 0) {
        bury(s);
      }
    }
    while (graveyard != NULL) {
      struct side *pair = graveyard;
      graveyard = pair->next_dead;
      free(pair);
    }
  }
}
