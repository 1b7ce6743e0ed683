// Tiled variant: a block of 32 x 8 threads works on 32 x 32 tiles (32 tokens
// x 32 channels) staged through shared memory. The quantize and dequantize
// kernels load a tile and its 32 scales (and reciprocals) into shared memory,
// synchronize, and compute from there; the scales kernel reduces each tile's
// columns in shared memory and issues one atomicMax per column per block.
// Blocks stride over the token tiles, so any T fits the grid's y limit.

#include <algorithm>

#include "kernels/cuda/study/study_internal.cuh"

namespace kvq::cuda::study::internal {
namespace {

constexpr unsigned kTile = 32;         // tokens and channels per tile
constexpr unsigned kRowsPerPass = 8;   // blockDim.y
constexpr unsigned kMaxGridY = 65535;

dim3 TileGrid(StudyShape shape) {
  const unsigned col_tiles = (shape.dims + kTile - 1) / kTile;
  const unsigned row_tiles = (shape.tokens + kTile - 1) / kTile;
  return dim3(col_tiles, std::min(row_tiles, kMaxGridY));
}

__global__ void TiledAbsmaxKernel(const float* k, uint32_t tokens,
                                  uint32_t dims, unsigned* absmax_bits) {
  __shared__ float tile[kTile][kTile];
  __shared__ float partial[kRowsPerPass][kTile];
  const unsigned tx = threadIdx.x, ty = threadIdx.y;
  const uint32_t col = blockIdx.x * kTile + tx;
  const uint32_t row_tiles = (tokens + kTile - 1) / kTile;
  float running = 0.0f;  // thread (tx, 0): this block's max of column col
  for (uint32_t t = blockIdx.y; t < row_tiles; t += gridDim.y) {
    const uint32_t row0 = t * kTile;
    for (unsigned r = ty; r < kTile; r += kRowsPerPass) {
      const uint32_t row = row0 + r;
      tile[r][tx] = (row < tokens && col < dims)
                        ? fabsf(k[uint64_t{row} * dims + col])
                        : 0.0f;
    }
    __syncthreads();
    float m = 0.0f;
    for (unsigned r = ty; r < kTile; r += kRowsPerPass) m = fmaxf(m, tile[r][tx]);
    partial[ty][tx] = m;
    __syncthreads();
    if (ty == 0) {
      for (unsigned y = 0; y < kRowsPerPass; ++y) {
        running = fmaxf(running, partial[y][tx]);
      }
    }
    __syncthreads();  // tile and partial are rewritten by the next pass
  }
  if (ty == 0 && col < dims) AtomicMaxAbs(absmax_bits + col, running);
}

__global__ void TiledQuantizeKernel(const float* k, uint32_t tokens,
                                    uint32_t dims, const float* scales,
                                    int8_t* q) {
  __shared__ float tile[kTile][kTile];
  __shared__ float tile_scale[kTile];
  __shared__ float tile_inv[kTile];
  const unsigned tx = threadIdx.x, ty = threadIdx.y;
  const uint32_t col = blockIdx.x * kTile + tx;
  if (ty == 0) {
    const float s = col < dims ? scales[col] : 0.0f;
    tile_scale[tx] = s;
    tile_inv[tx] = InverseScale(s);
  }
  const uint32_t row_tiles = (tokens + kTile - 1) / kTile;
  for (uint32_t t = blockIdx.y; t < row_tiles; t += gridDim.y) {
    const uint32_t row0 = t * kTile;
    for (unsigned r = ty; r < kTile; r += kRowsPerPass) {
      const uint32_t row = row0 + r;
      if (row < tokens && col < dims) {
        tile[r][tx] = k[uint64_t{row} * dims + col];
      }
    }
    __syncthreads();
    for (unsigned r = ty; r < kTile; r += kRowsPerPass) {
      const uint32_t row = row0 + r;
      if (row < tokens && col < dims) {
        q[uint64_t{row} * dims + col] =
            QuantizeValue(tile[r][tx], tile_scale[tx], tile_inv[tx]);
      }
    }
    __syncthreads();
  }
}

__global__ void TiledDequantizeKernel(const int8_t* q, uint32_t tokens,
                                      uint32_t dims, const float* scales,
                                      float* out) {
  __shared__ int8_t tile[kTile][kTile];
  __shared__ float tile_scale[kTile];
  const unsigned tx = threadIdx.x, ty = threadIdx.y;
  const uint32_t col = blockIdx.x * kTile + tx;
  if (ty == 0) tile_scale[tx] = col < dims ? scales[col] : 0.0f;
  const uint32_t row_tiles = (tokens + kTile - 1) / kTile;
  for (uint32_t t = blockIdx.y; t < row_tiles; t += gridDim.y) {
    const uint32_t row0 = t * kTile;
    for (unsigned r = ty; r < kTile; r += kRowsPerPass) {
      const uint32_t row = row0 + r;
      if (row < tokens && col < dims) {
        tile[r][tx] = q[uint64_t{row} * dims + col];
      }
    }
    __syncthreads();
    for (unsigned r = ty; r < kTile; r += kRowsPerPass) {
      const uint32_t row = row0 + r;
      if (row < tokens && col < dims) {
        out[uint64_t{row} * dims + col] =
            DequantizeValue(tile[r][tx], tile_scale[tx]);
      }
    }
    __syncthreads();
  }
}

const dim3 kBlock(kTile, kRowsPerPass);

absl::Status Absmax(StudyShape shape, const float* k, unsigned* absmax_bits,
                    cudaStream_t stream) {
  TiledAbsmaxKernel<<<TileGrid(shape), kBlock, 0, stream>>>(
      k, shape.tokens, shape.dims, absmax_bits);
  return CheckLaunch("TiledAbsmaxKernel");
}

absl::Status Quant(StudyShape shape, const float* k, const float* scales,
                   int8_t* q, cudaStream_t stream) {
  TiledQuantizeKernel<<<TileGrid(shape), kBlock, 0, stream>>>(
      k, shape.tokens, shape.dims, scales, q);
  return CheckLaunch("TiledQuantizeKernel");
}

absl::Status Dequant(StudyShape shape, const int8_t* q, const float* scales,
                     float* out, cudaStream_t stream) {
  TiledDequantizeKernel<<<TileGrid(shape), kBlock, 0, stream>>>(
      q, shape.tokens, shape.dims, scales, out);
  return CheckLaunch("TiledDequantizeKernel");
}

}  // namespace

const VariantOps kTiledOps = {Absmax, Quant, Dequant};

}  // namespace kvq::cuda::study::internal
