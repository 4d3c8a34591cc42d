// The chip physics of the twin: three 64x64 1T1R arrays of memristive devices with
// device-to-device and cycle-to-cycle variation, relaxation, read fluctuation, TIA + ADC and a
// bit-serial VMM. docs/firmware.md §3-4 give every equation; ChipProfile every parameter.
//
// Determinism: the devices are a pure function of the chip seed; every noise draw is a pure
// function of (noise seed, op_id, device or column, purpose), so the codes depend only on the
// sequence of operations, never on timing, threads or transport.
//
// Thread model: not thread-safe; Firmware serialises all calls.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <vector>

#include "xbar/twin/philox.h"
#include "xbar/twin/profile.h"
#include "xbar/wire/messages.h"

namespace xbar::twin {

struct Device {
  // fixed at manufacture (chip seed)
  wire::FaultKind fault = wire::FaultKind::kNone;
  float set_vth_V = 0.9f;
  float reset_vth_V = 0.5f;
  float set_rate = 1.0f;    // multiplies profile.set_rate_per_V
  float reset_rate = 1.0f;  // multiplies profile.reset_rate_per_V
  float compliance = 1.0f;  // multiplies profile.compliance_uS_per_V
  // state
  double g_prog_uS = 2.0;      // conductance right after the last pulse
  double relax_offset_uS = 0;  // one-off offset drawn at the last pulse, approached as 1 -
                               // exp(-dt/tau), complete at 20 tau
  uint64_t t_last_pulse_ns = 0;
  bool settled = true;
  uint32_t pulse_count = 0;
};

class Chip {
 public:
  Chip(const ChipProfile& profile, uint64_t chip_seed, uint64_t noise_seed);

  int arrays() const { return p_.arrays; }
  int rows() const { return p_.rows; }
  int cols() const { return p_.cols; }
  const ChipProfile& profile() const { return p_; }

  uint64_t now_ns() const { return now_ns_; }
  /// Moves the clock forward. It stops at 2^64 - 1 ns (584 years) instead of wrapping back
  /// (SIM_CLOCK may ask for any u64 advance): the board clock never goes back.
  void advance_ns(uint64_t dt_ns) {
    now_ns_ = dt_ns > UINT64_MAX - now_ns_ ? UINT64_MAX : now_ns_ + dt_ns;
  }
  uint64_t pulses_applied() const { return pulses_applied_; }

  /// One programming pulse on one device. Voltages in volts, width in ns. `op_id` keys the
  /// noise of this pulse. Does not advance the clock (the caller accounts for batch time).
  void pulse(int array, int row, int col, wire::Polarity polarity, double v_V, double gate_V,
             double width_ns, uint64_t op_id);

  /// The ADC code of one read of one device (row at v_read, its column's TIA at `gain_index`).
  /// `read_index` distinguishes the repeated reads of one READ operation.
  uint32_t read_code(int array, int row, int col, int gain_index, uint64_t op_id,
                     uint32_t read_index);

  /// Bit-serial 8-bit VMM: for each input vector (rows bytes) and bit plane b, rows whose bit
  /// b is set are driven at v_read, every column is converted, and acc[c] += code << b.
  /// `acc` has n_vectors * cols entries.
  /// `first_vector` numbers the vectors for the noise draws (vector v draws as v + first_vector).
  void vmm(int array, int gain_index, std::span<const uint8_t> inputs, uint64_t op_id,
           std::span<uint32_t> acc, uint32_t first_vector = 0);

  /// The ADC conversion of a column current (amperes) at a TIA gain: the pure arithmetic.
  uint32_t adc_code(double current_A, int gain_index) const;

  /// True conductance now (relaxation in progress included), in uS.
  double true_g_uS(int array, int row, int col) const;
  const Device& device(int array, int row, int col) const { return dev_[index(array, row, col)]; }
  /// Freezes (stuck) or frees a device. NaN g_uS keeps the present conductance.
  void inject_fault(int array, int row, int col, wire::FaultKind kind, double g_uS);

  /// Expected read-fluctuation variance E[sigma^2] (uS^2) of a device at conductance g_uS.
  double fluctuation_variance(double g_uS) const;

  /// Mean and variance of one read |G + sigma*N| of a device at g_uS, folding included
  /// (Gauss-Hermite over the lognormal sigma). The per-column VMM noise uses these, so it is
  /// exact in the first two moments of every column sum.
  struct ReadMoments {
    double mean_uS = 0;
    double var_uS2 = 0;
  };
  ReadMoments read_moments(double g_uS) const;
  /// The same from a table on a log-conductance grid (linear interpolation; relative error
  /// about 1e-6 in the mean and up to 1e-3 in the variance near the 50 uS cap, docs/firmware.md
  /// §4.3), which is what the VMM cache uses: 2 us of quadrature per device is too slow to
  /// redo for a whole array while devices relax.
  ReadMoments read_moments_fast(double g_uS) const;

 private:
  size_t index(int array, int row, int col) const {
    return (static_cast<size_t>(array) * p_.rows + row) * p_.cols + col;
  }
  void manufacture(uint64_t chip_seed);
  uint32_t adc_code_at(double current_A, double r_ohm) const;
  void refresh_cache(int array);
  double read_sample_uS(double g_uS, uint32_t device_index, uint64_t op_id, uint32_t sub,
                        Stream stream) const;
  /// vmm's per-column read noise: cols x planes, one Gaussian per column and bit plane of the
  /// planes `x` (rows x 8n), with the summed read variance of the devices each plane drives.
  Eigen::MatrixXf column_noise_uS(int array, const Eigen::MatrixXf& x, uint64_t op_id,
                                  uint32_t first_vector) const;

  ChipProfile p_;
  PhiloxKey noise_key_;
  uint64_t settle_ns_;  // relaxation counts as complete this long after a device's last pulse
  std::vector<double> gh_nodes_, gh_weights_;  // probabilists' Gauss-Hermite, weights sum to 1
  std::vector<ReadMoments> moments_table_;     // read_moments on kMomentsGrid log-spaced points
  std::vector<Device> dev_;
  uint64_t now_ns_ = 0;
  uint64_t pulses_applied_ = 0;
  double adc_lsb_V_ = 0;

  // Per-array caches for the VMM hot path, transposed (cols x rows) so that one GEMM gives
  // every column current of every bit plane: the mean read of each device (its conductance
  // when read noise is off) and the variance of one read.
  struct ArrayCache {
    Eigen::MatrixXf gt_uS;
    Eigen::MatrixXf vart_uS2;
    bool dirty = true;
    uint64_t computed_at_ns = 0;
    uint64_t settle_deadline_ns = 0;  // after this, no device of the array is still relaxing
  };
  std::vector<ArrayCache> cache_;
};

}  // namespace xbar::twin
