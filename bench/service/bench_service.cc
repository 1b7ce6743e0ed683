// kvq-bench-service: a real kvq-server and real gRPC clients over loopback,
// measured against a bare gRPC service that moves the same bytes in the same
// stream shapes with no work behind it (the transport ceiling).
//
//   kvq-bench-service [--device=auto|cpu|cuda] [--streams=1,4,16]
//                     [--block_sizes=65536,1048576,...] [--dtypes=fp16,fp32]
//                     [--markdown=F] [--csv=F]
//
// For every dtype x block size x stream count it runs kvq Put, bare Upload,
// kvq Get and bare Download and reports client-side GB/s, kvq's as a ratio to
// the bare figure, per-block latency p50/p99, and, from the server's stage
// histograms on /metrics, the server's time per block in its own data path
// (kernel + copies) apart from its time in transport (receiving a put's
// chunks, sending a get's), so that kvq's overhead and transport time are
// reported separately.
//
// Each cell first moves a few untimed blocks per stream (warm-up:
// connections, server threads, the server's staging buffers), and deletes its
// blocks afterwards so that no cell makes the next one evict. The bare
// service reads and writes kvq's own messages with kvq-server's own readers
// and writers (transport_service.h), and its clients are kvq's: the ratio is
// the share of the transport that kvq's work leaves.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/common/report.h"
#include "bench/service/child_process.h"
#include "bench/service/server_stages.h"
#include "bench/service/service_workloads.h"
#include "bench/service/transport_service.h"
#include "kernels/status_macros.h"
#include "kvq/v1/kvcache.grpc.pb.h"
#include "proto/message_memory.h"

ABSL_FLAG(std::string, server_binary, "",
          "kvq-server to start (default: the one next to this program)");
ABSL_FLAG(std::string, device, "auto", "--device for kvq-server");
ABSL_FLAG(std::vector<std::string>, server_flags, {},
          "more kvq-server flags, e.g. --server_flags=--put_buffers=page_locked "
          "(comma-separated)");
ABSL_FLAG(std::vector<std::string>, dtypes,
          std::vector<std::string>({"fp16", "fp32"}), "dtypes");
ABSL_FLAG(std::vector<std::string>, block_sizes,
          std::vector<std::string>({"65536", "262144", "1048576", "4194304",
                                    "16777216", "33554432"}),
          "block sizes in bytes (client-side; multiples of 8192)");
ABSL_FLAG(std::vector<std::string>, streams,
          std::vector<std::string>({"1", "2", "4", "8", "16"}),
          "concurrent client streams");
ABSL_FLAG(std::vector<std::string>, put_windows,
          std::vector<std::string>({"1", "4"}),
          "Put / Upload: blocks in flight per stream (1: each block waits for "
          "the previous one's result; more: pipelined; all: every block of "
          "the cell may be in flight, as kvq::Client::PutMany sends, which "
          "waits for no result before the last block); one put row per "
          "window");
ABSL_FLAG(std::vector<std::string>, get_keys,
          std::vector<std::string>({"1", "4"}),
          "Get / Download: keys (blocks) per call (1: one round trip per "
          "block; more: the server answers them back to back, as a "
          "kvq::Client::Get of many keys asks); one get row per count");
ABSL_FLAG(uint64_t, bytes_per_cell, uint64_t{256} << 20,
          "client bytes per measurement (split over streams)");
ABSL_FLAG(int, min_blocks, 8, "at least this many blocks per stream");
ABSL_FLAG(int, max_blocks, 256, "at most this many blocks per stream");
ABSL_FLAG(int, warmup_blocks, -1,
          "untimed blocks per stream before each cell (-1: the largest put "
          "window + 2, enough to fill a stream's pipeline, so that the "
          "server has every staging buffer a stream keeps busy before the "
          "clock starts)");
ABSL_FLAG(int, repeats, 1,
          "alternating kvq / bare runs per row (medians are reported)");
ABSL_FLAG(uint32_t, chunk_bytes, 1 << 20, "bytes per message");
ABSL_FLAG(uint64_t, pool_bytes, uint64_t{4} << 30,
          "--pool_bytes for kvq-server");
ABSL_FLAG(std::string, markdown, "", "write the report (markdown) here too");
ABSL_FLAG(std::string, csv, "", "write the table as CSV here");
ABSL_FLAG(std::string, bare_api, "sync",
          "gRPC server API of the bare service: sync (kvq-server's: a thread "
          "per stream, blocking reads and writes) or callback (reactors on "
          "gRPC's own threads, as gRPC's performance guide recommends for "
          "servers): whether the API kvq-server uses limits the ceiling; or "
          "sync-copy: sync, each put's data copied once out of gRPC's "
          "buffers into a buffer of the block's size (kvq-server's one copy, "
          "its own code, with the streaming writes it uses for the CUDA "
          "backend): the ceiling of a server that must copy what it "
          "receives before its GPU can read it; or sync-hold: sync, each "
          "put's chunks (gRPC's buffers) held until the block's last chunk "
          "is in, as kvq-server holds a put it reads in place; or "
          "sync-answer-thread: sync, each put's answer written from a thread "
          "of the stream's own while the handler reads on, as kvq-server "
          "answers from the thread that stores the stream's blocks; or "
          "sync-fresh: sync, each get's block sent from the next stretch of "
          "a 512 MiB buffer, so that the send reads memory the CPU's caches "
          "do not hold, as kvq-server sends blocks its GPU has just written "
          "(sync sends one buffer again and again)");
ABSL_FLAG(std::string, bare_preload, "",
          "a shared library preloaded into the bare service alone "
          "(LD_PRELOAD), e.g. libjemalloc.so.2, kvq-server's allocator: "
          "whether the allocator moves the ceiling, the client unchanged");
// Internal: the transport server mode of this same binary.
ABSL_FLAG(bool, serve_transport, false, "internal: run the bare service");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "internal: transport address");
ABSL_FLAG(std::string, ready_file, "", "internal: transport ready file");

namespace kvq::bench {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;
// --put_windows=all: no bound on the blocks a put stream has in flight.
constexpr int kAllBlocks = 0;

std::string ServerLine(const std::string& grpc_address) {
  auto stub = kvq::v1::KVCache::NewStub(
      grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  kvq::v1::StatsResponse stats;
  grpc::Status status = stub->Stats(&context, kvq::v1::StatsRequest(), &stats);
  if (!status.ok()) return "kvq-server (Stats failed: " +
                           status.error_message() + ")";
  return absl::StrCat("kvq-server ", stats.version(), ", ", stats.backend(),
                      " backend on ", stats.device_name(), ", pool ",
                      stats.pool_capacity_bytes() >> 20, " MiB in ",
                      stats.page_bytes() >> 10, " KiB pages");
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one.empty() ? "unknown" : absl::StrCat(one, " ", five, " ", fifteen);
}

std::string Ms(double seconds) {
  return seconds < 0 ? "-" : absl::StrFormat("%.3f", seconds * 1e3);
}

std::string BlockName(uint64_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) {
    return absl::StrCat(bytes >> 20, " MiB");
  }
  return absl::StrCat(bytes >> 10, " KiB");
}

using Workload = absl::StatusOr<CellResult> (*)(const std::string&,
                                                const Cell&);

struct Endpoints {
  std::string kvq;
  std::string bare;
  int metrics_port = 0;
};

// One table row: `--repeats` alternating runs of kvq and bare.
struct OpResult {
  double kvq_gbps = 0;   // median over repeats
  double bare_gbps = 0;  // median over repeats
  double ratio = 0;      // median of kvq/bare of adjacent runs
  double ratio_min = 0, ratio_max = 0;  // their spread
  CellResult kvq;        // latencies of every repeat
  CellResult bare;
  ServerTime server;     // over every kvq repeat
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Runs kvq Put and bare Upload (put) or kvq Get and bare Download (get)
// alternately, so that load drifting on the machine hits both alike. Puts of
// the same keys are deleted between repeats, so every put stores fresh
// blocks; the blocks of the last put stay for the gets.
absl::StatusOr<OpResult> MeasureOp(bool put, const Cell& cell,
                                   const Endpoints& at) {
  const Workload kvq_run = put ? RunKvqPut : RunKvqGet;
  const Workload bare_run = put ? RunBareUpload : RunBareDownload;
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  const uint64_t blocks = uint64_t(cell.blocks_per_stream) * cell.streams;
  OpResult op;
  std::vector<double> kvq_gbps, bare_gbps, ratios;
  double data_path = 0, transport = 0, queue = 0, rpc = 0;
  bool server_known = true, rpc_known = true;
  for (int r = 0; r < repeats; ++r) {
    const std::optional<StageTotals> before = ScrapeStages(at.metrics_port);
    absl::StatusOr<CellResult> ours = kvq_run(at.kvq, cell);
    if (!ours.ok()) return ours.status();
    const std::optional<StageTotals> after = ScrapeStages(at.metrics_port);
    absl::StatusOr<CellResult> ceiling = bare_run(at.bare, cell);
    if (!ceiling.ok()) return ceiling.status();
    if (put && r + 1 < repeats) {
      KVQ_RETURN_IF_ERROR(DeleteCellBlocks(at.kvq, cell));
    }
    const ServerTime server = ServerTimePerBlock(before, after, put, blocks);
    server_known = server_known && server.data_path >= 0;
    data_path += server.data_path;
    transport += server.transport;
    if (put) queue += server.queue;
    rpc_known = rpc_known && server.rpc >= 0;
    rpc += server.rpc;
    for (const auto& [stage, seconds] : server.stages) {
      op.server.stages[stage] += seconds / repeats;
    }
    kvq_gbps.push_back(ours->gbps());
    bare_gbps.push_back(ceiling->gbps());
    ratios.push_back(ceiling->gbps() > 0 ? ours->gbps() / ceiling->gbps() : 0);
    op.kvq.latencies.insert(op.kvq.latencies.end(), ours->latencies.begin(),
                            ours->latencies.end());
    op.bare.latencies.insert(op.bare.latencies.end(),
                             ceiling->latencies.begin(),
                             ceiling->latencies.end());
  }
  op.kvq_gbps = Median(kvq_gbps);
  op.bare_gbps = Median(bare_gbps);
  op.ratio = Median(ratios);
  const auto [lowest, highest] =
      std::minmax_element(ratios.begin(), ratios.end());
  op.ratio_min = *lowest;
  op.ratio_max = *highest;
  if (server_known) {
    op.server.data_path = data_path / repeats;
    op.server.transport = transport / repeats;
    if (put) op.server.queue = queue / repeats;
    if (rpc_known) op.server.rpc = rpc / repeats;
  }
  return op;
}

int Run(const std::string& command, const std::string& self) {
  const std::string bare_api = absl::GetFlag(FLAGS_bare_api);
  if (!ServerApiNamed(bare_api).has_value()) {
    std::fprintf(stderr,
                 "bad --bare_api=%s (want sync, callback, sync-copy, "
                 "sync-hold, sync-answer-thread or sync-fresh)\n",
                 bare_api.c_str());
    return 2;
  }
  std::string server_binary = absl::GetFlag(FLAGS_server_binary);
  if (server_binary.empty()) {
    server_binary = self.substr(0, self.rfind('/') + 1) + "kvq-server";
  }
  const std::string load_at_start = LoadAverage();
  std::vector<std::string> server_args = {
      server_binary, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
      "--device=" + absl::GetFlag(FLAGS_device), "--log_level=warn",
      absl::StrCat("--pool_bytes=", absl::GetFlag(FLAGS_pool_bytes)),
      absl::StrCat("--max_message_bytes=", kMaxMessageBytes)};
  for (const std::string& flag : absl::GetFlag(FLAGS_server_flags)) {
    server_args.push_back(flag);
  }
  absl::StatusOr<ChildProcess> kvq = ChildProcess::Start(server_args, 120);
  if (!kvq.ok()) {
    std::fprintf(stderr, "kvq-server: %s\n", kvq.status().ToString().c_str());
    return 1;
  }
  const std::string bare_preload = absl::GetFlag(FLAGS_bare_preload);
  absl::StatusOr<ChildProcess> bare = ChildProcess::Start(
      {self, "--serve_transport", "--listen=127.0.0.1:0",
       "--bare_api=" + bare_api},
      30,
      bare_preload.empty() ? std::vector<std::string>{}
                           : std::vector<std::string>{"LD_PRELOAD=" +
                                                      bare_preload});
  if (!bare.ok()) {
    std::fprintf(stderr, "transport: %s\n", bare.status().ToString().c_str());
    return 1;
  }
  int metrics_port = 0;
  if (!absl::SimpleAtoi(kvq->ready().at("metrics_port"), &metrics_port)) {
    std::fprintf(stderr, "kvq-server's ready file has no metrics_port\n");
    return 1;
  }
  const std::string kvq_address = "127.0.0.1:" + kvq->ready().at("grpc_port");
  const std::string bare_address =
      "127.0.0.1:" + bare->ready().at("grpc_port");
  const Endpoints endpoints{kvq_address, bare_address, metrics_port};

  // Where and how the numbers were made: on top of the markdown, and as
  // "# " comment lines on top of the CSV.
  const std::vector<std::pair<std::string, std::string>> facts = {
      {"command", absl::StrCat("`", command, "`")},
      {"machine", absl::StrCat(CpuDescription(), "; load average at start ",
                               load_at_start)},
      {"server", ServerLine(kvq_address)},
      {"bare", bare_preload.empty()
                   ? BareDescription(*ServerApiNamed(bare_api))
                   : absl::StrCat(BareDescription(*ServerApiNamed(bare_api)),
                                  ", with ", bare_preload, " preloaded")},
      {"date", absl::StrCat(UtcNow(), "; git revision ", GitRevision())},
  };
  std::ostringstream header, csv;
  header << "# kvq-bench-service\n\n";
  for (const auto& [what, text] : facts) {
    header << "- " << what << ": " << text << "\n";
    csv << "# " << what << ": " << text << "\n";
  }
  header << "\n"
         << "Client-side GB/s (1e9 bytes/s of FP16/FP32 data as the client "
            "sends or receives it), all streams together; `bare` is a gRPC "
            "service moving the same messages with no work behind it, in its "
            "own process like kvq-server: its clients are kvq's (data "
            "referenced, not copied), it reads puts and writes gets with "
            "kvq-server's own zero-copy message code, and drops what it "
            "receives (with --bare_api=sync-copy, after copying each put's "
            "data once, as kvq-server does) and sends a buffer filled at "
            "start; `kvq/bare` is "
            "kvq's share of that ceiling. With --repeats=N, kvq and bare run alternately N times: "
            "GB/s are medians, `kvq/bare` the median ratio of adjacent runs "
            "(`range`: the lowest and highest of them, how much the ceiling "
            "and kvq move between runs), latencies and server times cover all "
            "N. `window`: blocks a put "
            "stream has in flight (1: each block waits for the previous "
            "block's result; more: pipelined, results read while the next blocks "
            "go out; all: no bound, as kvq::Client::PutMany sends; the bare "
            "Upload runs with the same window); for a get, the keys (blocks) "
            "asked for in one "
            "Get RPC (bare Download: as many blocks in one call). Latency is "
            "per block: first chunk sent to result (put), "
            "request to the block's last chunk (get). `server data path` is the server's "
            "own work per block (a put's copy out of gRPC's buffers or "
            "its chunks' hand-over to the GPU, and its "
            "store, a get's fetch: pool bookkeeping, staging, DMA, kernel), "
            "`server transport` the rest of its receive "
            "(put) or its send (get) time per block, `server queue` the time "
            "a received put block waits for the thread that stores its "
            "stream's blocks (high: the store, not the transport, sets the "
            "pace), all from kvq_stage_duration_seconds on /metrics; the "
            "second table has every stage, ms per block (stages overlap: "
            "store and fetch contain index, the copies and the kernels; "
            "receive contains assemble), and `rpc`, the server's time in "
            "the RPC per block, from kvq_rpc_duration_seconds (for gets of "
            "one key a call, the whole call as the server saw it: the "
            "client's latency minus it is spent outside the handler).\n\n";
  std::fputs(header.str().c_str(), stdout);
  std::fflush(stdout);

  Table table({"op", "dtype", "block", "streams", "window", "blocks",
               "kvq GB/s",
               "bare GB/s", "kvq/bare", "range", "kvq p50 ms", "kvq p99 ms",
               "bare p50 ms", "bare p99 ms", "server data path ms/block",
               "server transport ms/block", "server queue ms/block"});
  std::vector<std::string> stage_columns = {"op", "dtype", "block",
                                            "streams", "window"};
  for (const std::string& stage : StageNames()) stage_columns.push_back(stage);
  stage_columns.push_back("rpc");
  Table stages(stage_columns);
  // The report so far, rewritten after every cell: a run cut short (the GPU
  // machine's command limit) still leaves the rows it measured.
  auto write_report = [&]() -> std::string {
    std::ostringstream markdown, table_csv;
    markdown << header.str();
    table.WriteMarkdown(markdown);
    markdown << "\n## Server stages, ms per block\n\n";
    stages.WriteMarkdown(markdown);
    table_csv << csv.str();
    table.WriteCsv(table_csv);
    const bool ok = WriteFile(absl::GetFlag(FLAGS_markdown), markdown.str()) &&
                    WriteFile(absl::GetFlag(FLAGS_csv), table_csv.str());
    return ok ? markdown.str() : std::string();
  };
  // --put_windows or --get_keys: counts >= 1 (`all_ok`: or "all", which is
  // kAllBlocks), or nullopt (said why).
  auto parse_counts = [](const char* flag,
                         const std::vector<std::string>& texts,
                         bool all_ok) -> std::optional<std::vector<int>> {
    std::vector<int> counts;
    for (const std::string& text : texts) {
      int n = 0;
      if (all_ok && text == "all") {
        counts.push_back(kAllBlocks);
        continue;
      }
      if (!absl::SimpleAtoi(text, &n) || n < 1) {
        std::fprintf(stderr, "bad --%s (%s: want >= 1%s)\n", flag,
                     text.c_str(), all_ok ? " or all" : "");
        return std::nullopt;
      }
      counts.push_back(n);
    }
    if (counts.empty()) {
      std::fprintf(stderr, "--%s is empty\n", flag);
      return std::nullopt;
    }
    return counts;
  };
  const std::optional<std::vector<int>> put_windows =
      parse_counts("put_windows", absl::GetFlag(FLAGS_put_windows),
                   /*all_ok=*/true);
  const std::optional<std::vector<int>> get_keys =
      parse_counts("get_keys", absl::GetFlag(FLAGS_get_keys),
                   /*all_ok=*/false);
  if (!put_windows || !get_keys) return 2;
  const std::vector<int>& windows = *put_windows;
  for (const std::string& dtype_name : absl::GetFlag(FLAGS_dtypes)) {
    absl::StatusOr<DType> dtype = ParseDType(dtype_name);
    if (!dtype.ok()) {
      std::fprintf(stderr, "--dtypes: %s\n", dtype.status().ToString().c_str());
      return 2;
    }
    for (const std::string& size_text : absl::GetFlag(FLAGS_block_sizes)) {
      for (const std::string& streams_text : absl::GetFlag(FLAGS_streams)) {
        Cell cell;
        cell.dtype = *dtype;
        if (!absl::SimpleAtoi(size_text, &cell.block_bytes) ||
            !absl::SimpleAtoi(streams_text, &cell.streams) ||
            cell.streams < 1 || cell.block_bytes == 0 ||
            CellShape(cell).tokens == 0 ||
            CellShape(cell).elements() * DTypeBytes(cell.dtype) !=
                cell.block_bytes) {
          std::fprintf(stderr,
                       "bad --block_sizes (%s: want a multiple of %llu bytes "
                       "for %s) or --streams (%s)\n",
                       size_text.c_str(),
                       static_cast<unsigned long long>(
                           2048 * DTypeBytes(cell.dtype)),
                       dtype_name.c_str(), streams_text.c_str());
          return 2;
        }
        cell.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
        cell.max_message_bytes = kMaxMessageBytes;

        // Warm-up, untimed, on both services: connections, server threads,
        // and the staging buffers a full pipeline keeps busy (allocating a
        // page-locked one takes milliseconds).
        Cell warm = cell;
        warm.tag = "warm";
        // A full pipeline: the deepest bounded window, and at least the
        // three blocks a kvq-server stream holds (one stored, one waiting,
        // one arriving: kvcache_service.cc) when the window is unbounded.
        warm.window = *std::max_element(windows.begin(), windows.end());
        if (std::find(windows.begin(), windows.end(), kAllBlocks) !=
            windows.end()) {
          warm.window = std::max(warm.window, 3);
        }
        const int warmup_blocks = absl::GetFlag(FLAGS_warmup_blocks);
        warm.blocks_per_stream =
            warmup_blocks >= 0 ? warmup_blocks : warm.window + 2;
        if (warm.blocks_per_stream > 0) {
          for (Workload w : {RunKvqPut, RunKvqGet}) {
            if (absl::StatusOr<CellResult> r = w(kvq_address, warm); !r.ok()) {
              std::fprintf(stderr, "warm-up: %s\n",
                           r.status().ToString().c_str());
              return 1;
            }
          }
          for (Workload w : {RunBareUpload, RunBareDownload}) {
            if (absl::StatusOr<CellResult> r = w(bare_address, warm); !r.ok()) {
              std::fprintf(stderr, "warm-up: %s\n",
                           r.status().ToString().c_str());
              return 1;
            }
          }
        }

        const uint64_t per_stream = absl::GetFlag(FLAGS_bytes_per_cell) /
                                    cell.streams / cell.block_bytes;
        cell.blocks_per_stream = static_cast<int>(std::clamp<uint64_t>(
            per_stream, absl::GetFlag(FLAGS_min_blocks),
            absl::GetFlag(FLAGS_max_blocks)));
        const uint64_t blocks =
            uint64_t(cell.blocks_per_stream) * cell.streams;

        // Every put window, then the gets (of the last put's blocks).
        std::vector<std::pair<bool, int>> ops;
        for (int w : windows) ops.push_back({true, w});
        for (int k : *get_keys) ops.push_back({false, k});
        for (const auto& [put, window] : ops) {
          Cell op_cell = cell;
          op_cell.window = window == kAllBlocks && put
                               ? cell.blocks_per_stream
                               : window;
          const std::string window_text =
              window == kAllBlocks ? "all" : Int(window);
          absl::StatusOr<OpResult> op = MeasureOp(put, op_cell, endpoints);
          if (!op.ok()) {
            std::fprintf(stderr, "%s %s %s x%d window %s: %s\n",
                         put ? "put" : "get", dtype_name.c_str(),
                         size_text.c_str(), cell.streams, window_text.c_str(),
                         op.status().ToString().c_str());
            return 1;
          }
          if (put && window != windows.back()) {
            // The next put stores the same keys: start it from an empty pool.
            if (absl::Status s = DeleteCellBlocks(kvq_address, cell); !s.ok()) {
              std::fprintf(stderr, "%s\n", s.ToString().c_str());
              return 1;
            }
          }
          table.AddRow({put ? "put" : "get", dtype_name,
                        BlockName(cell.block_bytes), Int(cell.streams),
                        window_text, Int(blocks), Fixed(op->kvq_gbps, 3),
                        Fixed(op->bare_gbps, 3), Fixed(op->ratio, 2),
                        Fixed(op->ratio_min, 2) + "-" + Fixed(op->ratio_max, 2),
                        Ms(op->kvq.percentile(0.5)),
                        Ms(op->kvq.percentile(0.99)),
                        Ms(op->bare.percentile(0.5)),
                        Ms(op->bare.percentile(0.99)),
                        Ms(op->server.data_path), Ms(op->server.transport),
                        Ms(op->server.queue)});
          std::vector<std::string> stage_row = {
              put ? "put" : "get", dtype_name, BlockName(cell.block_bytes),
              Int(cell.streams), window_text};
          for (const std::string& stage : StageNames()) {
            auto it = op->server.stages.find(stage);
            stage_row.push_back(op->server.data_path < 0 ||
                                        it == op->server.stages.end()
                                    ? "-"
                                    : Ms(it->second));
          }
          stage_row.push_back(Ms(op->server.rpc));
          stages.AddRow(std::move(stage_row));
          std::fprintf(stderr,
                       "%s %s %s x%d window %s: kvq %.3f GB/s, bare %.3f GB/s "
                       "(%.2f)\n",
                       put ? "put" : "get", dtype_name.c_str(),
                       BlockName(cell.block_bytes).c_str(), cell.streams,
                       window_text.c_str(), op->kvq_gbps, op->bare_gbps,
                       op->ratio);
        }
        write_report();
        for (const Cell& c : {cell, warm}) {
          if (c.blocks_per_stream == 0) continue;
          if (absl::Status s = DeleteCellBlocks(kvq_address, c); !s.ok()) {
            std::fprintf(stderr, "%s\n", s.ToString().c_str());
            return 1;
          }
        }
      }
    }
  }
  const std::string markdown = write_report();
  if (markdown.empty()) return 1;
  std::fputs(markdown.c_str() + header.str().size(), stdout);
  return 0;
}

}  // namespace
}  // namespace kvq::bench

int main(int argc, char** argv) {
  // The bare server (this program) and the clients handle messages as
  // kvq-server does, so the ceiling is gRPC's, not malloc's.
  kvq::wire::KeepMessageBuffersInHeap();
  const std::string command = kvq::bench::CommandLine(argc, argv);
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_serve_transport)) {
    // Started by Run() below, which checked the name.
    return kvq::bench::ServeTransport(
        absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_ready_file),
        kvq::bench::kMaxMessageBytes,
        kvq::bench::ServerApiNamed(absl::GetFlag(FLAGS_bare_api))
            .value_or(kvq::bench::ServerApi::kSync));
  }
  // This program's own path, to start itself as the transport server and to
  // find kvq-server beside it however it was invoked.
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "cannot read /proc/self/exe\n");
    return 1;
  }
  self[n] = '\0';
  return kvq::bench::Run(command, self);
}
