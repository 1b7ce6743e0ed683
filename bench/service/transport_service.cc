#include "bench/service/transport_service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "server/service/get_chunk.h"
#include "server/service/put_chunk.h"
#include "transport.grpc.pb.h"

namespace kvq::bench {
namespace {

// Upload's and Download's indexes among the service's methods (the order of
// transport.proto).
constexpr int kUploadMethodIndex = 0;
constexpr int kDownloadMethodIndex = 1;

// kvq-server's Put and Get without the work: the same readers and writers
// (PutChunk, GetChunk) registered the same way (kvcache_service.cc), so that
// the two services differ only in what kvq does with the bytes.
class TransportService final : public Transport::Service {
 public:
  TransportService() {
    MarkMethodStreamed(
        kUploadMethodIndex,
        new grpc::internal::BidiStreamingHandler<TransportService, PutChunk,
                                                 v1::PutResponse>(
            [](TransportService* service, grpc::ServerContext* /*context*/,
               grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream) {
              return service->HandleUpload(stream);
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
  // Answers each block, once its last chunk is in, with what kvq's Put
  // answers (sequence, key, bytes); the data is let go of unread.
  grpc::Status HandleUpload(
      grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream) {
    PutChunk chunk;
    v1::PutResponse response;
    uint64_t bytes = 0;
    while (stream->Read(&chunk)) {
      const v1::PutRequest& fields = chunk.fields();
      if (fields.has_header()) {
        response.set_sequence(fields.sequence());
        response.set_key(fields.header().key());
      }
      bytes += chunk.data_size();
      chunk.ReleaseData();
      if (!fields.last()) continue;
      response.set_logical_bytes(bytes);
      response.set_stored_bytes(bytes);
      if (!stream->Write(response)) break;
      bytes = 0;
    }
    return grpc::Status::OK;
  }

  // Sends the blocks as kvq's Get does (ForEachBlockChunk), from one buffer
  // filled once for the whole process: producing the bytes is work, and
  // this service is the no-work ceiling.
  grpc::Status HandleDownload(
      grpc::ServerSplitStreamer<DownloadRequest, GetChunk>* stream) {
    DownloadRequest request;
    if (!stream->Read(&request)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "no DownloadRequest");
    }
    const uint64_t bytes = request.block_bytes();
    const std::shared_ptr<const std::string> block = BlockOfAtLeast(bytes);
    for (int i = 0; i < request.headers_size(); ++i) {
      if (!ForEachBlockChunk(
              static_cast<uint32_t>(i), request.headers(i),
              std::as_bytes(std::span<const char>(block->data(), bytes)),
              block, std::max<uint32_t>(request.chunk_bytes(), 1),
              [stream](const GetChunk& chunk) {
                return stream->Write(chunk);
              })) {
        break;  // the client went away
      }
    }
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
};

}  // namespace

int ServeTransport(const std::string& listen, const std::string& ready_file,
                   int max_message_bytes) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TransportService service;
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
