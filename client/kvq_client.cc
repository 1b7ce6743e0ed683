#include "client/kvq_client.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "client/get_answer.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace kvq {
namespace {

// Room for a chunk's header (namespace, key, shape, framing) next to its data.
constexpr int kHeaderSlackBytes = 4096;
// Most bytes a Get reserves for a block before its chunks arrive.
constexpr uint64_t kGetReserveLimit = uint64_t{1} << 30;

// Sends `block` as ordered chunks of at most `chunk_bytes` data bytes, the
// first carrying the header and `sequence`: each chunk's data referenced
// where the block has an owner, else copied once, into the message. False
// once the stream is broken.
bool WriteBlock(PutMessageStream& stream, const BlockToPut& block, uint64_t sequence,
                uint32_t chunk_bytes) {
  const std::span<const std::byte> data(
      reinterpret_cast<const std::byte*>(block.data.data()), block.data.size());
  PutMessage message;
  v1::PutRequest& request = message.fields();
  uint64_t offset = 0;
  do {
    request.Clear();
    if (offset == 0) {
      v1::BlockHeader* header = request.mutable_header();
      header->set_namespace_(std::string(block.ns));
      header->set_key(std::string(block.key));
      header->set_dtype(block.dtype);
      *header->mutable_shape() = block.shape;
      *header->mutable_quantization() = block.quantization;
      request.set_sequence(sequence);
    }
    const uint64_t n = std::min<uint64_t>(chunk_bytes, data.size() - offset);
    request.set_offset(offset);
    message.set_data(data.subspan(offset, n), block.data_owner);
    offset += n;
    request.set_last(offset == data.size());
    if (!stream.Write(message)) return false;
  } while (offset < data.size());
  return true;
}

// Bytes a hit for `header` must hold; 0 when the header cannot say.
uint64_t ExpectedBytes(const v1::BlockHeader& header) {
  const v1::BlockShape& s = header.shape();
  return uint64_t{s.planes()} * s.tokens() * s.heads() * s.head_dim() *
         wire::ElementBytes(header.dtype());
}

// Per-key state while a Get stream is reassembled. kFailed: the client found
// the answer malformed and skips its remaining chunks.
enum class KeyState { kWaiting, kReceiving, kFailed, kDone };

}  // namespace

std::string_view ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::Status FromRpcCode(int32_t code, std::string_view message) {
  if (code < 0 ||
      code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(absl::StrCat("server sent unknown status code ",
                                           code, ": ", std::string(message)));
  }
  return absl::Status(static_cast<absl::StatusCode>(code),
                      std::string(message));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const std::string& address, const ClientOptions& options) {
  if (address.empty()) {
    return absl::InvalidArgumentError("server address must not be empty");
  }
  if (options.chunk_bytes == 0) {
    return absl::InvalidArgumentError("chunk_bytes must be >= 1");
  }
  if (options.max_message_bytes <= 0 ||
      uint64_t{options.chunk_bytes} + kHeaderSlackBytes >
          static_cast<uint64_t>(options.max_message_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes (", options.max_message_bytes,
                     ") must exceed chunk_bytes (", options.chunk_bytes,
                     ") by at least ", kHeaderSlackBytes));
  }
  if (options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("deadline must be positive");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  auto channel = grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<Client>(new Client(std::move(channel), options));
}

Client::Client(std::shared_ptr<grpc::Channel> channel,
               const ClientOptions& options)
    : options_(options),
      channel_(std::move(channel)),
      stub_(v1::KVCache::NewStub(channel_)),
      put_method_(PutMethod(channel_)),
      get_method_(GetMethod(channel_)) {}

void Client::SetDeadline(grpc::ClientContext& context) const {
  if (options_.deadline == absl::InfiniteDuration()) return;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMicroseconds(options_.deadline));
}

absl::StatusOr<PutResult> Client::Put(std::string_view ns, std::string_view key,
                                      v1::DType dtype,
                                      const v1::BlockShape& shape,
                                      const v1::Quantization& quantization,
                                      std::string_view data) {
  BlockToPut block;
  block.ns = ns;
  block.key = key;
  block.dtype = dtype;
  block.shape = shape;
  block.quantization = quantization;
  block.data = data;
  return Put(block);
}

absl::StatusOr<PutResult> Client::Put(const BlockToPut& block) {
  absl::StatusOr<std::vector<PutResult>> results =
      PutMany(std::span<const BlockToPut>(&block, 1));
  if (!results.ok()) return results.status();
  PutResult& result = results->front();
  if (!result.status.ok()) return result.status;
  return std::move(result);
}

absl::StatusOr<std::vector<PutResult>> Client::PutMany(
    std::span<const BlockToPut> blocks) {
  std::vector<PutResult> results(blocks.size());
  if (blocks.empty()) return results;

  grpc::ClientContext context;
  SetDeadline(context);
  std::unique_ptr<PutMessageStream> stream =
      StartPutStream(channel_.get(), put_method_, &context);

  // Results are read on their own thread so that the server never waits on
  // us while we send: the stream is pipelined both ways.
  std::vector<bool> answered(blocks.size(), false);
  size_t answers = 0;
  absl::Status protocol_error;
  std::thread reader([&] {
    v1::PutResponse response;
    while (stream->Read(&response)) {
      const uint64_t sequence = response.sequence();
      if (sequence >= blocks.size() || answered[sequence]) {
        protocol_error = absl::DataLossError(absl::StrCat(
            "server answered block sequence ", sequence,
            answered.size() > sequence ? " twice" : " that was never sent"));
        context.TryCancel();
        continue;  // drain until the cancellation ends the stream
      }
      answered[sequence] = true;
      ++answers;
      PutResult& result = results[sequence];
      result.status = FromRpcCode(response.code(), response.message());
      result.key = std::move(*response.mutable_key());
      result.logical_bytes = response.logical_bytes();
      result.stored_bytes = response.stored_bytes();
    }
  });

  bool stream_ok = true;
  for (size_t i = 0; i < blocks.size() && stream_ok; ++i) {
    stream_ok = WriteBlock(*stream, blocks[i], i, options_.chunk_bytes);
  }
  if (stream_ok) stream->WritesDone();
  reader.join();
  const grpc::Status status = stream->Finish();
  if (!protocol_error.ok()) return protocol_error;
  if (!status.ok()) return FromGrpcStatus(status);
  if (answers != blocks.size()) {
    return absl::DataLossError(absl::StrCat("server answered ", answers, " of ",
                                            blocks.size(), " blocks"));
  }
  return results;
}

absl::StatusOr<std::vector<GetResult>> Client::Get(
    std::string_view ns, std::span<const std::string> keys, v1::DType dtype) {
  return GetBlocks(ns, keys, dtype, {});
}

absl::StatusOr<std::vector<GetResult>> Client::GetInto(
    std::string_view ns, std::span<const std::string> keys,
    std::span<const std::span<std::byte>> destinations, v1::DType dtype) {
  if (destinations.size() != keys.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GetInto: ", destinations.size(), " destinations for ",
                     keys.size(), " keys"));
  }
  return GetBlocks(ns, keys, dtype, destinations);
}

absl::StatusOr<std::vector<GetResult>> Client::GetBlocks(
    std::string_view ns, std::span<const std::string> keys, v1::DType dtype,
    std::span<const std::span<std::byte>> destinations) {
  const bool into = !destinations.empty();  // else into results[i].data
  v1::GetRequest request;
  request.set_namespace_(std::string(ns));
  for (const std::string& key : keys) request.add_keys(key);
  request.set_dtype(dtype);
  request.set_chunk_bytes(options_.chunk_bytes);

  grpc::ClientContext context;
  SetDeadline(context);
  std::unique_ptr<GetAnswerStream> stream =
      StartGetStream(channel_.get(), get_method_, &context, request);

  std::vector<GetResult> results(keys.size());
  std::vector<KeyState> states(keys.size(), KeyState::kWaiting);
  std::vector<uint64_t> expected(keys.size(), 0);
  std::vector<uint64_t> received(keys.size(), 0);
  absl::Status protocol_error;
  GetAnswer answer;
  while (stream->Read(&answer)) {
    v1::GetResponse& response = answer.fields();  // all but the data
    const uint32_t index = response.key_index();
    if (index >= keys.size() || states[index] == KeyState::kDone) {
      protocol_error = absl::DataLossError(absl::StrCat(
          "server sent an answer for key index ", index,
          index < keys.size() ? " after its last chunk"
                              : absl::StrCat(" of ", keys.size(), " keys")));
      context.TryCancel();
      continue;  // drain until the cancellation ends the stream
    }
    GetResult& result = results[index];
    auto fail = [&](absl::Status status) {
      result.status = std::move(status);
      result.data.clear();
      states[index] = response.last() ? KeyState::kDone : KeyState::kFailed;
    };
    if (states[index] == KeyState::kFailed) {
      if (response.last()) states[index] = KeyState::kDone;
      continue;
    }
    if (response.code() != 0) {
      // A miss, or an error that ends this key's answer (even mid-block).
      result.status = FromRpcCode(response.code(), response.message());
      result.data.clear();
      states[index] = KeyState::kDone;
      continue;
    }
    if (states[index] == KeyState::kWaiting) {
      if (!response.has_header()) {
        fail(absl::DataLossError(
            absl::StrCat("first chunk of key index ", index, " has no header")));
        continue;
      }
      result.header = std::move(*response.mutable_header());
      expected[index] = ExpectedBytes(result.header);
      states[index] = KeyState::kReceiving;
      if (into && expected[index] != destinations[index].size()) {
        // Nothing of the block is written.
        fail(absl::FailedPreconditionError(absl::StrCat(
            "key index ", index, ": the block is ", expected[index],
            " bytes, its destination ", destinations[index].size())));
        continue;
      }
      // The chunks' data goes from gRPC's buffers straight into the block:
      // one copy, whatever the number of chunks. Room for at most
      // kGetReserveLimit up front, so that a header cannot make the client
      // allocate bytes that never come.
      if (!into) {
        result.data.reserve(
            response.last() ? answer.data_size()
                            : std::min(expected[index], kGetReserveLimit));
      }
    }
    if (response.offset() != received[index]) {
      fail(absl::DataLossError(absl::StrCat(
          "key index ", index, ": chunk at offset ", response.offset(),
          ", expected offset ", received[index])));
      continue;
    }
    if (into) {
      // Never past the destination, whatever the server sends.
      if (answer.data_size() > destinations[index].size() - received[index]) {
        fail(absl::DataLossError(absl::StrCat(
            "key index ", index, ": received more than the header's ",
            expected[index], " bytes")));
        continue;
      }
      answer.CopyDataTo(destinations[index].data() + received[index]);
    } else {
      answer.AppendDataTo(&result.data);
    }
    received[index] += answer.data_size();
    if (response.last()) {
      states[index] = KeyState::kDone;
      if (received[index] != expected[index]) {
        result.status = absl::DataLossError(
            absl::StrCat("key index ", index, ": received ", received[index],
                         " bytes, the header says ", expected[index]));
        result.data.clear();
      }
    }
  }
  const grpc::Status status = stream->Finish();
  if (!protocol_error.ok()) return protocol_error;
  if (!status.ok()) return FromGrpcStatus(status);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (states[i] == KeyState::kWaiting || states[i] == KeyState::kReceiving) {
      return absl::DataLossError(absl::StrCat(
          "server ended the stream without a complete answer for key index ",
          i));
    }
  }
  return results;
}

absl::StatusOr<GetResult> Client::GetOne(std::string_view ns,
                                         std::string_view key,
                                         v1::DType dtype) {
  const std::string keys[] = {std::string(key)};
  absl::StatusOr<std::vector<GetResult>> results = Get(ns, keys, dtype);
  if (!results.ok()) return results.status();
  GetResult& result = results->front();
  if (!result.status.ok()) return result.status;
  return std::move(result);
}

absl::StatusOr<LookupResult> Client::Lookup(std::string_view ns,
                                            std::span<const std::string> keys) {
  v1::LookupRequest request;
  request.set_namespace_(std::string(ns));
  for (const std::string& key : keys) request.add_keys(key);
  v1::LookupResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  const grpc::Status status = stub_->Lookup(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (static_cast<size_t>(response.present_size()) != keys.size()) {
    return absl::DataLossError(absl::StrCat("server answered ",
                                            response.present_size(), " of ",
                                            keys.size(), " keys in Lookup"));
  }
  LookupResult result;
  result.present.assign(response.present().begin(), response.present().end());
  result.prefix_length = response.prefix_length();
  return result;
}

absl::StatusOr<DeleteResult> Client::Delete(std::string_view ns,
                                            std::span<const std::string> keys) {
  v1::DeleteRequest request;
  request.set_namespace_(std::string(ns));
  for (const std::string& key : keys) request.add_keys(key);
  v1::DeleteResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  const grpc::Status status = stub_->Delete(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (static_cast<size_t>(response.existed_size()) != keys.size()) {
    return absl::DataLossError(absl::StrCat("server answered ",
                                            response.existed_size(), " of ",
                                            keys.size(), " keys in Delete"));
  }
  DeleteResult result;
  result.deleted = response.deleted();
  result.existed.assign(response.existed().begin(), response.existed().end());
  return result;
}

absl::StatusOr<v1::StatsResponse> Client::Stats() {
  v1::StatsResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  const grpc::Status status =
      stub_->Stats(&context, v1::StatsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<ServingStatus> Client::Health(const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING:
      return ServingStatus::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING:
      return ServingStatus::kNotServing;
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN:
      return ServingStatus::kServiceUnknown;
    default:
      return ServingStatus::kUnknown;
  }
}

}  // namespace kvq
