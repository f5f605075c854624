/* vmflood: the guest's side of tests/vm_flood.rs (busybox has no flooder).
 * Built static by the test: gcc -O2 -static -o vmflood vmflood.c, and
 * passed to run-guest.sh with --add (it lands in /opt/).
 *
 *   vmflood xfer HOST PORT STOPFILE COUNTFILE KBPS
 *       a long TCP transfer: pseudo-random bytes (xorshift64) at KBPS
 *       kilobytes per second until STOPFILE exists, the running byte count
 *       in COUNTFILE; then shuts down writing and reads the sink's reply
 *       ("BYTES CRC32"). Prints "XFER sent=N crc=HEX reply=..." and exits
 *       0 if the reply is what was sent.
 *   vmflood connflood HOST PORT N PAR
 *       N TCP connects, PAR in flight at a time, each closed once it
 *       completes (or fails). Prints "CONNFLOOD port=P ok=A refused=R
 *       failed=F".
 *   vmflood udpflood HOST PORT N BASEPORT
 *       one datagram from each of N source ports BASEPORT.. (a new flow
 *       each). Prints "UDPFLOOD sent=N".
 *   vmflood icmpflood HOST N
 *       N ICMP echo requests (raw socket) over 64 identifiers, then reads
 *       the replies for a second. Prints "ICMPFLOOD sent=S replies=R".
 *   vmflood rawflood IFACE GWMAC ME4 GW4 N
 *       through an AF_PACKET socket on IFACE: N ARP requests for GW4, then
 *       N malformed frames (6 kinds in turn, as tests/flood_misc.py's).
 *       The source MAC is IFACE's own (SIOCGIFHWADDR): passt learns the
 *       guest's MAC from what it sends, and a wrong one would send the
 *       transfer's ACKs where the guest's kernel drops them. Prints
 *       "RAWFLOOD arp=A malformed=M k0=.. k5=.." (frames the kernel took).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "vmflood: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in addr4(const char *host, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "vmflood: not an IPv4 address: %s\n", host);
		exit(2);
	}
	return a;
}

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320 ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

/* zlib's crc32() (the sink computes it with Python's zlib.crc32). */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static int xfer(const char *host, int port, const char *stop, const char *countfile, int kbps)
{
	struct sockaddr_in a = addr4(host, port);
	static unsigned char buf[8192];
	unsigned long long sent = 0, written = 0;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	double until = now() + 10, t0;
	char reply[128], line[64];
	uint32_t crc = 0;
	size_t got = 0;
	int s, cf;

	crc_init();
	for (;;) {
		if ((s = socket(AF_INET, SOCK_STREAM, 0)) < 0)
			die("socket");
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(s);
		if (now() > until)
			die("connect");
		usleep(200 * 1000);
	}
	if ((cf = open(countfile, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		die(countfile);
	t0 = now();
	while (access(stop, F_OK) != 0) {
		size_t off = 0;
		double ahead;

		for (size_t i = 0; i < sizeof(buf); i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, 8);
		}
		while (off < sizeof(buf)) {
			ssize_t w = write(s, buf + off, sizeof(buf) - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("write");
			off += w;
		}
		crc = crc32_update(crc, buf, sizeof(buf));
		sent += sizeof(buf);
		if (sent - written >= 65536) {
			int n = snprintf(line, sizeof(line), "%llu\n", sent);

			if (pwrite(cf, line, n, 0) != n || ftruncate(cf, n))
				die("count file");
			written = sent;
		}
		/* paced: the flooders share the guest's one vCPU */
		ahead = sent / (kbps * 1024.0) - (now() - t0);
		if (ahead > 0)
			usleep(ahead * 1e6);
	}
	if (shutdown(s, SHUT_WR))
		die("shutdown");
	while (got < sizeof(reply) - 1) {
		ssize_t r = read(s, reply + got, sizeof(reply) - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	reply[got] = 0;
	reply[strcspn(reply, "\n")] = 0;
	snprintf(line, sizeof(line), "%llu %08x", sent, crc);
	printf("XFER sent=%llu crc=%08x reply=%s\n", sent, crc, reply);
	return strcmp(line, reply) ? 1 : 0;
}

static int connflood(const char *host, int port, int n, int par)
{
	struct sockaddr_in a = addr4(host, port);
	int ok = 0, refused = 0, failed = 0, started = 0, done = 0;
	struct pollfd *p = calloc(par, sizeof(*p));
	double *since = calloc(par, sizeof(*since));

	if (!p || !since)
		die("calloc");
	for (int i = 0; i < par; i++)
		p[i].fd = -1;
	while (done < n) {
		for (int i = 0; i < par && started < n; i++) {
			if (p[i].fd >= 0)
				continue;
			p[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (p[i].fd < 0)
				die("socket");
			p[i].events = POLLOUT;
			since[i] = now();
			started++;
			if (connect(p[i].fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
				ok++, done++;
				close(p[i].fd);
				p[i].fd = -1;
			} else if (errno != EINPROGRESS) {
				if (errno == ECONNREFUSED)
					refused++;
				else
					failed++;
				done++;
				close(p[i].fd);
				p[i].fd = -1;
			}
		}
		if (poll(p, par, 100) < 0 && errno != EINTR)
			die("poll");
		for (int i = 0; i < par; i++) {
			int err = 0;
			socklen_t len = sizeof(err);

			if (p[i].fd < 0)
				continue;
			if (!p[i].revents) {
				if (now() - since[i] < 10)
					continue;
				err = ETIMEDOUT;
			} else {
				getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
			}
			if (!err)
				ok++;
			else if (err == ECONNREFUSED)
				refused++;
			else
				failed++;
			done++;
			close(p[i].fd);
			p[i].fd = -1;
		}
	}
	printf("CONNFLOOD port=%d ok=%d refused=%d failed=%d\n", port, ok, refused, failed);
	return 0;
}

static int udpflood(const char *host, int port, int n, int base)
{
	struct sockaddr_in a = addr4(host, port);
	int sent = 0;

	for (int i = 0; i < n; i++) {
		struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(base + i) };
		int s = socket(AF_INET, SOCK_DGRAM, 0);

		if (s < 0)
			die("socket");
		if (bind(s, (struct sockaddr *)&src, sizeof(src)) == 0 &&
		    sendto(s, "flood", 5, 0, (struct sockaddr *)&a, sizeof(a)) == 5)
			sent++;
		close(s);
	}
	printf("UDPFLOOD sent=%d\n", sent);
	return 0;
}

static uint16_t csum(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

static int icmpflood(const char *host, int n)
{
	struct sockaddr_in a = addr4(host, 0);
	int s = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_ICMP);
	int sent = 0, replies = 0;
	unsigned char m[64], r[2048];
	double until;

	if (s < 0)
		die("socket");
	for (int i = 0; i < n; i++) {
		uint16_t c;

		memset(m, 'p', sizeof(m));
		m[0] = ICMP_ECHO;
		m[1] = 0;
		m[2] = m[3] = 0;
		m[4] = 0x70;
		m[5] = i % 64;
		m[6] = i >> 8;
		m[7] = i;
		c = csum(m, sizeof(m));
		m[2] = c >> 8;
		m[3] = c;
		/* a full send buffer or queue: drain, wait a little, again */
		for (int tries = 0; tries < 1000; tries++) {
			if (sendto(s, m, sizeof(m), 0, (struct sockaddr *)&a, sizeof(a)) ==
			    sizeof(m)) {
				sent++;
				break;
			}
			if (errno != EAGAIN && errno != ENOBUFS)
				die("sendto");
			usleep(1000);
			while (recv(s, r, sizeof(r), 0) > 28)
				if (r[20] == ICMP_ECHOREPLY && r[24] == 0x70)
					replies++;
		}
		/* drain as we go: the socket's buffer holds only so many */
		while (recv(s, r, sizeof(r), 0) > 28)
			if (r[20] == ICMP_ECHOREPLY && r[24] == 0x70)
				replies++;
		if (i % 64 == 63)
			usleep(1000);
	}
	until = now() + 1;
	while (now() < until) {
		struct pollfd p = { .fd = s, .events = POLLIN };

		if (poll(&p, 1, 100) > 0)
			while (recv(s, r, sizeof(r), 0) > 28)
				if (r[20] == ICMP_ECHOREPLY && r[24] == 0x70)
					replies++;
	}
	printf("ICMPFLOOD sent=%d replies=%d\n", sent, replies);
	return 0;
}

static int parse_mac(const char *s, unsigned char *mac)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
		      &mac[4], &mac[5]) == 6;
}

static int rawflood(const char *ifname, const char *gwmac, const char *me, const char *gw, int n)
{
	unsigned char our[6], theirs[6], f[64];
	struct sockaddr_ll ll = { .sll_family = AF_PACKET };
	struct in_addr me4, gw4;
	int arp = 0, kinds[6] = { 0 }, s;
	struct ifreq ifr = { 0 };

	if (!parse_mac(gwmac, theirs) || inet_pton(AF_INET, me, &me4) != 1 ||
	    inet_pton(AF_INET, gw, &gw4) != 1) {
		fprintf(stderr, "vmflood: bad rawflood arguments\n");
		return 2;
	}
	if ((s = socket(AF_PACKET, SOCK_RAW, 0)) < 0)
		die("socket");
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFHWADDR, &ifr))
		die("SIOCGIFHWADDR");
	memcpy(our, ifr.ifr_hwaddr.sa_data, 6);
	ll.sll_ifindex = if_nametoindex(ifname);
	if (!ll.sll_ifindex || bind(s, (struct sockaddr *)&ll, sizeof(ll)))
		die("bind");

	/* ARP who-has GW4, broadcast */
	memset(f, 0, sizeof(f));
	memset(f, 0xff, 6);
	memcpy(f + 6, our, 6);
	f[12] = 0x08, f[13] = 0x06;
	f[14] = 0, f[15] = 1, f[16] = 0x08, f[17] = 0, f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;
	memcpy(f + 22, our, 6);
	memcpy(f + 28, &me4, 4);
	memcpy(f + 38, &gw4, 4);
	for (int i = 0; i < n; i++) {
		if (send(s, f, 42, 0) == 42)
			arp++;
		if (i % 64 == 63)
			usleep(1000);
	}

	for (int i = 0; i < n; i++) {
		/* a good UDP datagram to GW4:9, then spoiled one of 6 ways */
		unsigned char g[62];
		size_t len = sizeof(g);
		int k = i % 6;
		uint16_t c;

		memset(g, 'm', sizeof(g));
		memcpy(g, theirs, 6);
		memcpy(g + 6, our, 6);
		g[12] = 0x08, g[13] = 0x00;
		g[14] = 0x45, g[15] = 0, g[16] = 0, g[17] = 48, g[18] = 0, g[19] = 1;
		g[20] = 0, g[21] = 0, g[22] = 64, g[23] = 17, g[24] = 0, g[25] = 0;
		memcpy(g + 26, &me4, 4);
		memcpy(g + 30, &gw4, 4);
		c = csum(g + 14, 20);
		g[24] = c >> 8, g[25] = c;
		g[34] = 40000 >> 8, g[35] = 40000 & 0xff, g[36] = 0, g[37] = 9;
		g[38] = 0, g[39] = 28, g[40] = 0, g[41] = 0;
		switch (k) {
		case 0: /* options (IHL 6) */
			g[14] = 0x46;
			break;
		case 1: /* bad header checksum */
			g[24] = g[25] = 0;
			break;
		case 2: /* unknown EtherType */
			g[12] = 0x88, g[13] = 0xcc;
			break;
		case 3: /* truncated IPv4 header */
			len = 20;
			break;
		case 4: /* wrong version */
			g[14] = 0x65;
			break;
		case 5: /* truncated IPv6 */
			g[12] = 0x86, g[13] = 0xdd;
			g[14] = 0x60;
			memset(g + 15, 0, 10);
			len = 25;
			break;
		}
		if (send(s, g, len, 0) == (ssize_t)len)
			kinds[k]++;
		if (i % 64 == 63)
			usleep(1000);
	}
	printf("RAWFLOOD arp=%d malformed=%d k0=%d k1=%d k2=%d k3=%d k4=%d k5=%d\n", arp,
	       kinds[0] + kinds[1] + kinds[2] + kinds[3] + kinds[4] + kinds[5], kinds[0], kinds[1],
	       kinds[2], kinds[3], kinds[4], kinds[5]);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 7 && !strcmp(argv[1], "xfer"))
		return xfer(argv[2], atoi(argv[3]), argv[4], argv[5], atoi(argv[6]));
	if (argc == 6 && !strcmp(argv[1], "connflood"))
		return connflood(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 6 && !strcmp(argv[1], "udpflood"))
		return udpflood(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 4 && !strcmp(argv[1], "icmpflood"))
		return icmpflood(argv[2], atoi(argv[3]));
	if (argc == 7 && !strcmp(argv[1], "rawflood"))
		return rawflood(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]));
	fprintf(stderr, "usage: see the head of vmflood.c\n");
	return 2;
}
