// KVCacheService: the kvq.v1.KVCache gRPC service.
//
// It uses gRPC's synchronous API: each RPC runs on its own handler thread,
// and reads and writes block (the stream's flow control is the
// back-pressure). gRPC's performance guide prefers the callback API, but
// here the work is itself blocking CPU or GPU work (quantize, dequantize)
// that would stall a callback reactor's shared threads; a thread per stream
// keeps the protocols straight-line code with the same throughput. A Put
// stream that carries blocks has a second thread (SerialExecutor), which
// stores and answers each block while the handler receives the next, so
// that a pipelining client pays for transport or quantization, whichever is
// slower, not for both. Handler threads are bounded by the server's
// grpc::ResourceQuota (kvq-server's --max_threads): past it, new calls get
// RESOURCE_EXHAUSTED instead of an unbounded thread pile.
//
// Block- and key-level problems are reported in the responses (code +
// message) and the stream goes on; only problems of the whole call end it
// with a non-OK status. Every message carries the call's request id.
//
// Thread-safe: gRPC calls every method from many threads at once.

#ifndef KVQ_SERVER_SERVICE_KVCACHE_SERVICE_H_
#define KVQ_SERVER_SERVICE_KVCACHE_SERVICE_H_

#include <cstdint>
#include <string>

#include "kvq/v1/kvcache.grpc.pb.h"
#include "server/backend/backend.h"
#include "server/metrics/server_metrics.h"
#include "server/pool/block_pool.h"
#include "server/service/block_store.h"
#include "server/service/get_chunk.h"
#include "server/service/put_chunk.h"
#include "server/service/staging_pool.h"

namespace kvq {

struct ServiceOptions {
  // The server's gRPC receive limit (--max_message_bytes); Get answers are
  // chunked below it so that a peer with the same limit can read them.
  uint64_t max_message_bytes = uint64_t{8} << 20;
  std::string version;  // reported by Stats
};

// Data bytes per Get response: `requested` (0: 1 MiB), but at most what fits
// in a message of max_message_bytes with its header.
uint64_t GetChunkBytes(uint32_t requested, uint64_t max_message_bytes);

class KVCacheService final : public v1::KVCache::Service {
 public:
  // Every pointer must outlive the service.
  KVCacheService(BlockPool* pool, Backend* backend, BlockStore* store,
                 StagingPool* staging, ServerMetrics* metrics,
                 ServiceOptions options);

  // The Put RPC. It reads PutChunks rather than PutRequests (the
  // constructor registers it so), leaving each chunk's data in gRPC's
  // buffers until it is copied into the block (put_chunk.h).
  grpc::Status HandlePut(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream);
  // The Get RPC. It writes GetChunks rather than GetResponses (the
  // constructor registers it so), each chunk's data sent by gRPC straight
  // from the fetched block's buffer (get_chunk.h). It reads the one
  // GetRequest itself: a server-streaming call handled as a split stream.
  grpc::Status HandleGet(
      grpc::ServerContext* context,
      grpc::ServerSplitStreamer<v1::GetRequest, GetChunk>* stream);
  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* context,
                      const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context,
                     const v1::StatsRequest* request,
                     v1::StatsResponse* response) override;

 private:
  BlockPool* const pool_;
  Backend* const backend_;
  BlockStore* const store_;
  StagingPool* const staging_;
  ServerMetrics* const metrics_;
  const ServiceOptions options_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_KVCACHE_SERVICE_H_
