// The four workloads of kvq-bench-service, each run by N client streams at
// once (one channel, so one connection, per stream):
//   kvq Put        blocks as chunks on one bidi stream, one result per block,
//                  up to Cell::window blocks in flight
//   kvq Get        one Get RPC per Cell::window blocks (keys)
//   bare Upload    the same messages to the transport service, which reads
//                  them as kvq-server does and does nothing with them
//   bare Download  the same answers from the transport service, written as
//                  kvq-server writes them, from a buffer ready beforehand
// A block's latency is from its first chunk sent to its result (Put/Upload)
// or from the request to the block's last chunk received (Get/Download).

#ifndef KVQ_BENCH_SERVICE_SERVICE_WORKLOADS_H_
#define KVQ_BENCH_SERVICE_SERVICE_WORKLOADS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/format.h"

namespace kvq::bench {

struct Cell {
  DType dtype = DType::kFp16;
  uint64_t block_bytes = 0;  // a multiple of one token's bytes (2 x 8 x 128 values)
  int streams = 1;
  int blocks_per_stream = 1;
  // Put / Upload: blocks a stream sends before it has their results (1: each
  // block waits for the previous one's result). Get / Download: keys asked
  // for in one call.
  int window = 1;
  uint32_t chunk_bytes = 1 << 20;
  int max_message_bytes = 8 << 20;
  // Part of every key, so that warm-up blocks and measured blocks differ.
  std::string tag = "run";
};

struct CellResult {
  double seconds = 0;              // wall time, first block to last
  uint64_t bytes = 0;              // client-side bytes moved
  std::vector<double> latencies;   // per block, seconds
  double gbps() const { return seconds > 0 ? bytes / seconds / 1e9 : 0; }
  double percentile(double p) const;  // of latencies, seconds
};

// The kvq block shape used for `cell`: 2 planes x T tokens x 8 heads x 128.
BlockShape CellShape(const Cell& cell);

absl::StatusOr<CellResult> RunKvqPut(const std::string& address,
                                     const Cell& cell);
absl::StatusOr<CellResult> RunKvqGet(const std::string& address,
                                     const Cell& cell);
absl::StatusOr<CellResult> RunBareUpload(const std::string& address,
                                         const Cell& cell);
absl::StatusOr<CellResult> RunBareDownload(const std::string& address,
                                           const Cell& cell);

// Deletes the blocks RunKvqPut stored for `cell` (not timed), so that one
// cell's blocks never make the next cell evict.
absl::Status DeleteCellBlocks(const std::string& address, const Cell& cell);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_SERVICE_SERVICE_WORKLOADS_H_
