#include "bench/service/transport_service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>

#include "transport.grpc.pb.h"

namespace kvq::bench {
namespace {

class TransportService final : public Transport::Service {
 public:
  grpc::Status Upload(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<Ack, Chunk>* stream) override {
    Chunk chunk;
    uint64_t bytes = 0;
    while (stream->Read(&chunk)) {
      bytes += chunk.data().size();
      if (chunk.last()) {
        Ack ack;
        ack.set_bytes(bytes);
        if (!stream->Write(ack)) break;
        bytes = 0;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Download(grpc::ServerContext* context,
                        const DownloadRequest* request,
                        grpc::ServerWriter<Chunk>* writer) override {
    const uint64_t chunk_bytes = std::max<uint32_t>(request->chunk_bytes(), 1);
    const uint64_t block_bytes = request->block_bytes();
    // Like kvq's Get, the block sits in a buffer and each chunk is copied
    // into its message. The buffer is filled once for the whole process:
    // producing the bytes is work, and this service is the no-work ceiling.
    // (A buffer per thread was refilled whenever gRPC started a new handler
    // thread, which made the ceiling slower than kvq at 1 MiB.)
    const std::shared_ptr<const std::string> block = BlockOfAtLeast(block_bytes);
    Chunk chunk;
    for (uint64_t offset = 0; offset < block_bytes; offset += chunk_bytes) {
      const uint64_t n = std::min<uint64_t>(chunk_bytes, block_bytes - offset);
      chunk.set_data(block->data() + offset, n);
      chunk.set_last(offset + n == block_bytes);
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status::OK;
  }

 private:
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
