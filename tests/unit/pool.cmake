# Pool unit tests: page allocator, block pool (index, LRU, pins, eviction).
kvq_add_test(page_allocator_test
  SOURCES page_allocator_test.cc
  LIBS kvq_pool absl::flat_hash_set)
kvq_add_test(block_pool_test
  SOURCES block_pool_test.cc
  LIBS kvq_pool GTest::gmock absl::flat_hash_set absl::strings
       absl::synchronization)
