# The CUDA backend against the CPU backend (issue 4): one CPU and one CUDA
# kvq-server, the same blocks through both, byte-identical answers; and a put
# refused on the GPU side leaves no page held. Needs a GPU (label "gpu": CI
# runs `ctest -LE gpu`, the GPU machine `ctest -L gpu`); without one every
# test skips.

if(NOT TARGET kvq_integration_testing)
  message(STATUS "kvq: backend cross-check needs kvq_integration_testing "
                 "(server.cmake); not configured")
  return()
endif()

kvq_add_test(backend_crosscheck_test
  SOURCES backend_crosscheck_test.cc
  LIBS kvq_integration_testing
  LABELS gpu integration)
