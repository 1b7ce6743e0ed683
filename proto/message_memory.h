// KeepMessageBuffersInHeap: glibc malloc settings for a process that streams
// MiB-sized gRPC messages (the benchmark's clients and its bare ceiling
// server; kvq-server's malloc is jemalloc, server/heap, which keeps freed
// buffers for reuse by itself).
//
// gRPC allocates a buffer per message. glibc serves an allocation over its
// mmap threshold (128 KiB at start, raised only once a bigger mapped block
// is freed) with a fresh mapping, and gives the top of its heap back to the
// system past its trim threshold, so a stream of 1 MiB messages pays a page
// fault per 4 KiB of every message: on the 2-core CPU box a bare gRPC
// stream of 1 MiB chunks moved 0.45 GB/s, and 1.9 GB/s with these settings
// (bench/results/README.md). Fixed thresholds keep buffers of up to 32 MiB
// (glibc's largest mmap threshold) in the heap for reuse, and up to 128
// MiB of free heap before any is given back: memory the process keeps in
// exchange for never faulting its message buffers in again.
//
// Call first thing in main(), before any thread starts. Returns false, and
// changes nothing, where the C library is not glibc.

#ifndef KVQ_PROTO_MESSAGE_MEMORY_H_
#define KVQ_PROTO_MESSAGE_MEMORY_H_

namespace kvq::wire {

bool KeepMessageBuffersInHeap();

}  // namespace kvq::wire

#endif  // KVQ_PROTO_MESSAGE_MEMORY_H_
