// kvq::Client: the C++ SDK for the kvq.v1.KVCache service.
//
// Contract:
//   - A Client owns one gRPC channel (one connection). It is thread-safe: any
//     number of threads may call it at once; every call is its own RPC. One
//     connection is served by about one core, so for more throughput open
//     several Clients rather than sharing one.
//   - Every call carries a deadline of `ClientOptions::deadline`, counted from
//     the moment the call starts.
//   - A failed RPC comes back as an absl::Status with the gRPC code and the
//     server's message unchanged. A problem of one block or one key (a refused
//     block, a miss) is not an RPC failure: it is in that result's `status`,
//     with the code the server reported (google.rpc.Code numbers equal
//     absl::StatusCode numbers).
//   - Data is the block's raw elements: planes x tokens x heads x head_dim
//     values of the block's dtype, row-major (head_dim fastest), little-endian
//     (client/element_codec.h converts from and to float).
//   - Put sends each block as ordered chunks of at most `chunk_bytes` data
//     bytes; PutMany pipelines many blocks over one stream, sending while the
//     results of earlier blocks come back. Get asks the server for chunks of
//     `chunk_bytes`, reassembles them and checks their offsets and total size
//     against the header, so a hit's `data` is always exactly the block;
//     GetInto writes blocks into the caller's memory instead.
//   - The client depends only on the generated wire API (kvq_proto), gRPC and
//     Abseil.

#ifndef KVQ_CLIENT_KVQ_CLIENT_H_
#define KVQ_CLIENT_KVQ_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/put_message.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "kvq/v1/kvcache.grpc.pb.h"
#include "kvq/v1/kvcache.pb.h"

namespace kvq {

struct ClientOptions {
  // Time allowed to each call, from its start to its last byte.
  absl::Duration deadline = absl::Seconds(30);
  // Largest gRPC message this client sends or accepts. Must leave room for a
  // chunk plus its header (chunk_bytes + 4 KiB).
  int max_message_bytes = 64 << 20;
  // Data bytes per Put chunk, and the chunk size asked of the server in Get.
  // Keep it below the server's --max_message_bytes (default 8 MiB).
  uint32_t chunk_bytes = 1 << 20;
};

// One block to store. Borrows every view until the call returns.
struct BlockToPut {
  std::string_view ns;   // namespace: model or tenant
  std::string_view key;  // opaque bytes, 1 to 1024
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  v1::BlockShape shape;
  v1::Quantization quantization;  // default: per-token-head INT8
  std::string_view data;          // the block's elements in `dtype`
  // Optional: something that keeps `data` alive and unchanged. With it, the
  // block is sent from where it lies, without a copy, and gRPC holds the
  // owner (not `data` itself) for as long as it holds any of the bytes,
  // possibly past PutMany's return. Without it, each chunk is copied once,
  // into its message.
  std::shared_ptr<const void> data_owner;
};

// What became of one block of a Put.
struct PutResult {
  absl::Status status;         // OK, or why the server refused the block
  std::string key;             // as echoed by the server
  uint64_t logical_bytes = 0;  // bytes as sent
  uint64_t stored_bytes = 0;   // bytes of the quantized payload
};

// The answer for one key of a Get.
struct GetResult {
  absl::Status status;     // OK for a hit, NOT_FOUND for a miss, or why not
  v1::BlockHeader header;  // hits only; header.dtype is the dtype returned
  std::string data;        // hits only: the whole block, dequantized
};

struct LookupResult {
  std::vector<bool> present;   // present[i]: keys[i] is held
  uint32_t prefix_length = 0;  // longest n with keys[0..n) all present
};

struct DeleteResult {
  uint32_t deleted = 0;       // keys that were held and are gone
  std::vector<bool> existed;  // existed[i]: keys[i] was held
};

// grpc.health.v1 serving status.
enum class ServingStatus { kUnknown, kServing, kNotServing, kServiceUnknown };
std::string_view ServingStatusName(ServingStatus status);  // "SERVING", ...

class Client {
 public:
  // Creates a client for `address` ("host:port"). The connection is made
  // lazily by the first call. INVALID_ARGUMENT for an empty address or
  // inconsistent options.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const std::string& address, const ClientOptions& options = {});

  // Stores one block. Returns the server's refusal (e.g. INVALID_ARGUMENT,
  // RESOURCE_EXHAUSTED) as the error, like an RPC failure.
  absl::StatusOr<PutResult> Put(std::string_view ns, std::string_view key,
                                v1::DType dtype, const v1::BlockShape& shape,
                                const v1::Quantization& quantization,
                                std::string_view data);
  absl::StatusOr<PutResult> Put(const BlockToPut& block);

  // Stores many blocks over one stream, pipelined. Results are in the order
  // of `blocks`; each says whether its block was stored. An RPC failure is
  // the error (blocks answered before it may have been stored).
  absl::StatusOr<std::vector<PutResult>> PutMany(
      std::span<const BlockToPut> blocks);

  // Fetches blocks, dequantized to `dtype` (UNSPECIFIED: the dtype each was
  // put with). One result per key, in the order of `keys`.
  absl::StatusOr<std::vector<GetResult>> Get(
      std::string_view ns, std::span<const std::string> keys,
      v1::DType dtype = v1::DTYPE_UNSPECIFIED);
  // Get into the caller's memory: keys[i]'s block is written to
  // destinations[i] (each chunk copied once, from gRPC's buffers), which
  // must be exactly the block's size in the dtype returned; results carry
  // status and header, and no data. A block of another size is
  // FAILED_PRECONDITION for its key and nothing of it is written; nothing
  // is ever written past a destination. After a key's error its
  // destination may hold part of the block. INVALID_ARGUMENT when the
  // counts differ. E.g. for a serving engine's own (page-locked) buffers:
  // no allocation per block, and no copy out of a result.
  absl::StatusOr<std::vector<GetResult>> GetInto(
      std::string_view ns, std::span<const std::string> keys,
      std::span<const std::span<std::byte>> destinations,
      v1::DType dtype = v1::DTYPE_UNSPECIFIED);
  // One key; a miss or a per-key error is returned as the error.
  absl::StatusOr<GetResult> GetOne(std::string_view ns, std::string_view key,
                                   v1::DType dtype = v1::DTYPE_UNSPECIFIED);

  absl::StatusOr<LookupResult> Lookup(std::string_view ns,
                                      std::span<const std::string> keys);
  absl::StatusOr<DeleteResult> Delete(std::string_view ns,
                                      std::span<const std::string> keys);
  absl::StatusOr<v1::StatsResponse> Stats();

  // grpc.health.v1.Health/Check for `service` ("" = the whole server).
  absl::StatusOr<ServingStatus> Health(const std::string& service = "");

  const ClientOptions& options() const { return options_; }
  // The channel, for callers that need a raw stub (e.g. tests).
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);
  void SetDeadline(grpc::ClientContext& context) const;
  // Get, or GetInto where `destinations` is not empty.
  absl::StatusOr<std::vector<GetResult>> GetBlocks(
      std::string_view ns, std::span<const std::string> keys, v1::DType dtype,
      std::span<const std::span<std::byte>> destinations);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KVCache::Stub> stub_;
  grpc::internal::RpcMethod put_method_;  // Put, writing PutMessages
  grpc::internal::RpcMethod get_method_;  // Get, reading GetAnswers
};

// gRPC status -> absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);
// A google.rpc.Code number and message from a response -> absl::Status.
absl::Status FromRpcCode(int32_t code, std::string_view message);

}  // namespace kvq

#endif  // KVQ_CLIENT_KVQ_CLIENT_H_
