// MetricsHttpServer: /metrics and /healthz over cpp-httplib.

#include <httplib.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/metrics/server_metrics.h"

namespace kvq {
namespace {

constexpr char kExpositionContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

struct HostPort {
  std::string host;
  int port = 0;
};

// "host:port" or "[v6]:port", port 0..65535.
absl::StatusOr<HostPort> ParseAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address must be host:port, got \"",
                     std::string(address), "\""));
  }
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string_view port_text = address.substr(colon + 1);
  int port = -1;
  const auto [end, error] = std::from_chars(
      port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() ||
      port < 0 || port > 65535 || host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address must be host:port with port 0..65535, "
                     "got \"",
                     std::string(address), "\""));
  }
  return HostPort{std::string(host), port};
}

}  // namespace

struct MetricsHttpServer::Impl {
  httplib::Server server;
  int port = 0;
  std::atomic<bool> listen_returned{false};
  std::thread thread;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const ServerMetrics* metrics) {
  if (metrics == nullptr) {
    return absl::InvalidArgumentError("MetricsHttpServer needs metrics");
  }
  absl::StatusOr<HostPort> host_port = ParseAddress(address);
  if (!host_port.ok()) return host_port.status();

  auto impl = std::make_unique<Impl>();
  httplib::Server& server = impl->server;
  // httplib's default also sets SO_REUSEPORT, which lets a second process
  // bind the same port and silently take half the scrapes. Keep only
  // SO_REUSEADDR (a restart may rebind while old connections linger).
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.Get("/metrics",
             [metrics](const httplib::Request&, httplib::Response& response) {
               response.set_content(metrics->Render(), kExpositionContentType);
             });
  server.Get("/healthz",
             [](const httplib::Request&, httplib::Response& response) {
               response.set_content("ok\n", "text/plain; charset=utf-8");
             });

  if (host_port->port == 0) {
    impl->port = server.bind_to_any_port(host_port->host);
  } else {
    impl->port = server.bind_to_port(host_port->host, host_port->port)
                     ? host_port->port
                     : -1;
  }
  if (impl->port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for metrics on ", address,
                     " (address in use, or not an address of this host?)"));
  }
  // The socket is listening from here on: a scrape that arrives before the
  // thread runs waits in the accept queue.
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    raw->server.listen_after_bind();
    raw->listen_returned.store(true);
  });
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() {
  // httplib's stop() does nothing until the accept loop has started, so wait
  // for it (it starts at once; the loop is bounded by listen returning).
  while (!impl_->server.is_running() && !impl_->listen_returned.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->server.stop();
  impl_->thread.join();
}

int MetricsHttpServer::port() const { return impl_->port; }

}  // namespace kvq
