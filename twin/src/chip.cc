#include "xbar/twin/chip.h"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace xbar::twin {

namespace {

using wire::FaultKind;
using wire::Polarity;

// Relaxation is complete for practical purposes after 20 time constants (e^-20 ~ 2e-9).
constexpr double kSettleTaus = 20.0;
// A relaxed or noisy conductance never goes below this (devices always conduct a little).
constexpr double kMinPhysicalG_uS = 0.1;

// read_moments_fast: a log-spaced grid over the conductances a device can have.
constexpr double kMomentsLogLo = -4.605170185988091;  // ln(0.01 uS)
constexpr double kMomentsLogHi = 9.210340371976184;   // ln(10000 uS)
constexpr int kMomentsGrid = 4096;

uint32_t lo32(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t hi24(uint64_t v) { return static_cast<uint32_t>(v >> 32) & 0xFFFFFFu; }

double std_normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

}  // namespace

Chip::Chip(const ChipProfile& profile, uint64_t chip_seed, uint64_t noise_seed)
    : p_(profile),
      noise_key_(key_from_seed(noise_seed)),
      settle_ns_(static_cast<uint64_t>(kSettleTaus * profile.relax_tau_s * 1e9)) {
  dev_.resize(static_cast<size_t>(p_.arrays) * p_.rows * p_.cols);
  adc_lsb_V_ = (p_.adc_v_hi_V - p_.adc_v_lo_V) / static_cast<double>((1u << p_.adc_bits) - 1);
  cache_.resize(static_cast<size_t>(p_.arrays));
  for (ArrayCache& c : cache_) {
    c.gt_uS.setZero(p_.cols, p_.rows);
    c.vart_uS2.setZero(p_.cols, p_.rows);
  }
  manufacture(chip_seed);

  // Golub-Welsch: nodes and weights of Gauss-Hermite quadrature for E[f(Z)], Z ~ N(0,1).
  constexpr int kNodes = 64;
  Eigen::MatrixXd jacobi = Eigen::MatrixXd::Zero(kNodes, kNodes);
  for (int k = 1; k < kNodes; ++k) jacobi(k, k - 1) = jacobi(k - 1, k) = std::sqrt(double(k));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(jacobi);
  for (int k = 0; k < kNodes; ++k) {
    gh_nodes_.push_back(eig.eigenvalues()(k));
    gh_weights_.push_back(eig.eigenvectors()(0, k) * eig.eigenvectors()(0, k));
  }
  if (p_.read_noise) {
    moments_table_.resize(kMomentsGrid);
    for (int k = 0; k < kMomentsGrid; ++k) {
      const double lg = kMomentsLogLo + (kMomentsLogHi - kMomentsLogLo) * k / (kMomentsGrid - 1);
      moments_table_[static_cast<size_t>(k)] = read_moments(std::exp(lg));
    }
  }
}

void Chip::manufacture(uint64_t chip_seed) {
  const PhiloxKey key = key_from_seed(chip_seed);
  const double s = p_.d2d_sigma_rel;
  for (size_t i = 0; i < dev_.size(); ++i) {
    Device& d = dev_[i];
    const uint32_t id = static_cast<uint32_t>(i);
    const auto z = normals4(philox4x32_10(make_counter(Stream::kDeviceParams, id, 0, 0), key));
    const auto y = normals4(philox4x32_10(make_counter(Stream::kDeviceParams, id, 1, 0), key));
    d.set_vth_V = static_cast<float>(p_.set_v_threshold_V + p_.set_v_threshold_sigma_V * z[0]);
    d.reset_vth_V =
        static_cast<float>(p_.reset_v_threshold_V + p_.reset_v_threshold_sigma_V * z[1]);
    d.set_rate = static_cast<float>(std::exp(s * z[2]));
    d.reset_rate = static_cast<float>(std::exp(s * z[3]));
    d.compliance = static_cast<float>(std::exp(s * y[0]));
    d.g_prog_uS = std::clamp(p_.initial_g_median_uS * std::exp(p_.initial_g_sigma_log * y[1]),
                             kMinPhysicalG_uS, p_.g_ceiling_uS);
  }

  // Faults by fraction: one uniform per device, split into disjoint intervals.
  const double fh = p_.stuck_high.fraction, fl = p_.stuck_low.fraction, fs = p_.slow.fraction;
  if (fh + fl + fs > 0) {
    for (size_t i = 0; i < dev_.size(); ++i) {
      const double u = uniform_open(
          philox4x32_10(make_counter(Stream::kFaultDraw, static_cast<uint32_t>(i), 0, 0), key)[0]);
      if (u < fh) {
        dev_[i].fault = FaultKind::kStuckHigh;
      } else if (u < fh + fl) {
        dev_[i].fault = FaultKind::kStuckLow;
      } else if (u < fh + fl + fs) {
        dev_[i].fault = FaultKind::kSlow;
      }
    }
  }

  // Faults by count per array: a seeded partial Fisher-Yates over the healthy cells.
  const std::pair<FaultKind, const FaultPopulation*> counted[] = {
      {FaultKind::kStuckHigh, &p_.stuck_high},
      {FaultKind::kStuckLow, &p_.stuck_low},
      {FaultKind::kSlow, &p_.slow}};
  const size_t cells = static_cast<size_t>(p_.rows) * p_.cols;
  for (int a = 0; a < p_.arrays; ++a) {
    for (const auto& [kind, pop] : counted) {
      if (pop->count_hi <= 0) continue;
      const auto r = philox4x32_10(make_counter(Stream::kFaultDraw, static_cast<uint32_t>(a),
                                                static_cast<uint32_t>(kind), 1),
                                   key);
      const int span = pop->count_hi - pop->count_lo + 1;
      const int n = pop->count_lo + static_cast<int>(r[0] % static_cast<uint32_t>(span));
      std::vector<uint32_t> order(cells);
      std::iota(order.begin(), order.end(), 0u);
      int placed = 0;
      for (size_t k = 0; k < cells && placed < n; ++k) {
        const auto rk =
            philox4x32_10(make_counter(Stream::kFaultDraw, static_cast<uint32_t>(a),
                                       static_cast<uint32_t>(kind), 2, static_cast<uint32_t>(k)),
                          key);
        const size_t j = k + rk[0] % (cells - k);
        std::swap(order[k], order[j]);
        Device& d = dev_[static_cast<size_t>(a) * cells + order[k]];
        if (d.fault != FaultKind::kNone) continue;
        d.fault = kind;
        ++placed;
      }
    }
  }

  for (size_t i = 0; i < dev_.size(); ++i) {
    Device& d = dev_[i];
    const double u = uniform_open(
        philox4x32_10(make_counter(Stream::kFaultValue, static_cast<uint32_t>(i), 0, 0), key)[0]);
    if (d.fault == FaultKind::kStuckHigh) {
      d.g_prog_uS = p_.stuck_high_g_uS.lo + u * (p_.stuck_high_g_uS.hi - p_.stuck_high_g_uS.lo);
    } else if (d.fault == FaultKind::kStuckLow) {
      d.g_prog_uS = p_.stuck_low_g_uS.lo + u * (p_.stuck_low_g_uS.hi - p_.stuck_low_g_uS.lo);
    }
  }
}

double Chip::true_g_uS(int array, int row, int col) const {
  const Device& d = dev_[index(array, row, col)];
  if (d.settled) return d.g_prog_uS;
  const double dt_s = static_cast<double>(now_ns_ - d.t_last_pulse_ns) * 1e-9;
  // After kSettleTaus the offset is taken as complete, the same rule refresh_cache() applies.
  const double reached =
      now_ns_ - d.t_last_pulse_ns >= settle_ns_ ? 1.0 : 1.0 - std::exp(-dt_s / p_.relax_tau_s);
  const double g = d.g_prog_uS + d.relax_offset_uS * reached;
  return std::max(g, kMinPhysicalG_uS);
}

void Chip::pulse(int array, int row, int col, Polarity polarity, double v_V, double gate_V,
                 double width_ns, uint64_t op_id) {
  const size_t i = index(array, row, col);
  Device& d = dev_[i];
  ++d.pulse_count;
  ++pulses_applied_;
  if (d.fault == FaultKind::kStuckHigh || d.fault == FaultKind::kStuckLow) return;

  const double g0 = true_g_uS(array, row, col);
  const double rate_factor = d.fault == FaultKind::kSlow ? p_.slow_rate_factor : 1.0;
  const double width_factor = std::pow(width_ns / p_.width_ref_ns, p_.width_exponent);
  double step = 0.0;
  if (polarity == Polarity::kSet) {
    // SET moves G toward the compliance level the gate sets (saturating in the overdrive).
    const double overdrive = v_V - d.set_vth_V;
    const double g_comp = std::clamp(
        p_.compliance_uS_per_V * d.compliance * (gate_V - p_.compliance_gate_threshold_V), 0.0,
        p_.g_ceiling_uS);
    if (overdrive > 0 && g_comp > g0) {
      const double k = p_.set_rate_per_V * d.set_rate * rate_factor * overdrive * width_factor;
      step = (g_comp - g0) * (1.0 - std::exp(-k));
    }
  } else {
    // RESET lowers G toward the floor, exponentially in the overdrive.
    const double overdrive = v_V - d.reset_vth_V;
    if (overdrive > 0 && g0 > p_.g_floor_uS) {
      const double k = p_.reset_rate_per_V * d.reset_rate * rate_factor * overdrive * width_factor;
      step = (p_.g_floor_uS + (g0 - p_.g_floor_uS) * std::exp(-k)) - g0;
    }
  }
  if (step == 0.0) return;  // below threshold or already at compliance/floor: nothing moves

  const auto counter =
      make_counter(Stream::kC2C, lo32(op_id), static_cast<uint32_t>(i), 0, hi24(op_id));
  step += normals2(philox4x32_10(counter, noise_key_))[0] *
          (p_.c2c_sigma_rel * std::abs(step) + p_.c2c_sigma_abs_uS);
  d.g_prog_uS = std::clamp(g0 + step, p_.g_floor_uS, p_.g_ceiling_uS);
  d.t_last_pulse_ns = now_ns_;
  if (p_.relaxation) {
    const bool mid =
        d.g_prog_uS > p_.relax_mid_window_uS.lo && d.g_prog_uS < p_.relax_mid_window_uS.hi;
    const double z = normals2(philox4x32_10(
        make_counter(Stream::kRelax, lo32(op_id), static_cast<uint32_t>(i), 0, hi24(op_id)),
        noise_key_))[0];
    d.relax_offset_uS = (mid ? p_.relax_sigma_mid_uS : p_.relax_sigma_other_uS) * z;
    d.settled = false;
    ArrayCache& c = cache_[static_cast<size_t>(array)];
    c.settle_deadline_ns =  // saturating, as the clock (advance_ns)
        std::max(c.settle_deadline_ns, now_ns_ + std::min(settle_ns_, UINT64_MAX - now_ns_));
  } else {
    d.relax_offset_uS = 0;
    d.settled = true;
  }
  cache_[static_cast<size_t>(array)].dirty = true;
}

void Chip::inject_fault(int array, int row, int col, FaultKind kind, double g_uS) {
  const double g_now = true_g_uS(array, row, col);
  Device& d = dev_[index(array, row, col)];
  d.fault = kind;
  d.g_prog_uS = std::isnan(g_uS) ? g_now : std::max(g_uS, kMinPhysicalG_uS);
  d.relax_offset_uS = 0;
  d.settled = true;
  cache_[static_cast<size_t>(array)].dirty = true;
}

double Chip::fluctuation_variance(double g_uS) const {
  if (!p_.read_noise || g_uS <= 0) return 0.0;
  // sigma = min(c, exp(a + Z)), Z ~ N(0,1):
  // E[sigma^2] = e^(2a+2) * Phi(t - 2) + c^2 * (1 - Phi(t)),  t = ln c - a.
  const double a = p_.fluc_slope * std::log(std::min(g_uS, p_.fluc_g_cap_uS)) + p_.fluc_offset;
  const double c = p_.fluc_sigma_cap_uS;
  const double t = std::log(c) - a;
  return std::exp(2 * a + 2) * std_normal_cdf(t - 2) + c * c * (1 - std_normal_cdf(t));
}

Chip::ReadMoments Chip::read_moments(double g_uS) const {
  if (!p_.read_noise || g_uS <= 0) return {g_uS, 0.0};
  const double a = p_.fluc_slope * std::log(std::min(g_uS, p_.fluc_g_cap_uS)) + p_.fluc_offset;
  double m1 = 0, m2 = 0;
  for (size_t k = 0; k < gh_nodes_.size(); ++k) {
    const double s = std::min(p_.fluc_sigma_cap_uS, std::exp(a + gh_nodes_[k]));
    // Folded normal |G + s N|: E = s sqrt(2/pi) exp(-G^2 / 2s^2) + G (1 - 2 Phi(-G/s)).
    const double r = g_uS / s;
    const double folded_mean = s * std::sqrt(2.0 / std::numbers::pi) * std::exp(-0.5 * r * r) +
                               g_uS * (1 - 2 * std_normal_cdf(-r));
    m1 += gh_weights_[k] * folded_mean;
    m2 += gh_weights_[k] * (g_uS * g_uS + s * s);
  }
  return {m1, std::max(m2 - m1 * m1, 0.0)};
}

Chip::ReadMoments Chip::read_moments_fast(double g_uS) const {
  if (!p_.read_noise || g_uS <= 0) return {g_uS, 0.0};
  const double x =
      (std::log(g_uS) - kMomentsLogLo) / (kMomentsLogHi - kMomentsLogLo) * (kMomentsGrid - 1);
  if (!(x >= 0) || x >= kMomentsGrid - 1) return read_moments(g_uS);  // off the grid: exact
  const size_t k = static_cast<size_t>(x);
  const double f = x - static_cast<double>(k);
  const ReadMoments& a = moments_table_[k];
  const ReadMoments& b = moments_table_[k + 1];
  return {a.mean_uS + f * (b.mean_uS - a.mean_uS), a.var_uS2 + f * (b.var_uS2 - a.var_uS2)};
}

double Chip::read_sample_uS(double g_uS, uint32_t device_index, uint64_t op_id, uint32_t sub,
                            Stream stream) const {
  if (!p_.read_noise || g_uS <= 0) return g_uS;
  const auto z = normals2(
      philox4x32_10(make_counter(stream, lo32(op_id), device_index, sub, hi24(op_id)), noise_key_));
  // AutoXbar add_fluc_noise: sigma drawn afresh per read, heavy-tailed through exp(Z).
  const double sigma = std::min(
      p_.fluc_sigma_cap_uS,
      std::exp(p_.fluc_slope * std::log(std::min(g_uS, p_.fluc_g_cap_uS)) + p_.fluc_offset + z[0]));
  return std::abs(g_uS + sigma * z[1]);
}

uint32_t Chip::adc_code(double current_A, int gain_index) const {
  return adc_code_at(current_A, p_.tia_gains_ohm[static_cast<size_t>(gain_index)]);
}

uint32_t Chip::adc_code_at(double current_A, double r_ohm) const {
  const double v = p_.tia_v_ref_V + current_A * r_ohm;
  const double x = std::nearbyint((v - p_.adc_v_lo_V) / adc_lsb_V_);
  const double max_code = static_cast<double>((1u << p_.adc_bits) - 1);
  if (!(x > 0)) return 0;  // also NaN
  return static_cast<uint32_t>(std::min(x, max_code));
}

uint32_t Chip::read_code(int array, int row, int col, int gain_index, uint64_t op_id,
                         uint32_t read_index) {
  const double g = true_g_uS(array, row, col);
  const double g_read = read_sample_uS(g, static_cast<uint32_t>(index(array, row, col)), op_id,
                                       read_index, Stream::kReadNoise);
  return adc_code(g_read * 1e-6 * p_.v_read_V, gain_index);
}

void Chip::refresh_cache(int array) {
  ArrayCache& c = cache_[static_cast<size_t>(array)];
  const bool relaxing = c.computed_at_ns < c.settle_deadline_ns;
  if (!c.dirty && (c.computed_at_ns == now_ns_ || !relaxing)) return;
  for (int r = 0; r < p_.rows; ++r) {
    for (int col = 0; col < p_.cols; ++col) {
      Device& d = dev_[index(array, r, col)];
      if (!c.dirty && d.settled) continue;  // unchanged since the last refresh
      if (!d.settled && now_ns_ - d.t_last_pulse_ns >= settle_ns_) {
        d.g_prog_uS = std::max(d.g_prog_uS + d.relax_offset_uS, kMinPhysicalG_uS);
        d.relax_offset_uS = 0;
        d.settled = true;
      }
      const ReadMoments m = read_moments_fast(true_g_uS(array, r, col));
      c.gt_uS(col, r) = static_cast<float>(m.mean_uS);
      c.vart_uS2(col, r) = static_cast<float>(m.var_uS2);
    }
  }
  c.dirty = false;
  c.computed_at_ns = now_ns_;
}

namespace {

constexpr int kPlanes = 8;  // bit-serial VMM: one plane per input bit

// The inputs' bit planes as 0/1 columns: x(r, 8v + b) = bit b of input v at row r, and the OR
// of each vector's bytes (a plane no row drives draws no current). Branch-free: the bits of
// random inputs defeat the branch predictor.
struct BitPlanes {
  Eigen::MatrixXf x;
  std::vector<uint8_t> any_bit;
};

BitPlanes bit_planes(std::span<const uint8_t> inputs, int rows, int n) {
  BitPlanes p{Eigen::MatrixXf(rows, n * kPlanes), std::vector<uint8_t>(static_cast<size_t>(n), 0)};
  for (int v = 0; v < n; ++v) {
    const uint8_t* in = inputs.data() + static_cast<size_t>(v) * rows;
    for (int b = 0; b < kPlanes; ++b) {
      float* col = p.x.col(v * kPlanes + b).data();
      for (int r = 0; r < rows; ++r) col[r] = static_cast<float>((in[r] >> b) & 1u);
    }
    for (int r = 0; r < rows; ++r) p.any_bit[static_cast<size_t>(v)] |= in[r];
  }
  return p;
}

}  // namespace

// per_column: one Gaussian per column and plane with the summed read variance, exact in mean
// and variance (docs/firmware.md §4.3). The normals are drawn in float with Eigen's vectorised
// log/sin/cos: Philox block k of plane j gives the normals of columns 4k..4k+3.
Eigen::MatrixXf Chip::column_noise_uS(int array, const Eigen::MatrixXf& x, uint64_t op_id,
                                      uint32_t first_vector) const {
  const ArrayCache& c = cache_[static_cast<size_t>(array)];
  const int cols = p_.cols;
  const int planes = static_cast<int>(x.cols());
  const Eigen::MatrixXf var_sum = c.vart_uS2 * x;
  const int blocks = (cols + 3) / 4;
  const Eigen::Index pairs = static_cast<Eigen::Index>(planes) * blocks * 2;
  Eigen::ArrayXf u_r(pairs), u_t(pairs);
  for (int j = 0; j < planes; ++j) {
    const uint32_t sub = ((static_cast<uint32_t>(j / kPlanes) + first_vector) << 3) |
                         static_cast<uint32_t>(j % kPlanes);
    for (int k = 0; k < blocks; ++k) {
      const auto bits = philox4x32_10(
          make_counter(Stream::kVmmColumn, lo32(op_id), (static_cast<uint32_t>(array) << 24) | sub,
                       static_cast<uint32_t>(k), hi24(op_id)),
          noise_key_);
      const Eigen::Index q = (static_cast<Eigen::Index>(j) * blocks + k) * 2;
      u_r(q) = uniform24(bits[0]);
      u_t(q) = uniform24(bits[1]);
      u_r(q + 1) = uniform24(bits[2]);
      u_t(q + 1) = uniform24(bits[3]);
    }
  }
  const Eigen::ArrayXf radius = (-2.0f * u_r.log()).sqrt();
  const Eigen::ArrayXf angle = (2.0f * static_cast<float>(std::numbers::pi)) * u_t;
  const Eigen::ArrayXf z_cos = radius * angle.cos(), z_sin = radius * angle.sin();
  Eigen::MatrixXf noise(cols, planes);
  for (int j = 0; j < planes; ++j) {
    for (int col = 0; col < cols; ++col) {
      const Eigen::Index q = (static_cast<Eigen::Index>(j) * blocks + col / 4) * 2 + (col % 4) / 2;
      const float z = (col % 2 == 0) ? z_cos(q) : z_sin(q);
      noise(col, j) = std::sqrt(var_sum(col, j)) * z;
    }
  }
  return noise;
}

void Chip::vmm(int array, int gain_index, std::span<const uint8_t> inputs, uint64_t op_id,
               std::span<uint32_t> acc, uint32_t first_vector) {
  refresh_cache(array);
  const ArrayCache& c = cache_[static_cast<size_t>(array)];
  const int rows = p_.rows, cols = p_.cols;
  const int n = static_cast<int>(inputs.size()) / rows;
  std::fill(acc.begin(), acc.end(), 0u);

  const BitPlanes planes = bit_planes(inputs, rows, n);
  const Eigen::MatrixXf& x = planes.x;
  const Eigen::MatrixXf g_sum = c.gt_uS * x;  // cols x 8n: summed mean read per column (uS)
  const bool per_device = p_.read_noise && p_.vmm_noise == "per_device";
  const bool per_column = p_.read_noise && !per_device;
  const Eigen::MatrixXf noise =
      per_column ? column_noise_uS(array, x, op_id, first_vector) : Eigen::MatrixXf();

  const double r_ohm = p_.tia_gains_ohm[static_cast<size_t>(gain_index)];
  const uint32_t code_zero = adc_code(0.0, gain_index);
  for (int v = 0; v < n; ++v) {
    uint32_t* out = acc.data() + static_cast<size_t>(v) * cols;
    for (int b = 0; b < kPlanes; ++b) {
      const int j = v * kPlanes + b;
      if (!((planes.any_bit[static_cast<size_t>(v)] >> b) & 1u)) {  // no row driven: no current
        for (int col = 0; col < cols; ++col) out[col] += code_zero << b;
        continue;
      }
      const uint32_t sub =
          ((static_cast<uint32_t>(v) + first_vector) << 3) | static_cast<uint32_t>(b);
      for (int col = 0; col < cols; ++col) {
        double g_uS = g_sum(col, j);
        if (per_device) {
          g_uS = 0;
          for (int r = 0; r < rows; ++r) {
            if (x(r, j) == 0.0f) continue;
            g_uS += read_sample_uS(true_g_uS(array, r, col),
                                   static_cast<uint32_t>(index(array, r, col)), op_id, sub,
                                   Stream::kVmmDevice);
          }
        } else if (per_column) {
          g_uS += noise(col, j);
        }
        out[col] += adc_code_at(g_uS * 1e-6 * p_.v_read_V, r_ohm) << b;
      }
    }
  }
}

}  // namespace xbar::twin
