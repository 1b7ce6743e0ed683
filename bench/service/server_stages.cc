#include "bench/service/server_stages.h"

#include <httplib.h>

#include <sstream>

#include "absl/strings/numbers.h"

namespace kvq::bench {

namespace {

// Adds the _sum and _count samples of histogram `family` to `totals`, each
// under its `label`'s value with `key_prefix` in front; false if there were
// none.
bool AddHistogramTotals(const std::string& body, const std::string& family,
                        const std::string& label,
                        const std::string& key_prefix, StageTotals& totals) {
  const std::string prefix = family + "_";
  const std::string label_start = label + "=\"";
  bool found = false;
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t value_at = line.find(label_start);
    const size_t space = line.rfind(' ');
    if (value_at == std::string::npos || space == std::string::npos) continue;
    const size_t value_begin = value_at + label_start.size();
    const size_t value_end = line.find('"', value_begin);
    if (value_end == std::string::npos) continue;
    const std::string key =
        key_prefix + line.substr(value_begin, value_end - value_begin);
    double value = 0;
    if (!absl::SimpleAtod(line.substr(space + 1), &value)) continue;
    if (line.rfind(prefix + "sum", 0) == 0) {
      totals.sum[key] = value;
      found = true;
    }
    if (line.rfind(prefix + "count", 0) == 0) totals.count[key] = value;
  }
  return found;
}

}  // namespace

std::optional<StageTotals> ScrapeStages(int metrics_port) {
  httplib::Client http("127.0.0.1", metrics_port);
  httplib::Result res = http.Get("/metrics");
  if (!res || res->status != 200) return std::nullopt;
  StageTotals totals;
  if (!AddHistogramTotals(res->body, "kvq_stage_duration_seconds", "stage",
                          "", totals)) {
    return std::nullopt;
  }
  AddHistogramTotals(res->body, "kvq_rpc_duration_seconds", "rpc",
                     kRpcKeyPrefix, totals);
  return totals;
}

const std::vector<std::string>& StageNames() {
  static const auto* names = new std::vector<std::string>{
      "receive", "assemble", "queue", "store", "fetch", "index",
      "host_to_device", "quantize", "dequantize", "device_to_host", "send",
      "answer"};
  return *names;
}

ServerTime ServerTimePerBlock(const std::optional<StageTotals>& before,
                              const std::optional<StageTotals>& after,
                              bool put, uint64_t blocks) {
  ServerTime time;
  if (!before || !after || blocks == 0) return time;
  auto delta = [&](const std::string& stage) {
    auto a = after->sum.find(stage);
    auto b = before->sum.find(stage);
    return (a == after->sum.end() ? 0 : a->second) -
           (b == before->sum.end() ? 0 : b->second);
  };
  // A put's receive stage includes the copies out of gRPC's buffers, or
  // the hand-over of its chunks to the GPU (assemble): they are kvq's work,
  // not transport.
  // The rest of the server's work per block is the whole store (put) or
  // fetch (get): the pool's bookkeeping, staging, the backend's copies and
  // kernel and their calls.
  const double assemble = put ? delta("assemble") : 0;
  time.data_path = (assemble + delta(put ? "store" : "fetch")) / blocks;
  time.transport = (delta(put ? "receive" : "send") - assemble) / blocks;
  if (put) time.queue = delta("queue") / blocks;
  const std::string rpc = std::string(kRpcKeyPrefix) + (put ? "put" : "get");
  if (after->sum.contains(rpc)) time.rpc = delta(rpc) / blocks;
  for (const std::string& stage : StageNames()) {
    time.stages[stage] = delta(stage) / blocks;
  }
  return time;
}

}  // namespace kvq::bench
