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

absl::StatusOr<CellResult> RunKvqPut(const std::string& address,
                                     const Cell& cell) {
  // Held by every data slice gRPC keeps (PutMessage), so it outlives them.
  const auto block = std::make_shared<const std::string>(RandomBlock(cell));
  const std::span<const std::byte> bytes =
      std::as_bytes(std::span<const char>(*block));
  const BlockShape shape = CellShape(cell);
  return RunStreams(address, cell, [&](int s, auto channel, auto& latencies) {
    // Put writing PutMessages, as kvq::Client::PutMany does for a block
    // with a data_owner: each chunk's data goes to gRPC referenced, not
    // copied.
    const grpc::internal::RpcMethod method = kvq::PutMethod(channel);
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
          kvq::v1::BlockHeader* header = request.mutable_header();
          header->set_namespace_("bench");
          header->set_key(BlockKey(cell, s, b));
          header->set_dtype(static_cast<kvq::v1::DType>(cell.dtype));
          header->mutable_shape()->set_planes(shape.planes);
          header->mutable_shape()->set_tokens(shape.tokens);
          header->mutable_shape()->set_heads(shape.heads);
          header->mutable_shape()->set_head_dim(shape.head_dim);
          request.set_sequence(b);
        }
        request.set_offset(offset);
        message.set_data(bytes.subspan(offset, n), block);
        request.set_last(offset + n == bytes.size());
        if (!stream->Write(message)) return absl::UnavailableError("Put write");
      }
      return absl::OkStatus();
    };
    auto receive = [&]() -> absl::Status {
      kvq::v1::PutResponse response;
      if (!stream->Read(&response)) return absl::UnavailableError("Put read");
      if (response.code() != 0) {
        return absl::InternalError(absl::StrCat("Put: ", response.message()));
      }
      return absl::OkStatus();
    };
    const absl::Status sent =
        SendBlocks(cell.blocks_per_stream, cell.window, send, receive,
                   [&] { context.TryCancel(); }, latencies);
    stream->WritesDone();
    return StreamOutcome("Put", sent, stream->Finish());
  });
}

absl::StatusOr<CellResult> RunKvqGet(const std::string& address,
                                     const Cell& cell) {
  return RunStreams(address, cell, [&](int s, auto channel, auto& latencies) {
    auto stub = kvq::v1::KVCache::NewStub(channel);
    kvq::v1::GetResponse response;
    for (int b = 0; b < cell.blocks_per_stream; ++b) {
      const Clock::time_point t0 = Clock::now();
      grpc::ClientContext context;
      kvq::v1::GetRequest request;
      request.set_namespace_("bench");
      request.add_keys(BlockKey(cell, s, b));
      request.set_chunk_bytes(cell.chunk_bytes);
      auto reader = stub->Get(&context, request);
      uint64_t bytes = 0;
      while (reader->Read(&response)) {
        if (response.code() != 0) {
          return absl::InternalError(absl::StrCat("Get: ", response.message()));
        }
        bytes += response.data().size();
      }
      grpc::Status status = reader->Finish();
      if (!status.ok()) return RpcError("Get", status);
      if (bytes != cell.block_bytes) {
        return absl::InternalError(absl::StrCat("Get returned ", bytes,
                                                " bytes, expected ",
                                                cell.block_bytes));
      }
      latencies.push_back(SecondsSince(t0));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<CellResult> RunBareUpload(const std::string& address,
                                         const Cell& cell) {
  const std::string block = RandomBlock(cell);
  return RunStreams(address, cell, [&](int s, auto channel, auto& latencies) {
    auto stub = Transport::NewStub(channel);
    grpc::ClientContext context;
    auto stream = stub->Upload(&context);
    auto send = [&](int) -> absl::Status {
      Chunk chunk;
      for (uint64_t offset = 0; offset < block.size();
           offset += cell.chunk_bytes) {
        const uint64_t n =
            std::min<uint64_t>(cell.chunk_bytes, block.size() - offset);
        chunk.set_data(block.data() + offset, n);
        chunk.set_last(offset + n == block.size());
        if (!stream->Write(chunk)) return absl::UnavailableError("Upload write");
      }
      return absl::OkStatus();
    };
    auto receive = [&]() -> absl::Status {
      Ack ack;
      if (!stream->Read(&ack)) return absl::UnavailableError("Upload read");
      return absl::OkStatus();
    };
    const absl::Status sent =
        SendBlocks(cell.blocks_per_stream, cell.window, send, receive,
                   [&] { context.TryCancel(); }, latencies);
    stream->WritesDone();
    return StreamOutcome("Upload", sent, stream->Finish());
  });
}

absl::StatusOr<CellResult> RunBareDownload(const std::string& address,
                                           const Cell& cell) {
  return RunStreams(address, cell, [&](int s, auto channel, auto& latencies) {
    auto stub = Transport::NewStub(channel);
    Chunk chunk;
    for (int b = 0; b < cell.blocks_per_stream; ++b) {
      const Clock::time_point t0 = Clock::now();
      grpc::ClientContext context;
      DownloadRequest request;
      request.set_block_bytes(cell.block_bytes);
      request.set_chunk_bytes(cell.chunk_bytes);
      auto reader = stub->Download(&context, request);
      while (reader->Read(&chunk)) {
      }
      grpc::Status status = reader->Finish();
      if (!status.ok()) return RpcError("Download", status);
      latencies.push_back(SecondsSince(t0));
    }
    return absl::OkStatus();
  });
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
