#include "client/put_message.h"

#include "proto/referenced_data.h"

namespace grpc {

Status SerializationTraits<kvq::PutMessage, void>::Serialize(
    const kvq::PutMessage& message, ByteBuffer* buffer, bool* own_buffer) {
  kvq::wire::SerializeReferencingData(message.fields(),
                                      kvq::v1::PutRequest::kDataFieldNumber,
                                      message.data(), message.data_owner(),
                                      buffer);
  *own_buffer = true;
  return Status::OK;
}

Status SerializationTraits<kvq::PutMessage, void>::Deserialize(
    ByteBuffer* /*buffer*/, kvq::PutMessage* /*message*/) {
  return Status(StatusCode::UNIMPLEMENTED,
                "kvq::PutMessage is only ever sent, never received");
}

}  // namespace grpc
