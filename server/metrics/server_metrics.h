// ServerMetrics: every number kvq-server exports, and its Prometheus text.
//
// The service records events on the hot path (lock-free counters and
// histograms sharded per thread, see instruments.h: many streams record at
// once and a scrape never blocks them); gauges of the pool (bytes, pages,
// blocks) are read at scrape time from the snapshot source, so they are never
// stale and cost nothing between scrapes.
//
// Render() produces text exposition format 0.0.4 with HELP and TYPE for every
// family, names in Prometheus style (kvq_ prefix, base units, _total
// counters), and only low-cardinality labels (rpc, code, stage, dtype,
// reason, result, namespace: past kMaxNamespaceLabels namespaces the rest are
// summed into namespace="_other").
//
// The text format is written by kvq itself (text_format.h): prometheus-cpp is
// not packaged in Debian/Ubuntu. The HTTP endpoint uses cpp-httplib.
//
// Families (all prefixed kvq_):
//   memory   logical_bytes, stored_bytes, pool_used_bytes, bytes_saved,
//            compression_ratio, pool_capacity_bytes, pool_page_bytes,
//            pool_pages{state="used|free"}, pool_fragmentation_ratio, blocks,
//            namespace_{logical_bytes,stored_bytes,blocks}{namespace},
//            staging_bytes{state="lent|kept"}, staging_heap_fallbacks_total,
//            pinned_heap_bytes{state="used|free"}, heap_outside_pinned_bytes
//   traffic  rpcs_total{rpc,code}, rpcs_in_flight{rpc}, puts_total{dtype},
//            put_errors_total{code},
//            get_keys_total{result="hit|miss"},
//            lookup_keys_total{result="present|absent"}, deletes_total,
//            evictions_total{reason="lru"}, received_bytes_total,
//            sent_bytes_total
//   latency  rpc_duration_seconds{rpc}, stage_duration_seconds{stage}
//            (buckets 1-2.5-5 per decade, 10 us .. 10 s)
//   quality  quantization_relative_l2_error (buckets 1e-4 .. 1e-1)
//   process  build_info{version,git_revision,backend,device} 1,
//            uptime_seconds, start_time_seconds
//
// Thread-safe: every method may be called from any thread at any time.

#ifndef KVQ_SERVER_METRICS_SERVER_METRICS_H_
#define KVQ_SERVER_METRICS_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kernels/format.h"
#include "server/pool/block_pool.h"

namespace kvq {

enum class Rpc { kPut, kGet, kLookup, kDelete, kStats };

// Stages of the data path, each with its own latency histogram.
enum class Stage {
  kReceive,       // first chunk of a block to its last (assembly included)
  kAssemble,      // a put's chunks: copied out of gRPC's buffers into
                  // staging, or handed to the backend's upload (cuda)
  kQueue,         // a received put block waiting for its stream's storer
  kStore,         // storing a received block: all of the below for a put
  kFetch,         // reading a block back for a get: all of the below (not
                  // its sending meanwhile, which is kSend's)
  kIndex,         // the pool's bookkeeping: reserve + commit a put, pin a get
  kHostToDevice,  // staging -> device copy (cuda)
  kQuantize,      // quantize + scatter into pages
  kDequantize,    // gather + dequantize
  kDeviceToHost,  // device -> staging copy (cuda)
  kSend,          // writing an answer's chunks (waits between them excluded)
  kAnswer,        // writing a put block's result back on its stream
};

// Label values: "put", "get", ...; "receive", "host_to_device", ...
std::string_view RpcName(Rpc rpc);
std::string_view StageName(Stage stage);

// Namespaces with a label of their own; the rest are summed into "_other".
inline constexpr size_t kMaxNamespaceLabels = 32;

struct BuildInfo {
  std::string version;
  std::string git_revision;
  std::string backend;      // "cpu" / "cuda"
  std::string device_name;  // CPU model or GPU name
};

// Memory figures derived from a pool snapshot, defined once so that /metrics
// and the Stats RPC agree.
struct MemoryFigures {
  uint64_t capacity_bytes = 0;  // pages_total * page_bytes
  uint64_t used_bytes = 0;      // pages_used * page_bytes ("physical")
  // logical_bytes - used_bytes: what quantization saves net of page
  // rounding. Negative when blocks are small against the page size (the
  // Stats RPC, an unsigned field, reports 0 then).
  int64_t bytes_saved = 0;
  double compression_ratio = 0;    // logical_bytes / used_bytes; 0 if empty
  double fragmentation_ratio = 0;  // (used - stored) / used; 0 if empty
};
MemoryFigures ComputeMemoryFigures(const PoolStats& pool);

// Host buffers for blocks in transit (server/service/staging_pool.h):
// page-locked memory on CUDA, so worth watching next to the pool.
struct StagingStats {
  uint64_t lent_bytes = 0;    // with a put or get now
  uint64_t kept_bytes = 0;    // waiting for the next block
  uint64_t heap_buffers = 0;  // blocks staged in plain memory past the budget
  // The page-locked heap region puts are received in and read from in place
  // (--put_buffers=received with cuda, server/heap/region_heap.h; all 0
  // without one): its size, how much of it the allocator has taken, and
  // heap the allocator took past it, where puts are copied instead.
  uint64_t pinned_heap_bytes = 0;
  uint64_t pinned_heap_used_bytes = 0;
  uint64_t heap_outside_pinned_bytes = 0;
};

class ServerMetrics {
 public:
  // The snapshots are taken once per Render() (either may be empty: zero
  // gauges).
  ServerMetrics(BuildInfo build, std::function<PoolStats()> pool_snapshot,
                std::function<StagingStats()> staging_snapshot = {});
  ~ServerMetrics();

  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // One finished RPC: `code` is the grpc::StatusCode value it ended with
  // (values outside 0..16 count as UNKNOWN).
  void ObserveRpc(Rpc rpc, int code, double seconds);
  // An RPC's handler began / returned (RpcCall's lifetime). RpcsInFlight is
  // the count now, the caller's own call included: the service reads it to
  // tell whether a call has the server to itself.
  void RpcStarted(Rpc rpc);
  void RpcEnded(Rpc rpc);
  uint64_t RpcsInFlight(Rpc rpc) const;
  void ObserveStage(Stage stage, double seconds);

  // One block stored (`logical_bytes` as received).
  void CountPut(DType dtype, uint64_t logical_bytes);
  // One block refused; `code` as in ObserveRpc.
  void CountPutError(int code);
  // One key of a Get: hit (bytes sent) or miss.
  void CountGetHit(uint64_t bytes_out);
  void CountGetMiss();
  // Keys asked in a Lookup, and how many of them were present.
  void CountLookupKeys(uint64_t keys, uint64_t present);
  // Blocks removed by Delete.
  void CountDeletes(uint64_t deleted);
  // Relative L2 error ||x - dequant(quant(x))|| / ||x|| of a sampled block.
  void ObserveQuantError(double relative_l2);

  // The whole exposition, ready to serve as text/plain; version=0.0.4.
  std::string Render() const;

  // Totals for the Stats RPC.
  struct Totals {
    uint64_t puts = 0;  // blocks stored
    uint64_t gets = 0;  // keys asked for by Get (= hits + misses)
    uint64_t hits = 0, misses = 0, deletes = 0;
    double uptime_seconds = 0;
    uint64_t put_errors = 0;      // blocks refused
    uint64_t lookup_keys = 0;     // keys asked for by Lookup
    uint64_t received_bytes = 0;  // logical bytes of stored blocks
    uint64_t sent_bytes = 0;      // bytes of Get answers
  };
  Totals totals() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Serves GET /metrics (text/plain; version=0.0.4; charset=utf-8) and
// GET /healthz ("ok") on `address` ("host:port", "[v6]:port"; port 0 picks a
// free port) from background threads until destroyed. `metrics` must outlive
// the server. INVALID_ARGUMENT for an unparsable address, UNAVAILABLE if it
// cannot be bound.
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
