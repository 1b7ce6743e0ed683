#include "client/put_message.h"

#include <utility>

namespace kvq {

grpc::internal::RpcMethod PutMethod(
    std::shared_ptr<grpc::ChannelInterface> channel) {
  return grpc::internal::RpcMethod("/kvq.v1.KVCache/Put",
                                   grpc::internal::RpcMethod::BIDI_STREAMING,
                                   std::move(channel));
}

std::unique_ptr<PutMessageStream> StartPutStream(
    grpc::ChannelInterface* channel,
    const grpc::internal::RpcMethod& put_method,
    grpc::ClientContext* context) {
  return std::unique_ptr<PutMessageStream>(
      grpc::internal::ClientReaderWriterFactory<
          PutMessage, v1::PutResponse>::Create(channel, put_method, context));
}

}  // namespace kvq
