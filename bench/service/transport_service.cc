#include "bench/service/transport_service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"

#include "server/service/get_chunk.h"
#include "server/service/put_chunk.h"
#include "server/service/serial_executor.h"
#include "transport.grpc.pb.h"

namespace kvq::bench {
namespace {

// Upload's and Download's indexes among the service's methods (the order of
// transport.proto).
constexpr int kUploadMethodIndex = 0;
constexpr int kDownloadMethodIndex = 1;

// What Upload answers for each block once its last chunk is in: what kvq's
// Put answers (sequence, key, bytes). The data is let go of unread.
class UploadAnswers {
 public:
  // Takes the stream's next chunk; its block's answer when it was the last.
  std::optional<v1::PutResponse> Take(PutChunk& chunk) {
    const v1::PutRequest& fields = chunk.fields();
    if (fields.has_header()) {
      response_.set_sequence(fields.sequence());
      response_.set_key(fields.header().key());
    }
    bytes_ += chunk.data_size();
    chunk.ReleaseData();
    if (!fields.last()) return std::nullopt;
    response_.set_logical_bytes(bytes_);
    response_.set_stored_bytes(bytes_);
    bytes_ = 0;
    return response_;
  }

 private:
  v1::PutResponse response_;
  uint64_t bytes_ = 0;
};

// Bytes a Download sends from (kSyncFresh): blocks are taken from it one
// after another, so a block is sent again only after this much else, more
// than a server CPU's last-level cache holds (105 MiB on a Sapphire Rapids
// Xeon).
constexpr uint64_t kFreshBytes = uint64_t{512} << 20;

uint64_t AtStart() { return 0; }

// Where a Download's blocks come from: one buffer of `bytes`, and for each
// block (a key of the request) the offset at which it starts in it (by
// default every block at the start).
struct DownloadSource {
  std::shared_ptr<const std::string> bytes;
  absl::FunctionRef<uint64_t()> next_offset = AtStart;
};

// Download's chunks, as kvq's Get sends them (ForEachBlockChunk), all
// referencing `source.bytes`; stops when `write` returns false.
bool ForEachDownloadChunk(const DownloadRequest& request,
                          const DownloadSource& source,
                          absl::FunctionRef<bool(const GetChunk&)> write) {
  for (int i = 0; i < request.headers_size(); ++i) {
    const std::span<const std::byte> data =
        std::as_bytes(std::span<const char>(*source.bytes))
            .subspan(source.next_offset(), request.block_bytes());
    if (!ForEachBlockChunk(static_cast<uint32_t>(i), request.headers(i), data,
                           source.bytes,
                           std::max<uint32_t>(request.chunk_bytes(), 1),
                           write)) {
      return false;
    }
  }
  return true;
}

// Upload on gRPC's callback API: reads complete on gRPC's own threads, and
// answers queue behind the one write the API allows in flight.
class UploadReactor final
    : public grpc::ServerBidiReactor<PutChunk, v1::PutResponse> {
 public:
  UploadReactor() { StartRead(&chunk_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client is done sending, or gone
      std::lock_guard<std::mutex> lock(mu_);
      reads_done_ = true;
      if (!writing_) FinishOnce();
      return;
    }
    if (std::optional<v1::PutResponse> answer = answers_.Take(chunk_)) {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(*std::move(answer));
      if (!writing_) {
        writing_ = true;
        StartWrite(&pending_.front());
      }
    }
    StartRead(&chunk_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.pop_front();
    if (ok && !pending_.empty()) {
      StartWrite(&pending_.front());
      return;
    }
    writing_ = false;
    if (reads_done_ || !ok) FinishOnce();
  }

  void OnDone() override { delete this; }

 private:
  void FinishOnce() {  // mu_ held
    if (finished_) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  PutChunk chunk_;  // the read in flight
  UploadAnswers answers_;
  std::mutex mu_;
  std::deque<v1::PutResponse> pending_;  // front: the write in flight
  bool writing_ = false;
  bool reads_done_ = false;
  bool finished_ = false;
};

// Download on gRPC's callback API: the request's chunks (references to one
// shared block, no bytes copied) written one after another.
class DownloadReactor final : public grpc::ServerWriteReactor<GetChunk> {
 public:
  DownloadReactor(const DownloadRequest& request,
                  const std::shared_ptr<const std::string>& block) {
    ForEachDownloadChunk(request, {block}, [this](const GetChunk& chunk) {
      chunks_.push_back(chunk);
      return true;
    });
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {  // the client went away
      Finish(grpc::Status::OK);
      return;
    }
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (next_ == chunks_.size()) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&chunks_[next_++]);
  }

  std::vector<GetChunk> chunks_;
  size_t next_ = 0;
};

// kvq-server's Put and Get without the work: the same readers and writers
// (PutChunk, GetChunk) registered the same way (kvcache_service.cc), so that
// the two services differ only in what kvq does with the bytes; or the same
// on gRPC's callback API (ServerApi::kCallback), to see whether the sync API
// that kvq-server uses limits the ceiling.
class TransportService final : public Transport::Service {
 public:
  explicit TransportService(ServerApi api) {
    if (api == ServerApi::kSyncFresh) {
      fresh_ = std::make_shared<const std::string>(kFreshBytes, '\x5a');
    }
    if (api == ServerApi::kCallback) {
      MarkMethodCallback(
          kUploadMethodIndex,
          new grpc::internal::CallbackBidiHandler<PutChunk, v1::PutResponse>(
              [](grpc::CallbackServerContext*) { return new UploadReactor; }));
      MarkMethodCallback(
          kDownloadMethodIndex,
          new grpc::internal::CallbackServerStreamingHandler<DownloadRequest,
                                                             GetChunk>(
              [this](grpc::CallbackServerContext*,
                     const DownloadRequest* request) {
                return new DownloadReactor(
                    *request, BlockOfAtLeast(request->block_bytes()));
              }));
      return;
    }
    MarkMethodStreamed(
        kUploadMethodIndex,
        new grpc::internal::BidiStreamingHandler<TransportService, PutChunk,
                                                 v1::PutResponse>(
            [api](
                TransportService* service, grpc::ServerContext* /*context*/,
                grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream) {
              return service->HandleUpload(stream, api);
            },
            this));
    MarkMethodStreamed(
        kDownloadMethodIndex,
        new grpc::internal::SplitServerStreamingHandler<DownloadRequest,
                                                        GetChunk>(
            [this](grpc::ServerContext* /*context*/,
                   grpc::ServerSplitStreamer<DownloadRequest, GetChunk>*
                       stream) { return HandleDownload(stream); }));
  }

 private:
  // kSyncCopy: each chunk's data is copied into `block` first, at its
  // offset in the block, as kvq-server's PutAssembler does into the CUDA
  // backend's page-locked buffers (streaming writes). kSyncHold: the
  // chunks' slices are held until their block's answer is written.
  // kSyncAnswerThread: each answer is written by a thread of the stream's
  // own (kvq-server's SerialExecutor, with its bound), while this one reads
  // on, as kvq-server's Put handler does.
  grpc::Status HandleUpload(
      grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream,
      ServerApi api) {
    if (api == ServerApi::kSyncAnswerThread) return AnswerFromOwnThread(stream);
    PutChunk chunk;
    UploadAnswers answers;
    std::vector<std::byte> block;
    std::vector<grpc::Slice> held;
    while (stream->Read(&chunk)) {
      if (api == ServerApi::kSyncHold) {
        held.insert(held.end(), chunk.slices().begin(), chunk.slices().end());
      }
      if (api == ServerApi::kSyncCopy) {
        const uint64_t end = chunk.fields().offset() + chunk.data_size();
        if (block.size() < end) block.resize(end);  // faulted in once
        chunk.CopyDataTo(block.data() + chunk.fields().offset(),
                         CopyWrites::kStreaming);
      }
      std::optional<v1::PutResponse> answer = answers.Take(chunk);
      if (answer && !stream->Write(*answer)) break;
      if (answer) held.clear();
    }
    return grpc::Status::OK;
  }

  grpc::Status AnswerFromOwnThread(
      grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream) {
    PutChunk chunk;
    UploadAnswers answers;
    std::atomic<bool> client_gone{false};
    SerialExecutor writer(/*max_waiting=*/1);  // kvq-server's bound
    while (!client_gone.load(std::memory_order_relaxed) &&
           stream->Read(&chunk)) {
      if (std::optional<v1::PutResponse> answer = answers.Take(chunk)) {
        writer.Submit([stream, &client_gone, answer = *std::move(answer)] {
          if (!stream->Write(answer)) {
            client_gone.store(true, std::memory_order_relaxed);
          }
        });
      }
    }
    writer.Drain();
    return grpc::Status::OK;
  }

  // Sends from buffers filled once for the whole process: producing the
  // bytes is work, and this service is the no-work ceiling. Every block
  // from one block-sized buffer, or (kSyncFresh) each from the next
  // stretch of kFreshBytes, for blocks of up to half of it (bigger ones
  // from the one buffer: kFreshBytes would hold a single one).
  grpc::Status HandleDownload(
      grpc::ServerSplitStreamer<DownloadRequest, GetChunk>* stream) {
    DownloadRequest request;
    if (!stream->Read(&request)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "no DownloadRequest");
    }
    const uint64_t block_bytes = request.block_bytes();
    const bool fresh = fresh_ != nullptr && 2 * block_bytes <= fresh_->size();
    auto next_fresh_offset = [this, block_bytes] {
      const uint64_t slots = fresh_->size() / block_bytes;
      return next_fresh_.fetch_add(1, std::memory_order_relaxed) % slots *
             block_bytes;
    };
    const DownloadSource source =
        fresh ? DownloadSource{fresh_, next_fresh_offset}
              : DownloadSource{BlockOfAtLeast(block_bytes)};
    ForEachDownloadChunk(request, source, [stream](const GetChunk& chunk) {
      return stream->Write(chunk);
    });
    return grpc::Status::OK;
  }

  // The shared block, regrown (never shrunk) when a bigger one is asked for.
  std::shared_ptr<const std::string> BlockOfAtLeast(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (block_ == nullptr || block_->size() < bytes) {
      block_ = std::make_shared<const std::string>(bytes, '\x5a');
    }
    return block_;
  }

  std::mutex mu_;
  std::shared_ptr<const std::string> block_;
  // kSyncFresh: kFreshBytes, filled at start; the slot of the next block
  // sent, counted over all Downloads.
  std::shared_ptr<const std::string> fresh_;
  std::atomic<uint64_t> next_fresh_{0};
};

}  // namespace

std::optional<ServerApi> ServerApiNamed(std::string_view name) {
  if (name == "sync") return ServerApi::kSync;
  if (name == "callback") return ServerApi::kCallback;
  if (name == "sync-copy") return ServerApi::kSyncCopy;
  if (name == "sync-hold") return ServerApi::kSyncHold;
  if (name == "sync-answer-thread") return ServerApi::kSyncAnswerThread;
  if (name == "sync-fresh") return ServerApi::kSyncFresh;
  return std::nullopt;
}

std::string BareDescription(ServerApi api) {
  switch (api) {
    case ServerApi::kSync:
      return "gRPC sync API";
    case ServerApi::kCallback:
      return "gRPC callback API";
    case ServerApi::kSyncCopy:
      return "gRPC sync API, each put's data copied once "
             "(--bare_api=sync-copy)";
    case ServerApi::kSyncHold:
      return "gRPC sync API, each put's buffers held to its last chunk "
             "(--bare_api=sync-hold)";
    case ServerApi::kSyncAnswerThread:
      return "gRPC sync API, each put's answer written from a thread of its "
             "stream's own (--bare_api=sync-answer-thread)";
    case ServerApi::kSyncFresh:
      return "gRPC sync API, each get's block sent from the next stretch of "
             "512 MiB, not from the CPU's caches (--bare_api=sync-fresh)";
  }
  return "unknown";
}

int ServeTransport(const std::string& listen, const std::string& ready_file,
                   int max_message_bytes, ServerApi api) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TransportService service(api);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  // The same thread bound as kvq-server's default --max_threads.
  grpc::ResourceQuota quota("transport");
  quota.SetMaxThreads(256);
  builder.SetResourceQuota(quota);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "transport server: cannot listen on %s\n",
                 listen.c_str());
    return 1;
  }
  {
    std::ofstream(ready_file + ".tmp") << "grpc_port=" << port << "\n";
  }
  std::rename((ready_file + ".tmp").c_str(), ready_file.c_str());
  int signal = 0;
  sigwait(&signals, &signal);
  server->Shutdown();
  return 0;
}

}  // namespace kvq::bench
