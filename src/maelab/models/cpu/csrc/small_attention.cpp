// Softmax attention for short sequences on the CPU, forward and backward, on a fused qkv projection.
//
// qkv [N, T, 3 * H * d] (contiguous; q, k, v side by side, heads inside each) -> out [N, T, H * d] and the
// row log-sum-exp [N, H, T]; the backward writes dq, dk, dv straight into one [N, T, 3 * H * d] gradient (no
// [N, H, T, d] intermediates, no stack or permute afterwards). ``key_mask`` [N, T] bool (optional) hides the
// keys where false. One (sample, head) problem per task, so results do not depend on the thread count or on the
// other samples of the batch. Its K and V (copied once, padded to whole vectors) and the dK, dV accumulators
// stay in L1/L2 at the sizes small-image MAEs use (tens to a few hundred tokens, head dims 16-64).
//
// float32 with head dims 16, 32, 48 or 64 takes the vectorised path (GCC/Clang vector extensions): blocks of
// query rows against blocks of keys with register accumulators, like a small GEMM micro-kernel, and a
// polynomial exp. Other head dims and float64 (used by the tests' gradcheck) take the plain loops.
// The backward recomputes the probabilities from the saved log-sum-exp, as flash attention does.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

// float32 vectors of 16 lanes (GCC/Clang vector extensions: one AVX-512 register, two AVX2 ones)
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
constexpr int64_t W = 16;

inline vf vload(const float* p) { vf v; std::memcpy(&v, p, sizeof(v)); return v; }
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }
inline vf vset(float x) { return vf{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

// The lane-wise pieces exp_approx needs, for a float and for a vector of 16.
template <typename V> inline V splat(float x);
template <> inline float splat<float>(float x) { return x; }
template <> inline vf splat<vf>(float x) { return vset(x); }

inline float pow2_from_shifted(float shifted) {  // 2^n from n held in the low mantissa bits (see below)
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  bits = (bits - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return scale;
}
inline vf pow2_from_shifted(vf shifted) { return (vf)((((vi)shifted) - 0x4B400000 + 127) << 23); }

// exp for x <= ~88 without a libm call, so that loops over it vectorise (Cephes expf: range reduction by ln 2,
// degree-6 polynomial, scale by 2^n through the exponent bits; about 1 ulp). NaN stays NaN. V: float or vf.
template <typename V>
inline V exp_approx(V x) {
  x = x < -87.3f ? splat<V>(-87.3f) : x;  // NaN compares false and passes through
  x = x > 88.3f ? splat<V>(88.3f) : x;
  // round x / ln 2 to the nearest integer n by adding 1.5 * 2^23: n sits in the low mantissa bits
  const V shifted = x * 1.44269504088896341f + 12582912.0f;
  const V n = shifted - 12582912.0f;
  const V r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V p = splat<V>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * pow2_from_shifted(shifted);
}

inline double exp_approx(double x) { return std::exp(x); }


template <typename scalar_t>
struct Problem {
  int64_t T, H, d, D;  // tokens, heads, head dim, H * d
  scalar_t scale;
  const bool* mask;  // [N, T] or null
};

// s[0:T] = scale * q . k_j (kt is K transposed, [d, T]); hidden keys get -inf.
template <typename scalar_t>
inline void score_row(const scalar_t* q, const scalar_t* kt, const bool* keys, scalar_t* s, const Problem<scalar_t>& pr) {
  const int64_t T = pr.T;
  for (int64_t j = 0; j < T; ++j) s[j] = 0;
  for (int64_t c = 0; c < pr.d; ++c) {
    const scalar_t qc = q[c] * pr.scale;
    const scalar_t* krow = kt + c * T;
#pragma omp simd
    for (int64_t j = 0; j < T; ++j) s[j] += qc * krow[j];
  }
  if (keys != nullptr) {
    for (int64_t j = 0; j < T; ++j)
      if (!keys[j]) s[j] = -std::numeric_limits<scalar_t>::infinity();
  }
}

// p[j] = exp(s[j] - shift), zero for hidden keys; returns the sum.
template <typename scalar_t>
inline scalar_t exp_row(scalar_t* s, scalar_t shift, const bool* keys, int64_t T) {
  scalar_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < T; ++j) {
    s[j] = exp_approx(s[j] - shift);
    sum += s[j];
  }
  if (keys != nullptr) {
    sum = 0;
    for (int64_t j = 0; j < T; ++j) {
      if (!keys[j]) s[j] = 0;
      sum += s[j];
    }
  }
  return sum;
}

// K (or V) of head h of sample n, transposed into kt [d, T].
template <typename scalar_t>
inline void transpose_in(const scalar_t* base, int64_t row_stride, scalar_t* kt, int64_t T, int64_t d) {
  for (int64_t j = 0; j < T; ++j) {
    const scalar_t* row = base + j * row_stride;
    for (int64_t c = 0; c < d; ++c) kt[c * T + j] = row[c];
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* qkv, scalar_t* out, scalar_t* lse, int64_t N, const Problem<scalar_t>& pr) {
  const int64_t T = pr.T, H = pr.H, d = pr.d, D = pr.D, stride = 3 * D;
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> kt(d * T), s(T);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / H, h = task % H;
      const scalar_t* base = qkv + n * T * stride + h * d;
      const bool* keys = pr.mask == nullptr ? nullptr : pr.mask + n * T;
      transpose_in(base + D, stride, kt.data(), T, d);
      for (int64_t i = 0; i < T; ++i) {
        score_row(base + i * stride, kt.data(), keys, s.data(), pr);
        scalar_t m = s[0];
        for (int64_t j = 1; j < T; ++j) m = s[j] > m ? s[j] : m;
        const scalar_t l = exp_row(s.data(), m, keys, T);
        scalar_t* o = out + (n * T + i) * D + h * d;
        for (int64_t c = 0; c < d; ++c) o[c] = 0;
        for (int64_t j = 0; j < T; ++j) {
          const scalar_t pj = s[j] / l;
          const scalar_t* v = base + 2 * D + j * stride;
#pragma omp simd
          for (int64_t c = 0; c < d; ++c) o[c] += pj * v[c];
        }
        lse[(n * H + h) * T + i] = m + std::log(l);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* grad, const scalar_t* qkv, const scalar_t* out, const scalar_t* lse, scalar_t* dqkv,
                     int64_t N, const Problem<scalar_t>& pr) {
  const int64_t T = pr.T, H = pr.H, d = pr.d, D = pr.D, stride = 3 * D;
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> kt(d * T), vt(d * T), p(T), dp(T), dk(T * d), dv(T * d);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / H, h = task % H;
      const scalar_t* base = qkv + n * T * stride + h * d;
      scalar_t* dbase = dqkv + n * T * stride + h * d;
      const bool* keys = pr.mask == nullptr ? nullptr : pr.mask + n * T;
      transpose_in(base + D, stride, kt.data(), T, d);
      transpose_in(base + 2 * D, stride, vt.data(), T, d);
      std::fill(dk.begin(), dk.end(), scalar_t(0));
      std::fill(dv.begin(), dv.end(), scalar_t(0));
      for (int64_t i = 0; i < T; ++i) {
        const scalar_t* q = base + i * stride;
        const scalar_t* go = grad + (n * T + i) * D + h * d;
        const scalar_t* o = out + (n * T + i) * D + h * d;
        score_row(q, kt.data(), keys, p.data(), pr);
        exp_row(p.data(), lse[(n * H + h) * T + i], keys, T);
        scalar_t delta = 0;
        for (int64_t c = 0; c < d; ++c) delta += go[c] * o[c];
        for (int64_t j = 0; j < T; ++j) dp[j] = 0;
        for (int64_t c = 0; c < d; ++c) {
          const scalar_t gc = go[c];
          const scalar_t* vrow = vt.data() + c * T;
#pragma omp simd
          for (int64_t j = 0; j < T; ++j) dp[j] += gc * vrow[j];
        }
#pragma omp simd
        for (int64_t j = 0; j < T; ++j) dp[j] = p[j] * (dp[j] - delta) * pr.scale;  // dS, scaled for dq and dk
        scalar_t* dq = dbase + i * stride;
        for (int64_t c = 0; c < d; ++c) dq[c] = 0;
        for (int64_t j = 0; j < T; ++j) {
          const scalar_t pj = p[j], dsj = dp[j];
          const scalar_t* k = base + D + j * stride;
          scalar_t* dkj = dk.data() + j * d;
          scalar_t* dvj = dv.data() + j * d;
#pragma omp simd
          for (int64_t c = 0; c < d; ++c) {
            dq[c] += dsj * k[c];
            dkj[c] += dsj * q[c];
            dvj[c] += pj * go[c];
          }
        }
      }
      for (int64_t j = 0; j < T; ++j) {
        std::memcpy(dbase + D + j * stride, dk.data() + j * d, d * sizeof(scalar_t));
        std::memcpy(dbase + 2 * D + j * stride, dv.data() + j * d, d * sizeof(scalar_t));
      }
    }
  });
}

// ---- float32 fast path: the vector type above -------------------------------------------------------------------
// Per (sample, head): K and V are copied once, transposed ([d][tp]) for the score rows and padded row-major
// ([tp][d]) for the products, tp = T rounded up to whole vectors; padded and hidden keys get probability exactly 0.
// Every product keeps at least 8 independent register accumulators so that the FMA latency is hidden.


#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define MAELAB_FOLD(v, op)                                                                                         \
  do {                                                                                                             \
    v = op(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));               \
    v = op(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));               \
    v = op(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));               \
    v = op(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));               \
  } while (0)
inline vf vadd(vf a, vf b) { return a + b; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline float hsum(vf v) { MAELAB_FOLD(v, vadd); return v[0]; }
inline float hmax(vf v) { MAELAB_FOLD(v, vmax); return v[0]; }
#else
inline float hsum(vf v) { float s = 0; for (int k = 0; k < W; ++k) s += v[k]; return s; }
inline float hmax(vf v) { float m = v[0]; for (int k = 1; k < W; ++k) m = v[k] > m ? v[k] : m; return m; }
#endif

// dst[r][j0 : j0 + B*W] = a_scale * sum_c a[r][c] * mt[c][j0 : ...] for R rows (a[r] = a + r * a_stride, dst rows
// of ld floats) and B vectors of keys: R * B register accumulators, each loaded vector of mt used R times.
template <int R, int B>
inline void rows_times_block(const float* a, int64_t a_stride, float a_scale, const float* mt, int64_t tp, int64_t d,
                             int64_t j0, float* dst, int64_t ld) {
  constexpr int U = R * B >= 8 ? 1 : (R * B >= 4 ? 2 : (R * B >= 2 ? 4 : 8));  // partial sums over c
  vf acc[U][R][B];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int b = 0; b < B; ++b) acc[u][r][b] = vf{};
  int64_t c = 0;
  for (; c + U <= d; c += U)
    for (int u = 0; u < U; ++u) {
      vf m[B];
      for (int b = 0; b < B; ++b) m[b] = vload(mt + (c + u) * tp + j0 + b * W);
      for (int r = 0; r < R; ++r) {
        const vf ar = vset(a[r * a_stride + c + u] * a_scale);
        for (int b = 0; b < B; ++b) acc[u][r][b] += ar * m[b];
      }
    }
  for (; c < d; ++c)
    for (int r = 0; r < R; ++r) {
      const vf ar = vset(a[r * a_stride + c] * a_scale);
      for (int b = 0; b < B; ++b) acc[0][r][b] += ar * vload(mt + c * tp + j0 + b * W);
    }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < B; ++b) {
      vf sum = acc[0][r][b];
      for (int u = 1; u < U; ++u) sum += acc[u][r][b];
      vstore(dst + r * ld + j0 + b * W, sum);
    }
}

// dst[r][0 : tp] = a_scale * a[r] . mt[:, j] for R rows and every padded key j.
template <int R>
inline void rows_times(const float* a, int64_t a_stride, float a_scale, const float* mt, int64_t tp, int64_t d,
                       float* dst, int64_t ld) {
  constexpr int BMAX = R == 1 ? 4 : (R <= 4 ? 3 : 2);  // R * BMAX accumulators + BMAX loads <= 32 registers
  int64_t j0 = 0;
  for (; j0 + BMAX * W <= tp; j0 += BMAX * W) rows_times_block<R, BMAX>(a, a_stride, a_scale, mt, tp, d, j0, dst, ld);
  switch ((tp - j0) / W) {
    case 3: rows_times_block<R, 3>(a, a_stride, a_scale, mt, tp, d, j0, dst, ld); break;
    case 2: rows_times_block<R, 2>(a, a_stride, a_scale, mt, tp, d, j0, dst, ld); break;
    case 1: rows_times_block<R, 1>(a, a_stride, a_scale, mt, tp, d, j0, dst, ld); break;
    default: break;
  }
}

// out[r][k] = sum_{j < tp} w[r][j] * rows[j][k * W : ...] for R weight rows (ld floats apart) over rows [tp][ND*W]
// (tp a multiple of 16): each loaded row vector used R times, partial sums over j to hide the FMA latency.
template <int R, int ND>
inline void weights_times_rows(const float* w, int64_t ld, const float* rows, int64_t tp, vf (*out)[ND]) {
  constexpr int U = R * ND >= 8 ? 1 : (R * ND >= 4 ? 2 : (R * ND >= 2 ? 4 : 8));
  vf acc[U][R][ND];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < ND; ++k) acc[u][r][k] = vf{};
  for (int64_t j = 0; j < tp; j += U)
    for (int u = 0; u < U; ++u) {
      vf v[ND];
      for (int k = 0; k < ND; ++k) v[k] = vload(rows + (j + u) * ND * W + k * W);
      for (int r = 0; r < R; ++r) {
        const vf wr = vset(w[r * ld + j + u]);
        for (int k = 0; k < ND; ++k) acc[u][r][k] += wr * v[k];
      }
    }
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < ND; ++k) {
      vf sum = acc[0][r][k];
      for (int u = 1; u < U; ++u) sum += acc[u][r][k];
      out[r][k] = sum;
    }
}

// One head's k (or v) rows, zero-padded to tp keys: transposed into mt [d][tp] and/or row-major into rows [tp][d]
// (either may be null).
inline void copy_padded(const float* base, int64_t row_stride, int64_t T, int64_t d, int64_t tp, float* mt, float* rows) {
  if (rows != nullptr) {
    for (int64_t j = 0; j < T; ++j) std::memcpy(rows + j * d, base + j * row_stride, d * sizeof(float));
    std::fill(rows + T * d, rows + tp * d, 0.0f);
  }
  if (mt != nullptr) {
    for (int64_t c = 0; c < d; ++c) {
      float* dst = mt + c * tp;
      for (int64_t j = 0; j < T; ++j) dst[j] = base[j * row_stride + c];
      for (int64_t j = T; j < tp; ++j) dst[j] = 0.0f;
    }
  }
}

// keep[0 : tp] = 1 for the keys a query may see (real and not hidden), else 0.
inline void key_keep(const bool* keys, int64_t T, int64_t tp, float* keep) {
  for (int64_t j = 0; j < tp; ++j) keep[j] = (j < T && (keys == nullptr || keys[j])) ? 1.0f : 0.0f;
}

// Scratch for one (sample, head) problem.
struct Scratch {
  std::vector<float> kt, krows, vt, vrows, keep, s, ds, dk, dv;
  Scratch(int64_t d, int64_t tp, int64_t rows)
      : kt(d * tp), krows(d * tp), vt(d * tp), vrows(d * tp), keep(tp), s(rows * tp), ds(rows * tp), dk(tp * d), dv(tp * d) {}
};

// Forward for query rows i0 .. i0 + R - 1 of one problem.
template <int ND, int R>
inline void forward_rows(const float* base, int64_t stride, int64_t i0, int64_t tp, float scale, Scratch& w, float* orow0,
                         int64_t ostride, float* lse) {
  constexpr int64_t d = ND * W;
  const vf minus_inf = vset(-std::numeric_limits<float>::infinity());
  float* s = w.s.data();
  rows_times<R>(base + i0 * stride, stride, scale, w.kt.data(), tp, d, s, tp);
  float m[R], l[R];
  for (int r = 0; r < R; ++r) {
    vf mv = minus_inf;
    for (int64_t j = 0; j < tp; j += W) {
      const vf sj = vload(&w.keep[j]) > 0.0f ? vload(s + r * tp + j) : minus_inf;
      mv = sj > mv ? sj : mv;
    }
    m[r] = hmax(mv);
  }
  for (int r = 0; r < R; ++r) {
    vf lv = vf{};
    for (int64_t j = 0; j < tp; j += W) {
      const vf pj = exp_approx(vload(s + r * tp + j) - m[r]) * vload(&w.keep[j]);
      vstore(s + r * tp + j, pj);
      lv += pj;
    }
    l[r] = hsum(lv);
  }
  vf o[R][ND];
  weights_times_rows<R, ND>(s, tp, w.vrows.data(), tp, o);
  for (int r = 0; r < R; ++r) {
    const vf inv = vset(1.0f / l[r]);
    for (int k = 0; k < ND; ++k) vstore(orow0 + r * ostride + k * W, o[r][k] * inv);
    lse[r] = m[r] + std::log(l[r]);
  }
}

template <int ND>
void forward_fast(const float* qkv, float* out, float* lse, int64_t N, const Problem<float>& pr) {
  constexpr int RB = 4;
  const int64_t T = pr.T, H = pr.H, d = ND * W, D = pr.D, stride = 3 * D, tp = (T + W - 1) / W * W;
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    Scratch w(d, tp, RB);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / H, h = task % H;
      const float* base = qkv + n * T * stride + h * d;
      key_keep(pr.mask == nullptr ? nullptr : pr.mask + n * T, T, tp, w.keep.data());
      copy_padded(base + D, stride, T, d, tp, w.kt.data(), nullptr);
      copy_padded(base + 2 * D, stride, T, d, tp, nullptr, w.vrows.data());
      float* orow = out + n * T * D + h * d;
      float* lrow = lse + (n * H + h) * T;
      int64_t i = 0;
      for (; i + RB <= T; i += RB) forward_rows<ND, RB>(base, stride, i, tp, pr.scale, w, orow + i * D, D, lrow + i);
      for (; i < T; ++i) forward_rows<ND, 1>(base, stride, i, tp, pr.scale, w, orow + i * D, D, lrow + i);
    }
  });
}

// Backward for query rows i0 .. i0 + R - 1 of one problem: their dq, and their share of dk, dv (accumulated in w).
template <int ND, int R>
inline void backward_rows(const float* base, float* dbase, int64_t stride, const float* go0, const float* o0, int64_t gstride,
                          const float* lse, int64_t i0, int64_t T, int64_t tp, float scale, Scratch& w) {
  constexpr int64_t d = ND * W;
  float* p = w.s.data();
  float* ds = w.ds.data();
  const float* q0 = base + i0 * stride;
  rows_times<R>(q0, stride, scale, w.kt.data(), tp, d, p, tp);
  rows_times<R>(go0, gstride, 1.0f, w.vt.data(), tp, d, ds, tp);
  vf qv[R][ND], gv[R][ND];
  for (int r = 0; r < R; ++r) {
    vf deltav = vf{};
    for (int k = 0; k < ND; ++k) {
      qv[r][k] = vload(q0 + r * stride + k * W);
      gv[r][k] = vload(go0 + r * gstride + k * W);
      deltav += gv[r][k] * vload(o0 + r * gstride + k * W);
    }
    const float delta = hsum(deltav);
    const float shift = lse[r];
    for (int64_t j = 0; j < tp; j += W) {
      const vf pj = exp_approx(vload(p + r * tp + j) - shift) * vload(&w.keep[j]);
      vstore(p + r * tp + j, pj);
      vstore(ds + r * tp + j, pj * (vload(ds + r * tp + j) - delta) * scale);
    }
  }
  vf dq[R][ND];
  weights_times_rows<R, ND>(ds, tp, w.krows.data(), tp, dq);
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < ND; ++k) vstore(dbase + (i0 + r) * stride + k * W, dq[r][k]);
  for (int64_t j = 0; j < T; ++j) {
    float* dkj = w.dk.data() + j * d;
    float* dvj = w.dv.data() + j * d;
    vf dk[ND], dv[ND];
    for (int k = 0; k < ND; ++k) {
      dk[k] = vload(dkj + k * W);
      dv[k] = vload(dvj + k * W);
    }
    for (int r = 0; r < R; ++r) {
      const vf dsj = vset(ds[r * tp + j]), pj = vset(p[r * tp + j]);
      for (int k = 0; k < ND; ++k) {
        dk[k] += dsj * qv[r][k];
        dv[k] += pj * gv[r][k];
      }
    }
    for (int k = 0; k < ND; ++k) {
      vstore(dkj + k * W, dk[k]);
      vstore(dvj + k * W, dv[k]);
    }
  }
}

template <int ND>
void backward_fast(const float* grad, const float* qkv, const float* out, const float* lse, float* dqkv, int64_t N,
                   const Problem<float>& pr) {
  constexpr int RB = ND == 1 ? 8 : (ND == 2 ? 4 : 2);  // R * ND q and grad rows stay in registers
  const int64_t T = pr.T, H = pr.H, d = ND * W, D = pr.D, stride = 3 * D, tp = (T + W - 1) / W * W;
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    Scratch w(d, tp, RB);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / H, h = task % H;
      const float* base = qkv + n * T * stride + h * d;
      float* dbase = dqkv + n * T * stride + h * d;
      const float* go = grad + n * T * D + h * d;
      const float* o = out + n * T * D + h * d;
      const float* lrow = lse + (n * H + h) * T;
      key_keep(pr.mask == nullptr ? nullptr : pr.mask + n * T, T, tp, w.keep.data());
      copy_padded(base + D, stride, T, d, tp, w.kt.data(), w.krows.data());
      copy_padded(base + 2 * D, stride, T, d, tp, w.vt.data(), nullptr);
      std::fill(w.dk.begin(), w.dk.end(), 0.0f);
      std::fill(w.dv.begin(), w.dv.end(), 0.0f);
      int64_t i = 0;
      for (; i + RB <= T; i += RB)
        backward_rows<ND, RB>(base, dbase, stride, go + i * D, o + i * D, D, lrow + i, i, T, tp, pr.scale, w);
      for (; i < T; ++i)
        backward_rows<ND, 1>(base, dbase, stride, go + i * D, o + i * D, D, lrow + i, i, T, tp, pr.scale, w);
      for (int64_t j = 0; j < T; ++j) {
        std::memcpy(dbase + D + j * stride, w.dk.data() + j * d, d * sizeof(float));
        std::memcpy(dbase + 2 * D + j * stride, w.dv.data() + j * d, d * sizeof(float));
      }
    }
  });
}

// The fast path for float32 when the head dim is 16, 32, 48 or 64; the generic kernels otherwise.
template <typename scalar_t>
bool fast_path(const Problem<scalar_t>& pr) {
  return std::is_same_v<scalar_t, float> && pr.d % W == 0 && pr.d / W >= 1 && pr.d / W <= 4;
}

template <typename scalar_t>
void run_forward(const scalar_t* qkv, scalar_t* out, scalar_t* lse, int64_t N, const Problem<scalar_t>& pr) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (fast_path(pr)) {
      switch (pr.d / W) {
        case 1: return forward_fast<1>(qkv, out, lse, N, pr);
        case 2: return forward_fast<2>(qkv, out, lse, N, pr);
        case 3: return forward_fast<3>(qkv, out, lse, N, pr);
        default: return forward_fast<4>(qkv, out, lse, N, pr);
      }
    }
  }
  forward_kernel<scalar_t>(qkv, out, lse, N, pr);
}

template <typename scalar_t>
void run_backward(const scalar_t* grad, const scalar_t* qkv, const scalar_t* out, const scalar_t* lse, scalar_t* dqkv,
                  int64_t N, const Problem<scalar_t>& pr) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (fast_path(pr)) {
      switch (pr.d / W) {
        case 1: return backward_fast<1>(grad, qkv, out, lse, dqkv, N, pr);
        case 2: return backward_fast<2>(grad, qkv, out, lse, dqkv, N, pr);
        case 3: return backward_fast<3>(grad, qkv, out, lse, dqkv, N, pr);
        default: return backward_fast<4>(grad, qkv, out, lse, dqkv, N, pr);
      }
    }
  }
  backward_kernel<scalar_t>(grad, qkv, out, lse, dqkv, N, pr);
}

void check_inputs(const at::Tensor& qkv, int64_t heads, const std::optional<at::Tensor>& key_mask) {
  TORCH_CHECK(qkv.device().is_cpu() && qkv.dim() == 3 && qkv.is_contiguous(), "qkv must be a contiguous [N, T, 3D] CPU tensor");
  TORCH_CHECK(qkv.scalar_type() == at::kFloat || qkv.scalar_type() == at::kDouble, "qkv must be float32 or float64");
  TORCH_CHECK(heads > 0 && qkv.size(2) % (3 * heads) == 0, "qkv's last dim must be 3 * heads * head_dim");
  if (key_mask.has_value()) {
    const auto& m = *key_mask;
    TORCH_CHECK(m.scalar_type() == at::kBool && m.is_contiguous() && m.dim() == 2 && m.size(0) == qkv.size(0) &&
                m.size(1) == qkv.size(1), "key_mask must be a contiguous [N, T] bool tensor");
  }
}

template <typename scalar_t>
Problem<scalar_t> problem(const at::Tensor& qkv, int64_t heads, const std::optional<at::Tensor>& key_mask) {
  const int64_t D = qkv.size(2) / 3, d = D / heads;
  return {qkv.size(1), heads, d, D, static_cast<scalar_t>(1.0 / std::sqrt(static_cast<double>(d))),
          key_mask.has_value() ? key_mask->data_ptr<bool>() : nullptr};
}

std::tuple<at::Tensor, at::Tensor> attn_forward(const at::Tensor& qkv, int64_t heads,
                                                const std::optional<at::Tensor>& key_mask) {
  check_inputs(qkv, heads, key_mask);
  const int64_t N = qkv.size(0), T = qkv.size(1), D = qkv.size(2) / 3;
  at::Tensor out = at::empty({N, T, D}, qkv.options());
  at::Tensor lse = at::empty({N, heads, T}, qkv.options());
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "maelab_attn_forward", [&] {
    run_forward<scalar_t>(qkv.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), N,
                             problem<scalar_t>(qkv, heads, key_mask));
  });
  return {out, lse};
}

at::Tensor attn_backward(const at::Tensor& grad, const at::Tensor& qkv, const at::Tensor& out, const at::Tensor& lse,
                         int64_t heads, const std::optional<at::Tensor>& key_mask) {
  check_inputs(qkv, heads, key_mask);
  TORCH_CHECK(grad.is_contiguous() && out.is_contiguous() && lse.is_contiguous() && grad.sizes() == out.sizes() &&
              grad.scalar_type() == qkv.scalar_type(), "grad and out must be contiguous [N, T, D] like qkv");
  const int64_t N = qkv.size(0);
  at::Tensor dqkv = at::empty_like(qkv);
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "maelab_attn_backward", [&] {
    run_backward<scalar_t>(grad.data_ptr<scalar_t>(), qkv.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                              lse.data_ptr<scalar_t>(), dqkv.data_ptr<scalar_t>(), N, problem<scalar_t>(qkv, heads, key_mask));
  });
  return dqkv;
}

}  // namespace

TORCH_LIBRARY(maelab, m) {
  m.def("small_attention_forward(Tensor qkv, int heads, Tensor? key_mask) -> (Tensor, Tensor)");
  m.def("small_attention_backward(Tensor grad, Tensor qkv, Tensor out, Tensor lse, int heads, Tensor? key_mask) -> Tensor");
}

TORCH_LIBRARY_IMPL(maelab, CPU, m) {
  m.impl("small_attention_forward", &attn_forward);
  m.impl("small_attention_backward", &attn_backward);
}
