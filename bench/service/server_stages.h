// What kvq-server spent per block, from its stage histograms
// (kvq_stage_duration_seconds on /metrics): scraped before and after a
// measured run, the difference of their sums over the blocks the run moved.
//
// A put's data path is the copy out of gRPC's buffers (assemble) plus the
// store; a get's is the fetch. Transport is the rest of a put's receive, or
// a get's send. Every stage is also given on its own (StageNames), for the
// benchmark's per-stage table, and so is the RPC's own time
// (kvq_rpc_duration_seconds).

#ifndef KVQ_BENCH_SERVICE_SERVER_STAGES_H_
#define KVQ_BENCH_SERVICE_SERVER_STAGES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvq::bench {

// What StageTotals files a kvq_rpc_duration_seconds series under, before
// its method: "rpc:get".
inline constexpr char kRpcKeyPrefix[] = "rpc:";

// Sum and count of every kvq_stage_duration_seconds series, by stage, and
// of every kvq_rpc_duration_seconds series, by kRpcKeyPrefix + method.
struct StageTotals {
  std::map<std::string, double> sum;
  std::map<std::string, double> count;
};

// nullopt when /metrics cannot be read or has no stage histograms (then the
// server columns say "-", never a made-up 0).
std::optional<StageTotals> ScrapeStages(int metrics_port);

// The stages of the per-stage table, in the server's order
// (server_metrics.h).
const std::vector<std::string>& StageNames();

// What the server spent per block between two scrapes.
struct ServerTime {
  double data_path = -1;  // kvq's own work, seconds per block; -1 unknown
  double transport = -1;  // receive (put) or send (get), seconds per block
  double queue = -1;      // a put block waiting for its storer; -1 for gets
  // The server's RPC time (kvq_rpc_duration_seconds: from the handler's
  // start to its status) per block: for gets of one key a call, the whole
  // call as the server saw it, so that the client's latency minus this is
  // the time outside the handler (transport both ways, the client). -1
  // where /metrics has no such series.
  double rpc = -1;
  std::map<std::string, double> stages;  // seconds per block, by stage
};

// Unknown (all -1, no stages) unless both scrapes worked and blocks > 0.
ServerTime ServerTimePerBlock(const std::optional<StageTotals>& before,
                              const std::optional<StageTotals>& after,
                              bool put, uint64_t blocks);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_SERVICE_SERVER_STAGES_H_
