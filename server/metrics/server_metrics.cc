// The kvq metric families: what is recorded where, and how it is rendered.

#include "server/metrics/server_metrics.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/metrics/instruments.h"
#include "server/metrics/text_format.h"

namespace kvq {
namespace {

using metrics::Counter;
using metrics::ExpositionWriter;
using metrics::Histogram;
using metrics::Label;
using metrics::MetricType;

constexpr size_t kRpcs = 5;
constexpr size_t kStages = 12;
constexpr size_t kDTypes = 3;
constexpr size_t kCodes = 17;  // grpc::StatusCode OK .. UNAUTHENTICATED
constexpr int kUnknownCode = 2;

// "OK", "INVALID_ARGUMENT", ...: gRPC's codes are Abseil's canonical ones.
std::string CodeName(size_t code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

constexpr std::array<Rpc, kRpcs> kAllRpcs = {Rpc::kPut, Rpc::kGet, Rpc::kLookup,
                                             Rpc::kDelete, Rpc::kStats};
constexpr std::array<Stage, kStages> kAllStages = {
    Stage::kReceive,      Stage::kAssemble, Stage::kQueue,
    Stage::kStore,        Stage::kFetch,    Stage::kIndex,
    Stage::kHostToDevice, Stage::kQuantize, Stage::kDequantize,
    Stage::kDeviceToHost, Stage::kSend,     Stage::kAnswer};
constexpr std::array<DType, kDTypes> kAllDTypes = {DType::kFp16, DType::kBf16,
                                                   DType::kFp32};

size_t CodeIndex(int code) {
  return code >= 0 && code < static_cast<int>(kCodes) ? code : kUnknownCode;
}

size_t RpcIndex(Rpc rpc) {
  const size_t i = static_cast<size_t>(rpc);
  return i < kRpcs ? i : 0;
}

size_t StageIndex(Stage stage) {
  const size_t i = static_cast<size_t>(stage);
  return i < kStages ? i : 0;
}

// DType values are 1..3 (the wire enum); anything else counts as fp32 rather
// than indexing out of bounds.
size_t DTypeIndex(DType dtype) {
  const size_t v = static_cast<size_t>(dtype);
  return v >= 1 && v <= kDTypes ? v - 1 : kDTypes - 1;
}

// The label value of a dtype. kernels/format.h declares DTypeName, but it is
// defined in the kernels library, which metrics does not link.
std::string_view DTypeLabel(DType dtype) {
  constexpr std::array<std::string_view, kDTypes> kNames = {"fp16", "bf16",
                                                            "fp32"};
  return kNames[DTypeIndex(dtype)];
}

// Latency: 10 us .. 10 s. Quantization error: 1e-4 .. 1e-1.
const std::vector<double>& LatencyBounds() {
  static const std::vector<double> bounds = metrics::DecadeBuckets(-5, 1);
  return bounds;
}
const std::vector<double>& QuantErrorBounds() {
  static const std::vector<double> bounds = metrics::DecadeBuckets(-4, -1);
  return bounds;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Namespaces as rendered: at most kMaxNamespaceLabels label values. When
// there are more namespaces, the largest (by logical bytes, then name) keep
// their label and the rest are summed into "_other"; a namespace that is
// itself called "_other" is always summed there, so no series repeats.
std::vector<NamespaceUsage> FoldNamespaces(std::vector<NamespaceUsage> all) {
  constexpr std::string_view kOther = "_other";
  const size_t labelled_limit = all.size() <= kMaxNamespaceLabels
                                    ? kMaxNamespaceLabels
                                    : kMaxNamespaceLabels - 1;
  std::sort(all.begin(), all.end(),
            [](const NamespaceUsage& a, const NamespaceUsage& b) {
              if (a.logical_bytes != b.logical_bytes) {
                return a.logical_bytes > b.logical_bytes;
              }
              return a.ns < b.ns;
            });
  std::vector<NamespaceUsage> folded;
  NamespaceUsage other{.ns = std::string(kOther)};
  bool any_other = false;
  for (NamespaceUsage& usage : all) {
    if (usage.ns != kOther && folded.size() < labelled_limit) {
      folded.push_back(std::move(usage));
      continue;
    }
    any_other = true;
    other.blocks += usage.blocks;
    other.logical_bytes += usage.logical_bytes;
    other.stored_bytes += usage.stored_bytes;
  }
  if (any_other) folded.push_back(std::move(other));
  return folded;
}

}  // namespace

std::string_view RpcName(Rpc rpc) {
  constexpr std::array<std::string_view, kRpcs> kNames = {
      "put", "get", "lookup", "delete", "stats"};
  return kNames[RpcIndex(rpc)];
}

std::string_view StageName(Stage stage) {
  constexpr std::array<std::string_view, kStages> kNames = {
      "receive", "assemble",       "queue",    "store",      "fetch",
      "index",   "host_to_device", "quantize", "dequantize", "device_to_host",
      "send",    "answer"};
  return kNames[StageIndex(stage)];
}

MemoryFigures ComputeMemoryFigures(const PoolStats& pool) {
  MemoryFigures f;
  f.capacity_bytes = pool.pages_total * pool.page_bytes;
  f.used_bytes = pool.pages_used * pool.page_bytes;
  f.bytes_saved = static_cast<int64_t>(pool.logical_bytes) -
                  static_cast<int64_t>(f.used_bytes);
  if (f.used_bytes > 0) {
    const double used = static_cast<double>(f.used_bytes);
    f.compression_ratio = static_cast<double>(pool.logical_bytes) / used;
    // The pool's counters are read under one lock, so stored <= used; the
    // clamp only guards against a pool that breaks that.
    const uint64_t slack =
        f.used_bytes > pool.stored_bytes ? f.used_bytes - pool.stored_bytes : 0;
    f.fragmentation_ratio = static_cast<double>(slack) / used;
  }
  return f;
}

struct ServerMetrics::Impl {
  Impl(BuildInfo build_info, std::function<PoolStats()> pool,
       std::function<StagingStats()> staging)
      : build(std::move(build_info)),
        pool_snapshot(std::move(pool)),
        staging_snapshot(std::move(staging)),
        start_steady(std::chrono::steady_clock::now()),
        start_unix_seconds(
            std::chrono::duration<double>(
                std::chrono::system_clock::now().time_since_epoch())
                .count()),
        rpc_duration(MakeHistograms<kRpcs>(LatencyBounds())),
        stage_duration(MakeHistograms<kStages>(LatencyBounds())),
        quant_error(QuantErrorBounds()) {}

  // Histograms are neither copyable nor movable: build the array in place.
  template <size_t N>
  static std::array<Histogram, N> MakeHistograms(
      const std::vector<double>& bounds) {
    return [&]<size_t... I>(std::index_sequence<I...>) {
      return std::array<Histogram, N>{((void)I, Histogram(bounds))...};
    }
    (std::make_index_sequence<N>());
  }

  void RenderProcess(ExpositionWriter& w) const;
  void RenderMemory(ExpositionWriter& w, const PoolStats& pool) const;
  void RenderStaging(ExpositionWriter& w, const StagingStats& staging) const;
  void RenderTraffic(ExpositionWriter& w, const PoolStats& pool) const;
  void RenderLatency(ExpositionWriter& w) const;

  const BuildInfo build;
  const std::function<PoolStats()> pool_snapshot;
  const std::function<StagingStats()> staging_snapshot;
  const std::chrono::steady_clock::time_point start_steady;
  const double start_unix_seconds;

  std::array<std::array<Counter, kCodes>, kRpcs> rpcs;
  // Two changes per call, against a call's megabytes: one atomic each, not
  // sharded like the counters.
  std::array<std::atomic<int64_t>, kRpcs> rpcs_in_flight{};
  // Starts less ends; never below 0 as read, whatever the order of a
  // call's start and another's end.
  uint64_t InFlight(Rpc rpc) const {
    const int64_t n =
        rpcs_in_flight[RpcIndex(rpc)].load(std::memory_order_relaxed);
    return n > 0 ? static_cast<uint64_t>(n) : 0;
  }
  std::array<Histogram, kRpcs> rpc_duration;
  std::array<Histogram, kStages> stage_duration;
  std::array<Counter, kDTypes> puts;
  std::array<Counter, kCodes> put_errors;
  Counter get_hits, get_misses;
  Counter lookup_present, lookup_absent;
  Counter deletes;
  Counter received_bytes, sent_bytes;
  Histogram quant_error;
};

ServerMetrics::ServerMetrics(BuildInfo build,
                             std::function<PoolStats()> pool_snapshot,
                             std::function<StagingStats()> staging_snapshot)
    : impl_(std::make_unique<Impl>(std::move(build), std::move(pool_snapshot),
                                   std::move(staging_snapshot))) {}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::ObserveRpc(Rpc rpc, int code, double seconds) {
  impl_->rpcs[RpcIndex(rpc)][CodeIndex(code)].Add();
  impl_->rpc_duration[RpcIndex(rpc)].Observe(seconds);
}

void ServerMetrics::RpcStarted(Rpc rpc) {
  impl_->rpcs_in_flight[RpcIndex(rpc)].fetch_add(1, std::memory_order_relaxed);
}

void ServerMetrics::RpcEnded(Rpc rpc) {
  impl_->rpcs_in_flight[RpcIndex(rpc)].fetch_sub(1, std::memory_order_relaxed);
}

uint64_t ServerMetrics::RpcsInFlight(Rpc rpc) const {
  return impl_->InFlight(rpc);
}

void ServerMetrics::ObserveStage(Stage stage, double seconds) {
  impl_->stage_duration[StageIndex(stage)].Observe(seconds);
}

void ServerMetrics::CountPut(DType dtype, uint64_t logical_bytes) {
  impl_->puts[DTypeIndex(dtype)].Add();
  impl_->received_bytes.Add(logical_bytes);
}

void ServerMetrics::CountPutError(int code) {
  impl_->put_errors[CodeIndex(code)].Add();
}

void ServerMetrics::CountGetHit(uint64_t bytes_out) {
  impl_->get_hits.Add();
  impl_->sent_bytes.Add(bytes_out);
}

void ServerMetrics::CountGetMiss() { impl_->get_misses.Add(); }

void ServerMetrics::CountLookupKeys(uint64_t keys, uint64_t present) {
  // Two counters, not keys and present: absent = keys - present computed at
  // scrape time could go down between scrapes while a Lookup is recorded.
  present = std::min(present, keys);
  impl_->lookup_present.Add(present);
  impl_->lookup_absent.Add(keys - present);
}

void ServerMetrics::CountDeletes(uint64_t deleted) {
  impl_->deletes.Add(deleted);
}

void ServerMetrics::ObserveQuantError(double relative_l2) {
  impl_->quant_error.Observe(relative_l2);
}

ServerMetrics::Totals ServerMetrics::totals() const {
  Totals t;
  for (const Counter& c : impl_->puts) t.puts += c.Value();
  t.hits = impl_->get_hits.Value();
  t.misses = impl_->get_misses.Value();
  t.gets = t.hits + t.misses;
  t.deletes = impl_->deletes.Value();
  t.uptime_seconds =
      Seconds(std::chrono::steady_clock::now() - impl_->start_steady);
  for (const Counter& c : impl_->put_errors) t.put_errors += c.Value();
  t.lookup_keys = impl_->lookup_present.Value() + impl_->lookup_absent.Value();
  t.received_bytes = impl_->received_bytes.Value();
  t.sent_bytes = impl_->sent_bytes.Value();
  return t;
}

void ServerMetrics::Impl::RenderProcess(ExpositionWriter& w) const {
  w.Family("kvq_build_info",
           "Build and runtime of this kvq-server; the value is always 1.",
           MetricType::kGauge);
  w.Sample("kvq_build_info",
           {{"version", build.version},
            {"git_revision", build.git_revision},
            {"backend", build.backend},
            {"device", build.device_name}},
           1.0);
  w.Family("kvq_uptime_seconds", "Seconds since kvq-server started.",
           MetricType::kGauge);
  w.Sample("kvq_uptime_seconds", {},
           Seconds(std::chrono::steady_clock::now() - start_steady));
  w.Family("kvq_start_time_seconds",
           "Start time of kvq-server, in seconds since the Unix epoch.",
           MetricType::kGauge);
  w.Sample("kvq_start_time_seconds", {}, start_unix_seconds);
}

void ServerMetrics::Impl::RenderMemory(ExpositionWriter& w,
                                       const PoolStats& pool) const {
  const MemoryFigures f = ComputeMemoryFigures(pool);
  const auto gauge = [&](std::string_view name, std::string_view help,
                         auto value) {
    w.Family(name, help, MetricType::kGauge);
    w.Sample(name, {}, value);
  };
  gauge("kvq_logical_bytes",
        "Bytes of the blocks held, as clients sent them (FP16/BF16/FP32).",
        pool.logical_bytes);
  gauge("kvq_stored_bytes",
        "Bytes of the quantized payloads of the blocks held (INT8 values + "
        "FP32 scales).",
        pool.stored_bytes);
  gauge("kvq_pool_used_bytes",
        "Physical bytes in use: pages held (by blocks, puts in flight and "
        "pinned replaced blocks) times page size.",
        f.used_bytes);
  gauge("kvq_bytes_saved",
        "Memory saved: kvq_logical_bytes - kvq_pool_used_bytes. Negative when "
        "page rounding costs more than quantization saves.",
        static_cast<double>(f.bytes_saved));
  gauge("kvq_compression_ratio",
        "kvq_logical_bytes / kvq_pool_used_bytes (0 when the pool is empty).",
        f.compression_ratio);
  gauge("kvq_pool_capacity_bytes", "Bytes of the page arena.",
        f.capacity_bytes);
  gauge("kvq_pool_page_bytes", "Bytes per page.", pool.page_bytes);

  w.Family("kvq_pool_pages", "Pages of the arena, by state.",
           MetricType::kGauge);
  const uint64_t free_pages = pool.pages_total > pool.pages_used
                                  ? pool.pages_total - pool.pages_used
                                  : 0;
  w.Sample("kvq_pool_pages", {{"state", "used"}}, pool.pages_used);
  w.Sample("kvq_pool_pages", {{"state", "free"}}, free_pages);

  gauge("kvq_pool_fragmentation_ratio",
        "Share of the used page bytes that hold no block payload: "
        "(kvq_pool_used_bytes - kvq_stored_bytes) / kvq_pool_used_bytes "
        "(0 when the pool is empty).",
        f.fragmentation_ratio);
  gauge("kvq_blocks", "Blocks held.", pool.blocks);

  const std::vector<NamespaceUsage> namespaces =
      FoldNamespaces(pool.namespaces);
  const auto per_namespace = [&](std::string_view name, std::string_view help,
                                 uint64_t NamespaceUsage::*field) {
    w.Family(name, help, MetricType::kGauge);
    for (const NamespaceUsage& usage : namespaces) {
      w.Sample(name, {{"namespace", usage.ns}}, usage.*field);
    }
  };
  per_namespace("kvq_namespace_logical_bytes",
                "kvq_logical_bytes by namespace (at most 32 namespaces; the "
                "rest are summed into namespace=\"_other\").",
                &NamespaceUsage::logical_bytes);
  per_namespace("kvq_namespace_stored_bytes",
                "kvq_stored_bytes by namespace (at most 32 namespaces; the "
                "rest are summed into namespace=\"_other\").",
                &NamespaceUsage::stored_bytes);
  per_namespace("kvq_namespace_blocks",
                "kvq_blocks by namespace (at most 32 namespaces; the rest "
                "are summed into namespace=\"_other\").",
                &NamespaceUsage::blocks);
}

void ServerMetrics::Impl::RenderTraffic(ExpositionWriter& w,
                                        const PoolStats& pool) const {
  w.Family("kvq_rpcs_total", "Finished RPCs, by method and gRPC status code.",
           MetricType::kCounter);
  for (Rpc rpc : kAllRpcs) {
    const auto& by_code = rpcs[RpcIndex(rpc)];
    for (size_t code = 0; code < kCodes; ++code) {
      const uint64_t n = by_code[code].Value();
      // OK always, so that rate() works from the start; errors once seen.
      if (code != 0 && n == 0) continue;
      w.Sample("kvq_rpcs_total",
               {{"rpc", RpcName(rpc)}, {"code", CodeName(code)}}, n);
    }
  }

  w.Family("kvq_rpcs_in_flight",
           "RPCs whose handler is running now (streams open), by method.",
           MetricType::kGauge);
  for (Rpc rpc : kAllRpcs) {
    w.Sample("kvq_rpcs_in_flight", {{"rpc", RpcName(rpc)}}, InFlight(rpc));
  }

  w.Family("kvq_puts_total", "Blocks stored, by dtype as put.",
           MetricType::kCounter);
  for (DType dtype : kAllDTypes) {
    w.Sample("kvq_puts_total", {{"dtype", DTypeLabel(dtype)}},
             puts[DTypeIndex(dtype)].Value());
  }

  w.Family("kvq_put_errors_total",
           "Blocks refused by Put, by gRPC status code.", MetricType::kCounter);
  for (size_t code = 1; code < kCodes; ++code) {
    const uint64_t n = put_errors[code].Value();
    // INVALID_ARGUMENT and RESOURCE_EXHAUSTED (the expected refusals)
    // always; other codes once seen.
    if (n == 0 && code != 3 && code != 8) continue;
    w.Sample("kvq_put_errors_total", {{"code", CodeName(code)}}, n);
  }

  w.Family("kvq_get_keys_total", "Keys asked for by Get, by result.",
           MetricType::kCounter);
  w.Sample("kvq_get_keys_total", {{"result", "hit"}}, get_hits.Value());
  w.Sample("kvq_get_keys_total", {{"result", "miss"}}, get_misses.Value());

  w.Family("kvq_lookup_keys_total", "Keys asked for by Lookup, by result.",
           MetricType::kCounter);
  w.Sample("kvq_lookup_keys_total", {{"result", "present"}},
           lookup_present.Value());
  w.Sample("kvq_lookup_keys_total", {{"result", "absent"}},
           lookup_absent.Value());

  w.Family("kvq_deletes_total", "Blocks removed by Delete.",
           MetricType::kCounter);
  w.Sample("kvq_deletes_total", {}, deletes.Value());

  w.Family("kvq_evictions_total",
           "Blocks evicted to make room for new ones, by reason.",
           MetricType::kCounter);
  w.Sample("kvq_evictions_total", {{"reason", "lru"}}, pool.evictions);

  w.Family("kvq_received_bytes_total",
           "Bytes of blocks received and stored by Put, as clients sent them.",
           MetricType::kCounter);
  w.Sample("kvq_received_bytes_total", {}, received_bytes.Value());
  w.Family("kvq_sent_bytes_total",
           "Bytes of blocks sent by Get, in the dtype asked for.",
           MetricType::kCounter);
  w.Sample("kvq_sent_bytes_total", {}, sent_bytes.Value());
}

void ServerMetrics::Impl::RenderStaging(ExpositionWriter& w,
                                        const StagingStats& staging) const {
  w.Family("kvq_staging_bytes",
           "Host buffers for blocks in transit (page-locked with the cuda "
           "backend), by state: lent to a put or get now, or kept for the "
           "next block. At most --staging_bytes together.",
           MetricType::kGauge);
  w.Sample("kvq_staging_bytes", {{"state", "lent"}}, staging.lent_bytes);
  w.Sample("kvq_staging_bytes", {{"state", "kept"}}, staging.kept_bytes);
  w.Family("kvq_staging_heap_fallbacks_total",
           "Blocks staged in plain heap memory because --staging_bytes was "
           "all in use (slower with the cuda backend: raise it).",
           MetricType::kCounter);
  w.Sample("kvq_staging_heap_fallbacks_total", {}, staging.heap_buffers);
  w.Family("kvq_pinned_heap_bytes",
           "The page-locked heap region that puts are received in and the "
           "GPU reads in place (--pinned_heap_bytes), by state: taken by the "
           "allocator so far, or not yet. 0 when puts are not read in place.",
           MetricType::kGauge);
  w.Sample("kvq_pinned_heap_bytes", {{"state", "used"}},
           staging.pinned_heap_used_bytes);
  w.Sample("kvq_pinned_heap_bytes", {{"state", "free"}},
           staging.pinned_heap_bytes - std::min(staging.pinned_heap_bytes,
                                                staging.pinned_heap_used_bytes));
  w.Family("kvq_heap_outside_pinned_bytes",
           "Heap the allocator took past the page-locked region: puts "
           "received there are copied before the GPU reads them (raise "
           "--pinned_heap_bytes when it grows).",
           MetricType::kGauge);
  w.Sample("kvq_heap_outside_pinned_bytes", {},
           staging.heap_outside_pinned_bytes);
}

void ServerMetrics::Impl::RenderLatency(ExpositionWriter& w) const {
  w.Family("kvq_rpc_duration_seconds",
           "Time from the start of an RPC to its status, by method.",
           MetricType::kHistogram);
  for (Rpc rpc : kAllRpcs) {
    const Label label{"rpc", RpcName(rpc)};
    const Histogram& h = rpc_duration[RpcIndex(rpc)];
    w.HistogramSamples("kvq_rpc_duration_seconds", {&label, 1}, h.bounds(),
                       h.Collect());
  }
  w.Family("kvq_stage_duration_seconds",
           "Time spent in one stage of the data path for one block, by stage.",
           MetricType::kHistogram);
  for (Stage stage : kAllStages) {
    const Label label{"stage", StageName(stage)};
    const Histogram& h = stage_duration[StageIndex(stage)];
    w.HistogramSamples("kvq_stage_duration_seconds", {&label, 1}, h.bounds(),
                       h.Collect());
  }
  w.Family("kvq_quantization_relative_l2_error",
           "Relative L2 error ||x - dequant(quant(x))|| / ||x|| of sampled "
           "blocks.",
           MetricType::kHistogram);
  w.HistogramSamples("kvq_quantization_relative_l2_error", {},
                     quant_error.bounds(), quant_error.Collect());
}

std::string ServerMetrics::Render() const {
  const PoolStats pool =
      impl_->pool_snapshot ? impl_->pool_snapshot() : PoolStats{};
  ExpositionWriter w;
  impl_->RenderProcess(w);
  impl_->RenderMemory(w, pool);
  impl_->RenderStaging(w, impl_->staging_snapshot ? impl_->staging_snapshot()
                                                  : StagingStats{});
  impl_->RenderTraffic(w, pool);
  impl_->RenderLatency(w);
  return w.Take();
}

}  // namespace kvq
