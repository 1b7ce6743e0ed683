#include "bench/service/service_workloads.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <semaphore>
#include <span>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/put_message.h"
#include "kernels/float_convert.h"
#include "kernels/status_macros.h"
#include "kvq/v1/kvcache.grpc.pb.h"
#include "transport.grpc.pb.h"

namespace kvq::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kPlanes = 2, kHeads = 8, kHeadDim = 128;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::shared_ptr<grpc::Channel> StreamChannel(const std::string& address,
                                             const Cell& cell, int stream) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(cell.max_message_bytes);
  // A distinct argument per stream gives each stream its own connection:
  // one connection is served by about one core.
  args.SetInt("kvq.bench.stream", stream);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

// One random block of the cell's dtype, uniform in [-1, 1], shared read-only
// by every stream.
std::string RandomBlock(const Cell& cell) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const uint64_t values = cell.block_bytes / DTypeBytes(cell.dtype);
  std::string block(cell.block_bytes, '\0');
  for (uint64_t i = 0; i < values; ++i) {
    const float x = uniform(rng);
    if (cell.dtype == DType::kFp32) {
      std::memcpy(&block[i * 4], &x, 4);
    } else {
      const uint16_t h =
          cell.dtype == DType::kFp16 ? FloatToHalf(x) : FloatToBf16(x);
      std::memcpy(&block[i * 2], &h, 2);
    }
  }
  return block;
}

std::string BlockKey(const Cell& cell, int stream, int block) {
  return absl::StrCat(cell.tag, "/", std::string(DTypeName(cell.dtype)), "/",
                      cell.block_bytes, "/s", stream, "/b", block);
}

// The header of block `block` of stream `stream`: its key, dtype and shape.
kvq::v1::BlockHeader CellHeader(const Cell& cell, int stream, int block) {
  const BlockShape shape = CellShape(cell);
  kvq::v1::BlockHeader header;
  header.set_namespace_("bench");
  header.set_key(BlockKey(cell, stream, block));
  header.set_dtype(static_cast<kvq::v1::DType>(cell.dtype));
  header.mutable_shape()->set_planes(shape.planes);
  header.mutable_shape()->set_tokens(shape.tokens);
  header.mutable_shape()->set_heads(shape.heads);
  header.mutable_shape()->set_head_dim(shape.head_dim);
  return header;
}

// Runs `per_stream(stream, channel, latencies)` on cell.streams threads that
// start together; the wall time covers all of them.
template <typename PerStream>
absl::StatusOr<CellResult> RunStreams(const std::string& address,
                                      const Cell& cell, PerStream per_stream) {
  std::latch start(cell.streams + 1);
  std::mutex mu;
  absl::Status first_error;
  CellResult result;
  std::vector<std::thread> threads;
  for (int s = 0; s < cell.streams; ++s) {
    threads.emplace_back([&, s] {
      std::shared_ptr<grpc::Channel> channel = StreamChannel(address, cell, s);
      channel->WaitForConnected(std::chrono::system_clock::now() +
                                std::chrono::seconds(10));
      std::vector<double> latencies;
      start.arrive_and_wait();
      absl::Status status = per_stream(s, channel, latencies);
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok() && first_error.ok()) first_error = status;
      result.latencies.insert(result.latencies.end(), latencies.begin(),
                              latencies.end());
    });
  }
  start.arrive_and_wait();
  const Clock::time_point t0 = Clock::now();
  for (std::thread& t : threads) t.join();
  result.seconds = SecondsSince(t0);
  if (!first_error.ok()) return first_error;
  result.bytes = uint64_t{cell.block_bytes} * cell.streams *
                 cell.blocks_per_stream;
  return result;
}

absl::Status RpcError(const char* what, const grpc::Status& status) {
  return absl::UnavailableError(
      absl::StrCat(what, ": ", status.error_message()));
}

// Sends `blocks` blocks over one bidirectional stream, send(b) writing
// block b's chunks and receive() reading one block's result, with at most
// `window` blocks sent and not yet answered; latencies[b] is from block b's
// first chunk to its result. window 1: send a block, wait for its result.
// Larger: results are read on a second thread while the next blocks go out,
// as a pipelining client does (kvq::Client::PutMany), and the window bounds
// the latency that queueing adds. `cancel` unblocks a pending receive when
// sending fails.
template <class Send, class Receive, class Cancel>
absl::Status SendBlocks(int blocks, int window, Send send, Receive receive,
                        Cancel cancel, std::vector<double>& latencies) {
  std::vector<Clock::time_point> sent(blocks);
  latencies.assign(blocks, 0);
  if (window <= 1) {
    for (int b = 0; b < blocks; ++b) {
      sent[b] = Clock::now();
      KVQ_RETURN_IF_ERROR(send(b));
      KVQ_RETURN_IF_ERROR(receive());
      latencies[b] = SecondsSince(sent[b]);
    }
    return absl::OkStatus();
  }
  std::counting_semaphore<> room(window);
  std::mutex mu;  // guards `sent`, written and read on both threads
  std::atomic<bool> failed{false};
  absl::Status received;
  std::thread reader([&] {
    for (int b = 0; b < blocks; ++b) {
      received = receive();
      if (!received.ok()) {
        failed = true;
        room.release(blocks);  // never leave the sender waiting
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        latencies[b] = SecondsSince(sent[b]);
      }
      room.release();
    }
  });
  absl::Status sending;
  for (int b = 0; b < blocks && !failed; ++b) {
    room.acquire();
    {
      std::lock_guard<std::mutex> lock(mu);
      sent[b] = Clock::now();
    }
    sending = send(b);
    if (!sending.ok()) {
      cancel();
      break;
    }
  }
  reader.join();
  return sending.ok() ? received : sending;
}

// The stream's own status when it failed, else what the blocks said.
absl::Status StreamOutcome(const char* what, const absl::Status& blocks,
                           const grpc::Status& finished) {
  if (!finished.ok()) return RpcError(what, finished);
  return blocks;
}

}  // namespace

double CellResult::percentile(double p) const {
  if (latencies.empty()) return 0;
  std::vector<double> sorted = latencies;
  std::sort(sorted.begin(), sorted.end());
  const size_t i = std::min(sorted.size() - 1,
                            static_cast<size_t>(p * (sorted.size() - 1) + 0.5));
  return sorted[i];
}

BlockShape CellShape(const Cell& cell) {
  const uint64_t token_bytes =
      uint64_t{kPlanes} * kHeads * kHeadDim * DTypeBytes(cell.dtype);
  return BlockShape{kPlanes, static_cast<uint32_t>(cell.block_bytes / token_bytes),
                    kHeads, kHeadDim};
}

namespace {

// `cell`'s puts over the method `method_on(channel)` names (`what`: a bidi
// stream of PutRequests, answered with a PutResponse per block):
// PutMessages, each chunk's data referenced, not copied, as
// kvq::Client::PutMany sends a block with a data_owner. kvq's Put and bare
// Upload get the very same messages.
template <class MethodOn>
absl::StatusOr<CellResult> RunPuts(const std::string& address,
                                   const Cell& cell, const char* what,
                                   MethodOn method_on) {
  // Held by every data slice gRPC keeps (PutMessage), so it outlives them.
  const auto block = std::make_shared<const std::string>(RandomBlock(cell));
  const std::span<const std::byte> bytes =
      std::as_bytes(std::span<const char>(*block));
  return RunStreams(address, cell, [&](int s, auto channel, auto& latencies) {
    const grpc::internal::RpcMethod method = method_on(channel);
    grpc::ClientContext context;
    std::unique_ptr<kvq::PutMessageStream> stream =
        kvq::StartPutStream(channel.get(), method, &context);
    auto send = [&](int b) -> absl::Status {
      kvq::PutMessage message;
      kvq::v1::PutRequest& request = message.fields();
      for (uint64_t offset = 0; offset < bytes.size();
           offset += cell.chunk_bytes) {
        const uint64_t n =
            std::min<uint64_t>(cell.chunk_bytes, bytes.size() - offset);
        request.Clear();
        if (offset == 0) {
          *request.mutable_header() = CellHeader(cell, s, b);
          request.set_sequence(b);
        }
        request.set_offset(offset);
        message.set_data(bytes.subspan(offset, n), block);
        request.set_last(offset + n == bytes.size());
        if (!stream->Write(message)) {
          return absl::UnavailableError(absl::StrCat(what, " write"));
        }
      }
      return absl::OkStatus();
    };
    auto receive = [&]() -> absl::Status {
      kvq::v1::PutResponse response;
      if (!stream->Read(&response)) {
        return absl::UnavailableError(absl::StrCat(what, " read"));
      }
      if (response.code() != 0) {
        return absl::InternalError(
            absl::StrCat(what, ": ", response.message()));
      }
      return absl::OkStatus();
    };
    const absl::Status sent =
        SendBlocks(cell.blocks_per_stream, cell.window, send, receive,
                   [&] { context.TryCancel(); }, latencies);
    stream->WritesDone();
    return StreamOutcome(what, sent, stream->Finish());
  });
}

// Reads the answers to one Get of `keys` keys off `reader` (kvq's Get and
// bare Download answer alike), checks that every key's bytes came, and adds
// each key's latency, from `requested` to its last chunk.
template <class Reader>
absl::Status ReadBlocks(const char* what, Reader& reader, const Cell& cell,
                        int keys, Clock::time_point requested,
                        std::vector<double>& latencies) {
  kvq::v1::GetResponse response;
  std::vector<uint64_t> bytes(keys, 0);
  int finished = 0;
  while (reader.Read(&response)) {
    if (response.code() != 0) {
      return absl::InternalError(absl::StrCat(what, ": ", response.message()));
    }
    if (response.key_index() >= static_cast<uint32_t>(keys)) {
      return absl::InternalError(absl::StrCat(what, " answered key_index ",
                                              response.key_index()));
    }
    bytes[response.key_index()] += response.data().size();
    if (response.last()) {
      latencies.push_back(SecondsSince(requested));
      ++finished;
    }
  }
  grpc::Status status = reader.Finish();
  if (!status.ok()) return RpcError(what, status);
  for (int k = 0; k < keys; ++k) {
    if (bytes[k] != cell.block_bytes) {
      return absl::InternalError(absl::StrCat(what, " returned ", bytes[k],
                                              " bytes of key ", k,
                                              ", expected ", cell.block_bytes));
    }
  }
  if (finished != keys) {
    return absl::InternalError(
        absl::StrCat(what, " ended ", finished, " of ", keys, " keys"));
  }
  return absl::OkStatus();
}

// The gets of `cell`, Cell::window keys per call (the last call of a
// stream may have fewer), each stream through a stub of its own,
// NewStub(channel): get(stub, stream, first_block, keys, latencies) makes
// one call.
template <class NewStub, class GetCall>
absl::StatusOr<CellResult> RunGets(const std::string& address,
                                   const Cell& cell, NewStub new_stub,
                                   GetCall get) {
  return RunStreams(address, cell, [&](int s, auto channel, auto& latencies) {
    const auto stub = new_stub(channel);
    const int per_call = std::max(1, cell.window);
    for (int b = 0; b < cell.blocks_per_stream; b += per_call) {
      const int keys = std::min(per_call, cell.blocks_per_stream - b);
      KVQ_RETURN_IF_ERROR(get(*stub, s, b, keys, latencies));
    }
    return absl::OkStatus();
  });
}

}  // namespace

absl::StatusOr<CellResult> RunKvqPut(const std::string& address,
                                     const Cell& cell) {
  return RunPuts(address, cell, "Put", kvq::PutMethod);
}

absl::StatusOr<CellResult> RunBareUpload(const std::string& address,
                                         const Cell& cell) {
  // Names the string RpcMethod keeps a pointer to: it must outlive the call.
  static const std::string kUpload =
      absl::StrCat("/", Transport::service_full_name(), "/Upload");
  return RunPuts(address, cell, "Upload", [](auto channel) {
    return grpc::internal::RpcMethod(
        kUpload.c_str(), grpc::internal::RpcMethod::BIDI_STREAMING, channel);
  });
}

absl::StatusOr<CellResult> RunKvqGet(const std::string& address,
                                     const Cell& cell) {
  auto get = [&](kvq::v1::KVCache::Stub& stub, int s, int first, int keys,
                 std::vector<double>& latencies) {
    grpc::ClientContext context;
    kvq::v1::GetRequest request;
    request.set_namespace_("bench");
    for (int k = 0; k < keys; ++k) request.add_keys(BlockKey(cell, s, first + k));
    request.set_chunk_bytes(cell.chunk_bytes);
    const Clock::time_point t0 = Clock::now();
    auto reader = stub.Get(&context, request);
    return ReadBlocks("Get", *reader, cell, keys, t0, latencies);
  };
  return RunGets(
      address, cell,
      [](auto channel) { return kvq::v1::KVCache::NewStub(channel); }, get);
}

absl::StatusOr<CellResult> RunBareDownload(const std::string& address,
                                           const Cell& cell) {
  auto download = [&](Transport::Stub& stub, int s, int first, int keys,
                      std::vector<double>& latencies) {
    grpc::ClientContext context;
    DownloadRequest request;
    for (int k = 0; k < keys; ++k) {
      *request.add_headers() = CellHeader(cell, s, first + k);
    }
    request.set_block_bytes(cell.block_bytes);
    request.set_chunk_bytes(cell.chunk_bytes);
    const Clock::time_point t0 = Clock::now();
    auto reader = stub.Download(&context, request);
    return ReadBlocks("Download", *reader, cell, keys, t0, latencies);
  };
  return RunGets(
      address, cell, [](auto channel) { return Transport::NewStub(channel); },
      download);
}

absl::Status DeleteCellBlocks(const std::string& address, const Cell& cell) {
  auto stub = kvq::v1::KVCache::NewStub(StreamChannel(address, cell, 0));
  kvq::v1::DeleteRequest request;
  request.set_namespace_("bench");
  for (int s = 0; s < cell.streams; ++s) {
    for (int b = 0; b < cell.blocks_per_stream; ++b) {
      request.add_keys(BlockKey(cell, s, b));
    }
  }
  grpc::ClientContext context;
  kvq::v1::DeleteResponse response;
  grpc::Status status = stub->Delete(&context, request, &response);
  return status.ok() ? absl::OkStatus() : RpcError("Delete", status);
}

}  // namespace kvq::bench
