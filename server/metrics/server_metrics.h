// ServerMetrics: every number kvq-server exports, and its Prometheus text.
//
// The service records events on the hot path (lock-free counters and
// histograms: many streams record at once and a scrape never blocks them);
// gauges of the pool (bytes, pages, blocks) are read at scrape time from the
// snapshot source, so they are never stale and cost nothing between scrapes.
//
// Render() produces text exposition format 0.0.4 with HELP and TYPE for every
// family, names in Prometheus style (kvq_ prefix, base units, _total
// counters), and only low-cardinality labels (rpc, code, stage, dtype,
// reason, namespace: namespaces past a fixed number are folded into "_other").

#ifndef KVQ_SERVER_METRICS_SERVER_METRICS_H_
#define KVQ_SERVER_METRICS_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kernels/format.h"
#include "server/pool/block_pool.h"

namespace kvq {

enum class Rpc { kPut, kGet, kLookup, kDelete, kStats };

// Stages of the data path, each with its own latency histogram.
enum class Stage {
  kReceive,       // first chunk of a block to its last
  kHostToDevice,  // staging -> device copy (cuda)
  kQuantize,      // quantize + scatter into pages
  kDequantize,    // gather + dequantize
  kDeviceToHost,  // device -> staging copy (cuda)
  kSend,          // first chunk of an answer to its last
};

struct BuildInfo {
  std::string version;
  std::string git_revision;
  std::string backend;      // "cpu" / "cuda"
  std::string device_name;  // CPU model or GPU name
};

class ServerMetrics {
 public:
  ServerMetrics(BuildInfo build, std::function<PoolStats()> pool_snapshot);
  ~ServerMetrics();

  // One finished RPC: `code` is the grpc::StatusCode value it ended with.
  void ObserveRpc(Rpc rpc, int code, double seconds);
  void ObserveStage(Stage stage, double seconds);

  // One block stored (`logical_bytes` as received).
  void CountPut(DType dtype, uint64_t logical_bytes);
  // One block refused; `code` as in ObserveRpc.
  void CountPutError(int code);
  // One key of a Get: hit (bytes sent) or miss.
  void CountGetHit(uint64_t bytes_out);
  void CountGetMiss();
  void CountLookupKeys(uint64_t keys, uint64_t present);
  void CountDeletes(uint64_t deleted);
  // Relative L2 error ||x - dequant(quant(x))|| / ||x|| of a sampled block.
  void ObserveQuantError(double relative_l2);

  // The whole exposition, ready to serve as text/plain; version=0.0.4.
  std::string Render() const;

  // Totals for the Stats RPC.
  struct Totals {
    uint64_t puts = 0, gets = 0, hits = 0, misses = 0, deletes = 0;
    double uptime_seconds = 0;
  };
  Totals totals() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Serves GET /metrics (and GET /healthz) on `address` ("host:port") from a
// background thread until destroyed.
class MetricsHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, const ServerMetrics* metrics);
  ~MetricsHttpServer();
  int port() const;  // the bound port (useful with port 0)

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_METRICS_SERVER_METRICS_H_
