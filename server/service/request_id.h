// Request ids: 16 lowercase hex characters (64 random bits) naming one RPC in
// the server's logs and in every error message it returns.

#ifndef KVQ_SERVER_SERVICE_REQUEST_ID_H_
#define KVQ_SERVER_SERVICE_REQUEST_ID_H_

#include <string>

namespace kvq {

// A fresh id; cheap (a thread-local generator, no lock) and unique enough
// for log correlation (collisions need ~2^32 requests).
std::string NewRequestId();

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_REQUEST_ID_H_
