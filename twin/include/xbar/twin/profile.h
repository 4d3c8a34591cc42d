// Chip profile: every physical parameter of the twin, loaded from YAML (configs/profiles/).
// docs/firmware.md §3 explains each parameter and the equations it enters.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

namespace xbar::twin {

struct Range {
  double lo = 0.0;
  double hi = 0.0;
};

/// Device-fault population: either a fraction of all devices, or an integer count per array
/// drawn uniformly from [count_lo, count_hi] (the `imssa` profile's "1-3 stuck-high per array").
struct FaultPopulation {
  double fraction = 0.0;
  int count_lo = 0;
  int count_hi = 0;
};

struct ChipProfile {
  std::string name = "typical";

  // geometry
  int arrays = 3;
  int rows = 64;
  int cols = 64;

  // read path
  double v_read_V = 0.2;
  double read_gate_V = 5.0;
  std::vector<double> tia_gains_ohm = {1e3, 5e3, 30e3, 200e3, 1e6};
  double tia_v_ref_V = 0.5;
  int adc_bits = 10;
  double adc_v_lo_V = 0.5;
  double adc_v_hi_V = 4.0;

  // board DACs and pulse limits
  int dac_bits = 16;
  double dac_v_min_V = -10.0;
  double dac_v_max_V = 10.0;
  uint32_t width_step_ns = 20;
  uint32_t width_max_code = 250;
  Range set_v_V{1.0, 3.5};
  Range set_gate_V{0.5, 2.0};
  Range reset_v_V{0.3, 3.5};
  Range reset_gate_V{5.0, 5.5};

  // device: conductance limits
  double g_floor_uS = 1.0;      // HRS floor (deep RESET ends here)
  double g_ceiling_uS = 300.0;  // no SET goes above this
  double initial_g_median_uS = 2.0;
  double initial_g_sigma_log = 0.3;  // lognormal spread of the as-formed state

  // SET: compliance set by the gate, rate by the drain overdrive and width
  double set_v_threshold_V = 0.9;
  double set_v_threshold_sigma_V = 0.05;  // device-to-device
  double set_rate_per_V = 1.6;
  double compliance_uS_per_V = 160.0;  // G_c = k * (V_gate - V_gth)
  double compliance_gate_threshold_V = 0.4;
  double width_ref_ns = 100.0;
  double width_exponent = 0.5;

  // RESET: exponential decay toward the floor in the overdrive
  double reset_v_threshold_V = 0.5;
  double reset_v_threshold_sigma_V = 0.05;
  double reset_rate_per_V = 1.5;

  // variation
  double d2d_sigma_rel = 0.1;   // device-to-device spread of rates and compliance slope
  double c2c_sigma_rel = 0.15;  // cycle-to-cycle: sigma of a pulse's step, relative to the step
  double c2c_sigma_abs_uS = 0.5;

  // relaxation after programming (AutoXbar xbarsim): one Gaussian offset per programming event
  bool relaxation = true;
  double relax_tau_s = 0.2;
  double relax_sigma_mid_uS = 15.0;
  double relax_sigma_other_uS = 5.0;
  Range relax_mid_window_uS{20.0, 80.0};

  // read fluctuation (AutoXbar add_fluc_noise)
  bool read_noise = true;
  double fluc_slope = 0.782;
  double fluc_offset = -2.168;
  double fluc_g_cap_uS = 50.0;
  double fluc_sigma_cap_uS = 20.0;
  /// VMM noise: "per_column" draws one Gaussian per column and bit plane with the summed
  /// expected variance; "per_device" draws every device's fluctuation (exact, 64x slower).
  std::string vmm_noise = "per_column";

  // faults
  FaultPopulation stuck_high;
  FaultPopulation stuck_low;
  FaultPopulation slow;
  Range stuck_high_g_uS{300.0, 600.0};
  Range stuck_low_g_uS{0.2, 1.0};
  double slow_rate_factor = 0.15;

  // board timing (advances the twin's clock; the twin never sleeps)
  double read_row_us = 2.0;        // one row of one read pass
  double pulse_overhead_us = 1.0;  // per device pulse, on top of its width
  double vmm_plane_us = 1.0;       // one bit plane of one VMM vector
};

/// Parses a profile. Unknown keys and wrong types are errors that name the key, e.g.
/// "device.set.rate_per_V: expected a number, got 'fast'".
std::expected<ChipProfile, std::string> parse_profile_yaml(const std::string& yaml_text,
                                                           const std::string& origin);

/// Loads a profile by name ("typical", looked up among the built-in profiles embedded at build
/// time) or by path (contains '/' or ends in .yaml).
std::expected<ChipProfile, std::string> load_profile(const std::string& name_or_path);

/// Names of the built-in profiles.
std::vector<std::string> builtin_profile_names();

/// Checks physical consistency (positive gains, lo < hi, fractions in [0,1], ...).
std::expected<void, std::string> validate_profile(const ChipProfile& p);

}  // namespace xbar::twin
