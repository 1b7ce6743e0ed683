# Kernels unit tests: block format, float conversions, worker pool, CPU
# quantization (reference and fast path).
kvq_add_test(format_test
  SOURCES format_test.cc
  LIBS kvq_kernels GTest::gmock)
kvq_add_test(kernels_float_convert_test
  SOURCES kernels_float_convert_test.cc
  LIBS kvq_kernels)
kvq_add_test(kernels_parallel_test
  SOURCES kernels_parallel_test.cc
  LIBS kvq_kernels)
kvq_add_test(quantize_test
  SOURCES quantize_test.cc
  LIBS kvq_kernels GTest::gmock)
