#include "server/service/kvcache_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/service/header_validation.h"
#include "server/service/put_assembler.h"
#include "server/service/rpc_call.h"
#include "server/service/seconds_since.h"
#include "server/service/serial_executor.h"
#include "server/service/status_mapping.h"

namespace kvq {
namespace {

constexpr uint64_t kDefaultChunkBytes = uint64_t{1} << 20;
// Put's and Get's indexes among the service's methods (the order of
// kvcache.proto).
constexpr int kPutMethodIndex = 0;
constexpr int kGetMethodIndex = 1;
// Room left in a Get response for everything but the data: the header
// (key <= 1 KiB, namespace <= 128 bytes, shape) and protobuf framing.
constexpr uint64_t kResponseEnvelopeBytes = 16 << 10;

absl::Status ValidateKeys(
    const google::protobuf::RepeatedPtrField<std::string>& keys) {
  for (int i = 0; i < keys.size(); ++i) {
    if (absl::Status s = ValidateKey(keys[i], absl::StrCat("keys[", i, "]"));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ClientGone() {
  return absl::CancelledError(
      "the client went away before the answer was complete");
}

}  // namespace

uint64_t GetChunkBytes(uint32_t requested, uint64_t max_message_bytes) {
  const uint64_t cap = max_message_bytes > 2 * kResponseEnvelopeBytes
                           ? max_message_bytes - kResponseEnvelopeBytes
                           : std::max<uint64_t>(1, max_message_bytes / 2);
  const uint64_t wanted = requested == 0 ? kDefaultChunkBytes : requested;
  return std::min(wanted, cap);
}

KVCacheService::KVCacheService(BlockPool* pool, Backend* backend,
                               BlockStore* store, StagingPool* staging,
                               ServerMetrics* metrics, ServiceOptions options)
    : pool_(pool),
      backend_(backend),
      store_(store),
      staging_(staging),
      metrics_(metrics),
      options_(std::move(options)) {
  // The generated service registers its methods in the proto's order: Put
  // is method 0, Get method 1. Put's handler is replaced by one that reads
  // PutChunks, Get's by one that writes GetChunks.
  MarkMethodStreamed(
      kPutMethodIndex,
      new grpc::internal::BidiStreamingHandler<KVCacheService, PutChunk,
                                               v1::PutResponse>(
          [](KVCacheService* service, grpc::ServerContext* context,
             grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream) {
            return service->HandlePut(context, stream);
          },
          this));
  // MarkMethodStreamed also makes the method a bidi-streaming one, which a
  // server-streaming handler would wait on for a request that never comes;
  // a split-streaming handler reads the request itself (gRPC's generated
  // WithSplitStreamingMethod_Get registers the same way).
  MarkMethodStreamed(
      kGetMethodIndex,
      new grpc::internal::SplitServerStreamingHandler<v1::GetRequest,
                                                      GetChunk>(
          [this](grpc::ServerContext* context,
                 grpc::ServerSplitStreamer<v1::GetRequest, GetChunk>* stream) {
            return HandleGet(context, stream);
          }));
}

grpc::Status KVCacheService::HandlePut(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::PutResponse, PutChunk>* stream) {
  RpcCall call(*metrics_, Rpc::kPut, context);
  PutAssembler assembler(
      PutLimits{pool_->page_bytes(), pool_->pages_total()}, staging_,
      [backend = backend_](ConstBytes bytes) {
        return backend->ReadsInPlace(bytes);
      },
      [backend = backend_](const BlockLayout& layout, DType dtype) {
        return backend->StartUpload(layout, dtype);
      });
  // Written by the answering thread only; read after answers.Drain().
  uint64_t stored = 0, refused = 0, bytes_in = 0;
  std::atomic<bool> client_gone{false};
  auto summary = [&] {
    return absl::StrCat("stored=", stored, " refused=", refused,
                        " bytes_in=", bytes_in);
  };

  // Stores (or reports) one block and writes its result. Runs on `answers`
  // while this thread reads on: gRPC allows one reader and one writer of a
  // stream at a time. `queued_at`: when the block was handed over.
  auto answer = [&](PutEvent event,
                    std::chrono::steady_clock::time_point queued_at) {
    if (client_gone.load(std::memory_order_relaxed)) return;  // nobody to tell
    v1::PutResponse response;
    response.set_sequence(event.sequence);
    absl::Status status = std::move(event.status);
    if (status.ok()) {
      metrics_->ObserveStage(Stage::kQueue, SecondsSince(queued_at));
      const AssembledBlock& block = *event.block;
      absl::StatusOr<uint64_t> stored_bytes =
          block.upload() != nullptr
              ? store_->Store(block.header, *block.upload())
              : store_->Store(block.header, block.data());
      if (stored_bytes.ok()) {
        const uint64_t logical = block.header.logical_bytes();
        response.set_logical_bytes(logical);
        response.set_stored_bytes(*stored_bytes);
        metrics_->CountPut(block.header.dtype, logical);
        ++stored;
        bytes_in += logical;
      } else {
        status = stored_bytes.status();
      }
      // Free the staging (or gRPC's buffers) before the write may block.
      event.block.reset();
    }
    if (!status.ok()) {
      response.set_code(WireCode(status));
      response.set_message(call.ItemError(
          status, absl::StrCat("key=", DescribeKey(event.key),
                               " sequence=", event.sequence)));
      metrics_->CountPutError(WireCode(status));
      ++refused;
    }
    response.set_key(std::move(event.key));
    const auto write_start = std::chrono::steady_clock::now();
    if (!stream->Write(response)) {
      client_gone.store(true, std::memory_order_relaxed);
    }
    metrics_->ObserveStage(Stage::kAnswer, SecondsSince(write_start));
  };
  PutChunk request;
  {
    // One block may wait while one is stored and the next is assembled:
    // enough to overlap them, and at most three blocks' staging per stream.
    SerialExecutor answers(/*max_waiting=*/1);
    while (!client_gone.load(std::memory_order_relaxed) &&
           stream->Read(&request)) {
      std::vector<PutEvent> events = assembler.Feed(request);
      // The chunk lets go of gRPC's buffers before the next read (measured
      // on the H200 machine: a 32 MiB put received 1.5-2.5 ms faster when
      // they went back, bench/results/README.md); a block read in place
      // keeps its own references until the backend has read them.
      request.ReleaseData();
      for (PutEvent& event : events) {
        if (event.block.has_value()) {
          metrics_->ObserveStage(Stage::kReceive,
                                 SecondsSince(event.block->first_chunk_time));
          metrics_->ObserveStage(Stage::kAssemble,
                                 event.block->assemble_seconds);
        }
        answers.Submit(
            [&answer, event = std::move(event),
             queued_at = std::chrono::steady_clock::now()]() mutable {
              answer(std::move(event), queued_at);
            });
      }
    }
    answers.Drain();
  }
  if (client_gone.load(std::memory_order_relaxed)) {
    return call.Finish(ClientGone(), summary());
  }
  if (!request.parse_status().ok()) {
    // A message that is not a PutRequest ends the stream (gRPC reads no
    // further); an incomplete block dies with the assembler.
    return call.Finish(request.parse_status(), summary());
  }
  if (context->IsCancelled()) {
    // Cancel, disconnect, deadline, shutdown or a message over the size
    // limit (gRPC answers the client itself then): an incomplete block dies
    // with the assembler, nothing of it stored.
    return call.Finish(
        absl::CancelledError(
            "the stream was cancelled (client cancel or disconnect, deadline, "
            "server shutdown, or a message over --max_message_bytes); an "
            "incomplete block was dropped"),
        summary());
  }
  return call.Finish(assembler.Finish(), summary());
}

grpc::Status KVCacheService::HandleGet(
    grpc::ServerContext* context,
    grpc::ServerSplitStreamer<v1::GetRequest, GetChunk>* stream) {
  RpcCall call(*metrics_, Rpc::kGet, context);
  v1::GetRequest request;
  if (!stream->Read(&request)) {
    // The server reads a Get's request itself (it is registered as a split
    // stream): no request is a client gone before sending one, or bytes that
    // do not parse as a GetRequest.
    if (context->IsCancelled()) {
      return call.Finish(ClientGone(), "request unread");
    }
    return call.Finish(
        absl::InvalidArgumentError(
            "the request is not a valid kvq.v1.GetRequest: it does not parse "
            "(e.g. a namespace that is not UTF-8)"),
        "request unread");
  }
  uint64_t hits = 0, misses = 0, failed = 0, bytes_out = 0;
  auto summary = [&] {
    return absl::StrCat("keys=", request.keys_size(), " hits=", hits,
                        " misses=", misses, " failed=", failed,
                        " bytes_out=", bytes_out);
  };
  if (absl::Status s = ValidateNamespace(request.namespace_(), "namespace");
      !s.ok()) {
    return call.Finish(s, summary());
  }
  absl::StatusOr<std::optional<DType>> dtype =
      GetDTypeFromWire(request.dtype(), "dtype");
  if (!dtype.ok()) return call.Finish(dtype.status(), summary());
  const uint64_t chunk_bytes =
      GetChunkBytes(request.chunk_bytes(), options_.max_message_bytes);
  auto write = [stream](const GetChunk& chunk) { return stream->Write(chunk); };

  for (int i = 0; i < request.keys_size(); ++i) {
    const uint32_t key_index = static_cast<uint32_t>(i);
    const std::string& key = request.keys(i);
    const absl::Status key_status =
        ValidateKey(key, absl::StrCat("keys[", i, "]"));
    // The block's chunks go out as their bytes become final (FetchProgress):
    // with CUDA, the first while the rest is still on its way from the GPU.
    // Every chunk's data slice shares the block: its buffer goes back to the
    // StagingPool once gRPC lets go of the last slice, which may be after
    // the write that sent it, or this call, has returned.
    // The send stage is the time spent writing, not the waits between
    // pieces (those are the fetch's). The first key of a call that is the
    // server's only one goes out in four pieces (AnswerChunkBytes).
    std::optional<BlockChunks> chunks;
    uint64_t answer_chunk_bytes = chunk_bytes;
    auto piece_bytes = [&](uint64_t block_bytes) {
      const bool front_alone =
          i == 0 && metrics_->RpcsInFlight(Rpc::kPut) +
                            metrics_->RpcsInFlight(Rpc::kGet) ==
                        1;
      answer_chunk_bytes =
          AnswerChunkBytes(block_bytes, chunk_bytes, front_alone);
      return answer_chunk_bytes;
    };
    double send_seconds = 0;
    bool gone = false;
    auto send_ready = [&](const std::shared_ptr<const FetchedBlock>& block,
                          uint64_t ready_bytes) {
      if (gone) return;
      const auto send_start = std::chrono::steady_clock::now();
      if (!chunks.has_value()) {
        chunks.emplace(key_index,
                       ToWireHeader(request.namespace_(), key, block->dtype,
                                    block->layout),
                       block->data.bytes(), block, answer_chunk_bytes);
      }
      gone = !chunks->WriteReady(ready_bytes, write);
      send_seconds += SecondsSince(send_start);
    };
    const FetchProgress progress{piece_bytes, send_ready};
    absl::StatusOr<std::shared_ptr<const FetchedBlock>> block =
        key_status.ok()
            ? store_->Fetch(request.namespace_(), key, *dtype, &progress)
            : absl::StatusOr<std::shared_ptr<const FetchedBlock>>(key_status);
    if (gone) return call.Finish(ClientGone(), summary());
    if (!block.ok()) {
      if (absl::IsNotFound(block.status())) {
        metrics_->CountGetMiss();
        ++misses;
      } else {
        ++failed;
      }
      // Also after part of the block went out: the client drops that part
      // (an error chunk ends a key's answer, kvcache.proto).
      GetChunk answer;
      v1::GetResponse& response = answer.fields();
      response.set_key_index(key_index);
      response.set_last(true);
      response.set_code(WireCode(block.status()));
      response.set_message(call.ItemError(
          block.status(), absl::StrCat("keys[", i, "]=", DescribeKey(key))));
      if (!write(answer)) return call.Finish(ClientGone(), summary());
      continue;
    }
    const uint64_t block_bytes = (*block)->data.size();
    metrics_->ObserveStage(Stage::kSend, send_seconds);
    metrics_->CountGetHit(block_bytes);
    ++hits;
    bytes_out += block_bytes;
  }
  return call.Finish(absl::OkStatus(), summary());
}

grpc::Status KVCacheService::Lookup(grpc::ServerContext* context,
                                    const v1::LookupRequest* request,
                                    v1::LookupResponse* response) {
  RpcCall call(*metrics_, Rpc::kLookup, context);
  absl::Status status = ValidateNamespace(request->namespace_(), "namespace");
  if (status.ok()) status = ValidateKeys(request->keys());
  if (!status.ok()) {
    return call.Finish(status, absl::StrCat("keys=", request->keys_size()));
  }
  uint64_t present = 0;
  bool prefix_unbroken = true;
  uint32_t prefix_length = 0;
  for (const std::string& key : request->keys()) {
    const bool held = pool_->Contains(request->namespace_(), key);
    response->add_present(held);
    present += held;
    prefix_unbroken = prefix_unbroken && held;
    prefix_length += prefix_unbroken;
  }
  response->set_prefix_length(prefix_length);
  metrics_->CountLookupKeys(request->keys_size(), present);
  return call.Finish(
      absl::OkStatus(),
      absl::StrCat("keys=", request->keys_size(), " present=", present,
                   " prefix_length=", prefix_length));
}

grpc::Status KVCacheService::Delete(grpc::ServerContext* context,
                                    const v1::DeleteRequest* request,
                                    v1::DeleteResponse* response) {
  RpcCall call(*metrics_, Rpc::kDelete, context);
  absl::Status status = ValidateNamespace(request->namespace_(), "namespace");
  if (status.ok()) status = ValidateKeys(request->keys());
  if (!status.ok()) {
    return call.Finish(status, absl::StrCat("keys=", request->keys_size()));
  }
  uint32_t deleted = 0;
  for (const std::string& key : request->keys()) {
    const bool existed = pool_->Erase(request->namespace_(), key);
    response->add_existed(existed);
    deleted += existed;
  }
  response->set_deleted(deleted);
  metrics_->CountDeletes(deleted);
  return call.Finish(absl::OkStatus(),
                     absl::StrCat("keys=", request->keys_size(),
                                  " deleted=", deleted));
}

grpc::Status KVCacheService::Stats(grpc::ServerContext* context,
                                   const v1::StatsRequest* request,
                                   v1::StatsResponse* response) {
  RpcCall call(*metrics_, Rpc::kStats, context);
  const PoolStats pool = pool_->Stats();
  const MemoryFigures memory = ComputeMemoryFigures(pool);
  const ServerMetrics::Totals totals = metrics_->totals();

  response->set_backend(std::string(backend_->name()));
  response->set_device_name(backend_->device_name());
  response->set_pool_capacity_bytes(memory.capacity_bytes);
  response->set_page_bytes(pool.page_bytes);
  response->set_pages_total(pool.pages_total);
  response->set_pages_used(pool.pages_used);
  response->set_blocks(pool.blocks);
  response->set_logical_bytes(pool.logical_bytes);
  response->set_stored_bytes(pool.stored_bytes);
  response->set_pool_used_bytes(memory.used_bytes);
  response->set_bytes_saved(
      memory.bytes_saved > 0 ? static_cast<uint64_t>(memory.bytes_saved) : 0);
  response->set_compression_ratio(memory.compression_ratio);
  response->set_puts(totals.puts);
  response->set_gets(totals.gets);
  response->set_hits(totals.hits);
  response->set_misses(totals.misses);
  response->set_evictions(pool.evictions);
  response->set_deletes(totals.deletes);
  response->set_uptime_seconds(totals.uptime_seconds);
  for (const NamespaceUsage& usage : pool.namespaces) {
    v1::NamespaceStats* ns = response->add_namespaces();
    ns->set_namespace_(usage.ns);
    ns->set_blocks(usage.blocks);
    ns->set_logical_bytes(usage.logical_bytes);
    ns->set_stored_bytes(usage.stored_bytes);
  }
  response->set_version(options_.version);
  return call.Finish(absl::OkStatus(), absl::StrCat("blocks=", pool.blocks));
}

}  // namespace kvq
