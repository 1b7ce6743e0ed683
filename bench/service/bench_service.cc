// kvq-bench-service: a real kvq-server and real gRPC clients over loopback,
// measured against a bare gRPC service that moves the same bytes in the same
// stream shapes with no work behind them (the transport ceiling).
//
//   kvq-bench-service [--device=cpu|cuda] [--streams=1,4,16]
//                     [--block_sizes=65536,1048576,...] [--markdown=F --csv=F]
//
// For every dtype x block size x stream count it runs kvq Put, kvq Get, bare
// Upload and bare Download and reports client-side GB/s, each as a ratio to
// the bare figure, per-block latency p50/p99, and the server's own time per
// block (kernel + copies, from its stage histograms on /metrics), so that
// transport time and kvq's overhead are reported separately.

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/service/child_process.h"
#include "bench/service/service_workloads.h"
#include "bench/service/transport_service.h"
#include "kvq/v1/kvcache.grpc.pb.h"

ABSL_FLAG(std::string, server_binary, "",
          "kvq-server to start (default: next to this program)");
ABSL_FLAG(std::string, device, "auto", "--device for kvq-server");
ABSL_FLAG(std::vector<std::string>, dtypes, {"fp16", "fp32"}, "dtypes");
ABSL_FLAG(std::vector<std::string>, block_sizes,
          std::vector<std::string>({"65536", "262144", "1048576", "4194304",
                                    "16777216", "33554432"}),
          "block sizes in bytes (client-side)");
ABSL_FLAG(std::vector<std::string>, streams,
          std::vector<std::string>({"1", "2", "4", "8", "16"}),
          "concurrent client streams");
ABSL_FLAG(uint64_t, bytes_per_cell, 256ull << 20,
          "client bytes per measurement (split over streams)");
ABSL_FLAG(int, min_blocks, 8, "at least this many blocks per stream");
ABSL_FLAG(int, max_blocks, 256, "at most this many blocks per stream");
ABSL_FLAG(uint32_t, chunk_bytes, 1 << 20, "bytes per message");
ABSL_FLAG(uint64_t, pool_bytes, 4ull << 30, "--pool_bytes for kvq-server");
ABSL_FLAG(std::string, markdown, "", "write the table here too");
ABSL_FLAG(std::string, csv, "", "write CSV rows here");
// Internal: the transport server mode of this same binary.
ABSL_FLAG(bool, serve_transport, false, "internal: run the bare service");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "internal: transport address");
ABSL_FLAG(std::string, ready_file, "", "internal: transport ready file");

namespace kvq::bench {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

// Sum and count of every kvq_stage_duration_seconds series, by stage.
struct StageTotals {
  std::map<std::string, double> sum;
  std::map<std::string, double> count;
};

StageTotals ScrapeStages(const std::string& metrics_port) {
  StageTotals totals;
  httplib::Client http("127.0.0.1", std::stoi(metrics_port));
  httplib::Result res = http.Get("/metrics");
  if (!res || res->status != 200) return totals;
  std::istringstream lines(res->body);
  std::string line;
  const std::string prefix = "kvq_stage_duration_seconds_";
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t stage_at = line.find("stage=\"");
    const size_t space = line.rfind(' ');
    if (stage_at == std::string::npos || space == std::string::npos) continue;
    const size_t stage_end = line.find('"', stage_at + 7);
    const std::string stage = line.substr(stage_at + 7, stage_end - stage_at - 7);
    double value = 0;
    if (!absl::SimpleAtod(line.substr(space + 1), &value)) continue;
    if (line.rfind(prefix + "sum", 0) == 0) totals.sum[stage] = value;
    if (line.rfind(prefix + "count", 0) == 0) totals.count[stage] = value;
  }
  return totals;
}

// Server seconds per block spent in kvq's own data path (kernel and copies,
// not receive/send, which are transport) between two scrapes.
double ServerSecondsPerBlock(const StageTotals& before,
                             const StageTotals& after, uint64_t blocks) {
  double seconds = 0;
  for (const auto& [stage, sum] : after.sum) {
    if (stage == "receive" || stage == "send") continue;
    auto it = before.sum.find(stage);
    seconds += sum - (it == before.sum.end() ? 0 : it->second);
  }
  return blocks > 0 ? seconds / blocks : 0;
}

std::string MachineLine(const std::string& grpc_address) {
  std::string cpu = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::string server = "?";
  auto stub = kvq::v1::KVCache::NewStub(
      grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  kvq::v1::StatsResponse stats;
  if (stub->Stats(&context, kvq::v1::StatsRequest(), &stats).ok()) {
    server = absl::StrCat(stats.backend(), " backend on ", stats.device_name());
  }
  return absl::StrCat(sysconf(_SC_NPROCESSORS_ONLN), " x ", cpu, "; kvq-server: ",
                      server);
}

std::string Ms(double seconds) { return absl::StrFormat("%.3f", seconds * 1e3); }

int Run(int argc, char** argv) {
  std::string server_binary = absl::GetFlag(FLAGS_server_binary);
  const std::string self = argv[0];
  if (server_binary.empty()) {
    server_binary = self.substr(0, self.rfind('/') + 1) + "kvq-server";
  }
  absl::StatusOr<ChildProcess> kvq = ChildProcess::Start(
      {server_binary, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
       "--device=" + absl::GetFlag(FLAGS_device), "--log_level=warn",
       absl::StrCat("--pool_bytes=", absl::GetFlag(FLAGS_pool_bytes)),
       absl::StrCat("--max_message_bytes=", kMaxMessageBytes)},
      60);
  if (!kvq.ok()) {
    std::fprintf(stderr, "kvq-server: %s\n", kvq.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<ChildProcess> bare = ChildProcess::Start(
      {self, "--serve_transport", "--listen=127.0.0.1:0"}, 30);
  if (!bare.ok()) {
    std::fprintf(stderr, "transport: %s\n", bare.status().ToString().c_str());
    return 1;
  }
  const std::string kvq_address =
      "127.0.0.1:" + kvq->ready().at("grpc_port");
  const std::string metrics_port = kvq->ready().at("metrics_port");
  const std::string bare_address =
      "127.0.0.1:" + bare->ready().at("grpc_port");

  std::vector<std::string> args(argv + 1, argv + argc);
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::string table = absl::StrCat(
      "Command: `kvq-bench-service ", absl::StrJoin(args, " "), "`  \n",
      "Machine: ", MachineLine(kvq_address), "  \nDate: ", date, "\n\n",
      "| op | dtype | block | streams | kvq GB/s | bare GB/s | kvq/bare | "
      "kvq p50 ms | kvq p99 ms | bare p50 ms | bare p99 ms | "
      "server ms/block |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::string csv =
      "op,dtype,block_bytes,streams,kvq_gbps,bare_gbps,ratio,kvq_p50_s,"
      "kvq_p99_s,bare_p50_s,bare_p99_s,server_s_per_block\n";
  std::printf("%s", table.c_str());
  std::fflush(stdout);

  for (const std::string& dtype_name : absl::GetFlag(FLAGS_dtypes)) {
    absl::StatusOr<DType> dtype = ParseDType(dtype_name);
    if (!dtype.ok()) {
      std::fprintf(stderr, "%s\n", dtype.status().ToString().c_str());
      return 2;
    }
    for (const std::string& size_text : absl::GetFlag(FLAGS_block_sizes)) {
      for (const std::string& streams_text : absl::GetFlag(FLAGS_streams)) {
        Cell cell;
        cell.dtype = *dtype;
        if (!absl::SimpleAtoi(size_text, &cell.block_bytes) ||
            !absl::SimpleAtoi(streams_text, &cell.streams)) {
          std::fprintf(stderr, "bad --block_sizes or --streams\n");
          return 2;
        }
        cell.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
        cell.max_message_bytes = kMaxMessageBytes;
        const uint64_t per_stream =
            absl::GetFlag(FLAGS_bytes_per_cell) / cell.streams / cell.block_bytes;
        cell.blocks_per_stream = static_cast<int>(
            std::clamp<uint64_t>(per_stream, absl::GetFlag(FLAGS_min_blocks),
                                 absl::GetFlag(FLAGS_max_blocks)));
        const uint64_t blocks = uint64_t(cell.blocks_per_stream) * cell.streams;

        struct Pair {
          const char* op;
          absl::StatusOr<CellResult> (*kvq)(const std::string&, const Cell&);
          absl::StatusOr<CellResult> (*bare)(const std::string&, const Cell&);
        };
        for (const Pair& pair : {Pair{"put", RunKvqPut, RunBareUpload},
                                 Pair{"get", RunKvqGet, RunBareDownload}}) {
          const StageTotals before = ScrapeStages(metrics_port);
          absl::StatusOr<CellResult> ours = pair.kvq(kvq_address, cell);
          const StageTotals after = ScrapeStages(metrics_port);
          absl::StatusOr<CellResult> ceiling = pair.bare(bare_address, cell);
          if (!ours.ok() || !ceiling.ok()) {
            std::fprintf(stderr, "%s %s %s x%d: %s\n", pair.op,
                         dtype_name.c_str(), size_text.c_str(), cell.streams,
                         (!ours.ok() ? ours.status() : ceiling.status())
                             .ToString()
                             .c_str());
            return 1;
          }
          const double server = ServerSecondsPerBlock(before, after, blocks);
          const double ratio =
              ceiling->gbps() > 0 ? ours->gbps() / ceiling->gbps() : 0;
          const std::string row = absl::StrFormat(
              "| %s | %s | %s KiB | %d | %.2f | %.2f | %.2f | %s | %s | %s | "
              "%s | %s |\n",
              pair.op, dtype_name, absl::StrCat(cell.block_bytes >> 10),
              cell.streams, ours->gbps(), ceiling->gbps(), ratio,
              Ms(ours->percentile(0.5)), Ms(ours->percentile(0.99)),
              Ms(ceiling->percentile(0.5)), Ms(ceiling->percentile(0.99)),
              Ms(server));
          std::printf("%s", row.c_str());
          std::fflush(stdout);
          table += row;
          csv += absl::StrFormat("%s,%s,%d,%d,%.4f,%.4f,%.4f,%.6f,%.6f,%.6f,"
                                 "%.6f,%.6f\n",
                                 pair.op, dtype_name, cell.block_bytes,
                                 cell.streams, ours->gbps(), ceiling->gbps(),
                                 ratio, ours->percentile(0.5),
                                 ours->percentile(0.99),
                                 ceiling->percentile(0.5),
                                 ceiling->percentile(0.99), server);
        }
      }
    }
  }
  if (!absl::GetFlag(FLAGS_markdown).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_markdown)) << table;
  }
  if (!absl::GetFlag(FLAGS_csv).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_csv)) << csv;
  }
  return 0;
}

}  // namespace
}  // namespace kvq::bench

int main(int argc, char** argv) {
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_serve_transport)) {
    return kvq::bench::ServeTransport(absl::GetFlag(FLAGS_listen),
                                      absl::GetFlag(FLAGS_ready_file),
                                      kvq::bench::kMaxMessageBytes);
  }
  return kvq::bench::Run(argc, argv);
}
