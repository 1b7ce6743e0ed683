# The seed paper's four kernel variants (kernels/cuda/study) against kvq's CPU
# reference. Included from tests/gpu/CMakeLists.txt; label gpu: CI builds it
# and skips it (no device), the GPU machine runs it with `ctest -L gpu`.
if(TARGET kvq_kernels_study)
  kvq_add_test(study_kernels_test
    SOURCES study_kernels_test.cc
    LIBS kvq_kernels_study kvq_kernels CUDA::cudart
    LABELS gpu)
endif()
