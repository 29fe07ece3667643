/* Preloaded into a process that runs a Reverb server (see agents/reverb_bind.py).
 *
 * reverb.Server has no bind-address option: its gRPC server binds [::]:port (or 0.0.0.0:port),
 * every interface. This bind() wrapper moves that one wildcard bind, on port
 * $WPO_REVERB_BIND_PORT, to $WPO_REVERB_BIND_ADDRESS (an IPv4 or IPv6 literal). Every other
 * bind, and every bind while the variables are unset, goes to libc unchanged. The variables are
 * read at each call, so a process may set them just before it starts its server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_function)(int, const struct sockaddr *, socklen_t);

static int libc_bind(int fd, const struct sockaddr *address, socklen_t length) {
  static bind_function next_bind = NULL;
  if (next_bind == NULL) next_bind = (bind_function)dlsym(RTLD_NEXT, "bind");
  return next_bind(fd, address, length);
}

/* The configured port (network byte order), or 0 when the wrapper is off. */
static in_port_t configured_port(void) {
  const char *text = getenv("WPO_REVERB_BIND_PORT");
  if (text == NULL || getenv("WPO_REVERB_BIND_ADDRESS") == NULL) return 0;
  long port = strtol(text, NULL, 10);
  return (port > 0 && port < 65536) ? htons((in_port_t)port) : 0;
}

int bind(int fd, const struct sockaddr *address, socklen_t length) {
  in_port_t port = configured_port();
  if (port == 0 || address == NULL) return libc_bind(fd, address, length);
  const char *target = getenv("WPO_REVERB_BIND_ADDRESS");
  struct in_addr target4;
  struct in6_addr target6;
  int is_ipv4 = inet_pton(AF_INET, target, &target4) == 1;
  int is_ipv6 = !is_ipv4 && inet_pton(AF_INET6, target, &target6) == 1;

  if (address->sa_family == AF_INET6 && length >= (socklen_t)sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 moved = *(const struct sockaddr_in6 *)address;
    if (moved.sin6_port != port || !IN6_IS_ADDR_UNSPECIFIED(&moved.sin6_addr)) {
      return libc_bind(fd, address, length);
    }
    if (is_ipv4) {  /* gRPC's [::] socket is dual-stack: use the IPv4-mapped address. */
      memset(&moved.sin6_addr, 0, sizeof(moved.sin6_addr));
      moved.sin6_addr.s6_addr[10] = 0xff;
      moved.sin6_addr.s6_addr[11] = 0xff;
      memcpy(&moved.sin6_addr.s6_addr[12], &target4, sizeof(target4));
    } else if (is_ipv6) {
      moved.sin6_addr = target6;
    } else {
      errno = EADDRNOTAVAIL;
      return -1;
    }
    return libc_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
  }
  if (address->sa_family == AF_INET && length >= (socklen_t)sizeof(struct sockaddr_in)) {
    struct sockaddr_in moved = *(const struct sockaddr_in *)address;
    if (moved.sin_port != port || moved.sin_addr.s_addr != htonl(INADDR_ANY)) {
      return libc_bind(fd, address, length);
    }
    if (!is_ipv4) {
      errno = EADDRNOTAVAIL;
      return -1;
    }
    moved.sin_addr = target4;
    return libc_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
  }
  return libc_bind(fd, address, length);
}
