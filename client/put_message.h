// PutMessage: one kvq.v1.PutRequest as the client sends it, its `data` left
// in the caller's block (a ReferencedDataMessage: proto/referenced_data.h)
// where the block comes with an owner, copied once, into the message, where
// it does not (a generated PutRequest copies it twice). And the Put stream
// that writes them: the generated stub writes PutRequests only.

#ifndef KVQ_CLIENT_PUT_MESSAGE_H_
#define KVQ_CLIENT_PUT_MESSAGE_H_

#include <grpcpp/client_context.h>
#include <grpcpp/impl/codegen/proto_utils.h>  // PutResponse's traits
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>

#include <memory>

#include "kvq/v1/kvcache.pb.h"
#include "proto/referenced_data.h"

namespace kvq {

using PutMessage = wire::ReferencedDataMessage<v1::PutRequest>;
using PutMessageStream =
    grpc::ClientReaderWriter<PutMessage, v1::PutResponse>;

// kvq.v1.KVCache/Put, registered on `channel`, for StartPutStream.
grpc::internal::RpcMethod PutMethod(
    std::shared_ptr<grpc::ChannelInterface> channel);

// A Put call on `channel` (that of `put_method`) that writes PutMessages,
// under `context`, which must outlive it.
std::unique_ptr<PutMessageStream> StartPutStream(
    grpc::ChannelInterface* channel,
    const grpc::internal::RpcMethod& put_method,
    grpc::ClientContext* context);

}  // namespace kvq

#endif  // KVQ_CLIENT_PUT_MESSAGE_H_
