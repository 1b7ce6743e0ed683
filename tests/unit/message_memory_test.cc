// KeepMessageBuffersInHeap: after it, message-sized buffers come from the
// heap and are reused, not mapped afresh (and faulted in) for every message.

#include "proto/message_memory.h"

#include <cstdlib>

#include "gtest/gtest.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kvq::wire {
namespace {

#if defined(__GLIBC__)
TEST(MessageMemoryTest, MessageSizedBuffersComeFromTheHeapAndAreReused) {
  ASSERT_TRUE(KeepMessageBuffersInHeap());
  for (const size_t bytes : {size_t{1} << 20, size_t{16} << 20,
                             (size_t{32} << 20) - 4096}) {
    const size_t mapped_before = mallinfo2().hblks;
    void* first = std::malloc(bytes);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(mallinfo2().hblks, mapped_before) << bytes << " bytes mapped";
    std::free(first);
    void* second = std::malloc(bytes);
    EXPECT_EQ(second, first) << bytes << " bytes not reused";
    std::free(second);
  }
}
#else
TEST(MessageMemoryTest, ChangesNothingOutsideGlibc) {
  EXPECT_FALSE(KeepMessageBuffersInHeap());
}
#endif

}  // namespace
}  // namespace kvq::wire
