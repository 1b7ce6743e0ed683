# Kernels unit tests: block format, float conversions, quantization
# arithmetic, worker pool, CPU quantization (reference and fast path), the
# quantization error.
kvq_add_test(format_test
  SOURCES format_test.cc
  LIBS kvq_kernels GTest::gmock)
kvq_add_test(kernels_float_convert_test
  SOURCES kernels_float_convert_test.cc
  LIBS kvq_kernels)
kvq_add_test(quant_math_test
  SOURCES quant_math_test.cc
  LIBS kvq_kernels)
# Lets the exhaustive loops over every float vectorize (float selects), as for
# kernels/quantize.cc: values stay IEEE, only exception flags may differ.
set_source_files_properties(quant_math_test.cc PROPERTIES
  COMPILE_OPTIONS -fno-trapping-math)
kvq_add_test(kernels_parallel_test
  SOURCES kernels_parallel_test.cc
  LIBS kvq_kernels)
kvq_add_test(quantize_test
  SOURCES quantize_test.cc
  LIBS kvq_kernels GTest::gmock)
kvq_add_test(quant_error_test
  SOURCES quant_error_test.cc
  LIBS kvq_kernels)
